"""pytest fixtures that start real registries and push images to them.

Loaded automatically through regprune's ``pytest11`` entry point. Fixtures:

``registry_binary`` (session)
    Path of the registry binary. Fails the test with install instructions when there
    is none, or skips it when ``REGPRUNE_REGISTRY_MISSING=skip`` is set.
``registry_factory``
    ``registry_factory(**kwargs) -> RegistryServer``: a started server under
    ``tmp_path`` taking :class:`~regprune.testing.RegistryServer` arguments (``root``
    too); every server it made is stopped at teardown.
``registry_server``
    One started registry with deletes enabled.
``pusher``
    An :class:`~regprune.testing.ImagePusher` bound to ``registry_server``.
``fault_proxy``
    A started :class:`~regprune.testing.FaultProxy` in front of ``registry_server``;
    point regprune at ``fault_proxy.url`` and add faults.
``regprune_plan``
    A :class:`~regprune.testing.PolicyRunner` for ``registry_server`` with its state
    DB under ``tmp_path``: ``regprune_plan(policy_dict) -> Plan`` plans a policy with
    the real engine, built-in and installed plugins; ``regprune_plan.apply(plan)``
    approves and applies it.  Proxy variables are cleared for the test.
``approver``
    A :class:`~regprune.testing.ScriptedApprover` registered as ``scripted`` in every
    ``regprune_plan`` call of the test: ``approval = "scripted"`` in a policy hands the
    decision to it (``approver.answer("rejected")``).
``isolated_cli``
    The command line as a new user runs it, in ``tmp_path``: no config, state or
    plugins from the environment, no terminal (see :func:`~regprune.testing.isolate_cli`).
``regprune_cli``
    A :class:`~regprune.testing.CliRunner` in ``isolated_cli``:
    ``regprune_cli("plan", "--json") -> CliResult`` (``code``, ``out``, ``err``).
``clear_proxy_env``
    Removes ``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY`` and their lower-case forms for
    the test. Not autouse: request it, or wrap it in an autouse fixture of your own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .approvers import ScriptedApprover
from .cli import CliRunner, isolate_cli
from .faults import FaultProxy
from .images import ImagePusher
from .plans import PolicyRunner
from .server import RegistryNotFoundError, RegistryServer, find_registry_binary

RegistryFactory = Callable[..., RegistryServer]

PROXY_VARIABLES = tuple(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    for name in (base, base.lower())
)
MISSING_ENV = "REGPRUNE_REGISTRY_MISSING"


def pytest_report_header(config: pytest.Config) -> str:
    """Name the registry binary the fixtures will use."""
    try:
        return f"regprune registry: {find_registry_binary()}"
    except RegistryNotFoundError:
        return "regprune registry: not found (see scripts/ensure-registry.sh)"


@pytest.fixture(scope="session")
def registry_binary() -> str:
    """Path of the Distribution registry binary (see ``find_registry_binary``)."""
    try:
        return find_registry_binary()
    except RegistryNotFoundError as exc:
        if os.environ.get(MISSING_ENV) == "skip":
            pytest.skip(str(exc))
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def registry_factory(registry_binary: str, tmp_path: Path) -> Iterator[RegistryFactory]:
    """Start registries on demand: ``registry_factory(**RegistryServer_kwargs)``."""
    servers: list[RegistryServer] = []

    def make(**kwargs: Any) -> RegistryServer:
        root = kwargs.pop("root", None) or tmp_path / f"registry-{len(servers)}"
        kwargs.setdefault("binary", registry_binary)
        server = RegistryServer(Path(root), **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def registry_server(registry_factory: RegistryFactory) -> RegistryServer:
    """A started registry with deletes enabled and no auth."""
    return registry_factory(delete_enabled=True)


@pytest.fixture
def pusher(registry_server: RegistryServer) -> Iterator[ImagePusher]:
    """An ImagePusher bound to ``registry_server``."""
    with ImagePusher(registry_server.url) as image_pusher:
        yield image_pusher


@pytest.fixture
def fault_proxy(registry_server: RegistryServer) -> Iterator[FaultProxy]:
    """A FaultProxy in front of ``registry_server`` (no faults until the test adds some)."""
    with FaultProxy(registry_server.url) as proxy:
        yield proxy


@pytest.fixture
def approver() -> ScriptedApprover:
    """An approver named ``scripted`` that approves unless told otherwise."""
    return ScriptedApprover()


@pytest.fixture
def regprune_plan(
    registry_server: RegistryServer,
    tmp_path: Path,
    clear_proxy_env: None,
    request: pytest.FixtureRequest,
) -> PolicyRunner:
    """Plan policies against ``registry_server``: ``regprune_plan({...}) -> Plan``."""
    extra: list[object] = []
    if "approver" in request.fixturenames:
        # Only when the test asks for it: the same instance the test scripts.
        extra.append(request.getfixturevalue("approver"))
    return PolicyRunner(registry_server.url, tmp_path / "regprune-state", extra_plugins=extra)


@pytest.fixture
def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI as a new user runs it in an empty directory (``tmp_path``)."""
    isolate_cli(monkeypatch, tmp_path)


@pytest.fixture
def regprune_cli(isolated_cli: None, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run ``regprune ARGV`` in-process in ``isolated_cli``: ``regprune_cli(*argv) -> CliResult``."""
    return CliRunner(capsys)


@pytest.fixture
def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove proxy variables for this test (httpx and slack_sdk read them)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
