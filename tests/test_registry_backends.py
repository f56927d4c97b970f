"""Registry back ends as a registered type: ``[registry.NAME] type = "..."``.

The proof is ``tests/vendor_backend.py``, a back end that core does not know: it
reads through the Distribution API and deletes through a "vendor" HTTP API, served
here on 127.0.0.1 by :class:`VendorService`, which performs each delete on a real
registry itself.  ``regprune plan`` and ``apply --yes`` run through the real command
line with the plugin registered by the test.
"""

from __future__ import annotations

import functools
import json
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regprune import hookimpl
from regprune.cli import run
from regprune.config import RegistrySettings, parse_settings
from regprune.errors import ConfigError, UsageError
from regprune.hookcalls import PluginError
from regprune.plugin_manager import DEFAULT_PLUGINS, Catalog, build_catalog, get_plugin_manager
from regprune.registry import BackendType, NoOptions, RegistryBackend, RegistryClient
from regprune.state import State
from regprune.testing import ImagePusher, RegistryServer

from . import vendor_backend
from .support import days_ago


class VendorService:
    """A vendor's delete API on 127.0.0.1 that deletes on a real registry itself.

    ``calls`` records every request as ``(path, body)``; ``refuse`` makes
    ``/api/check`` answer 403 (deletes not allowed), as a read-only robot account would.
    """

    def __init__(self, registry_url: str) -> None:
        self.registry_url = registry_url
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.refuse = False
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                service.calls.append((self.path, body))
                self.send_response(service.answer(self.path, body))
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, path: str, body: dict[str, str]) -> int:
        if path == "/api/check":
            return 403 if self.refuse else 204
        if path == "/api/delete":
            deleted = httpx.delete(
                f"{self.registry_url}/v2/{body['repository']}/manifests/{body['digest']}"
            )
            return {202: 202, 404: 404}.get(deleted.status_code, 502)
        return 404

    def deletes(self) -> set[tuple[str, str]]:
        return {(b["repository"], b["digest"]) for path, b in self.calls if path == "/api/delete"}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def vendor(registry_server: RegistryServer) -> Iterator[VendorService]:
    service = VendorService(registry_server.url)
    yield service
    service.close()


def write_config(path: Path, url: str, registry: str) -> Path:
    path.write_text(
        f"""
[registry.main]
url = "{url}"
{registry}

[policy.ci]
registry = "main"
repositories = ["ci/*"]
selectors = [{{ use = "count", keep = 1 }}]
""",
        encoding="utf-8",
    )
    return path


def regprune(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: Path, *argv: str, plugins: Any = ()
) -> tuple[int, str, str]:
    """``regprune --config … --state … ARGV`` with the vendor back end (and ``plugins``)."""
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[vendor_backend, *plugins])
    capsys.readouterr()
    code = run(
        ["--config", str(config), "--state", str(tmp_path / "state.db"), *argv], manager=manager
    )
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def one_error(code: int, err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert code == 2, err
    return lines[0]


@pytest.fixture
def three_builds(pusher: ImagePusher) -> list[str]:
    """ci/app: three builds, newest last; keep = 1 plans the two older ones."""
    return [
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30 - n)).digest
        for n in range(3)
    ]


# -- the vendor back end, end to end ----------------------------------------------------


def test_plan_and_apply_delete_exactly_the_planned_images_through_the_vendor_api(
    isolated_cli, vendor, pusher, three_builds, tmp_path, capsys
):
    config = write_config(
        tmp_path / "regprune.toml",
        pusher.url,
        f'type = "vendor"\nvendor_url = "{vendor.url}"',
    )

    code, out, err = regprune(capsys, tmp_path, config, "plan", "--json")
    assert code == 0, err
    plan = json.loads(out)
    planned = {(item["repository"], item["digest"]) for item in plan["delete"]}
    assert planned == {("ci/app", three_builds[0]), ("ci/app", three_builds[1])}
    assert vendor.calls == []  # planning reads through the Distribution API only

    code, out, err = regprune(
        capsys, tmp_path, config, "--verbose", "apply", plan["plan_id"], "--yes", "--json"
    )

    assert code == 0, err
    result = json.loads(out)
    assert {(i["repository"], i["digest"]) for i in result["deleted"]} == planned
    assert vendor.deletes() == planned
    assert [path for path, _ in vendor.calls] == ["/api/check", "/api/delete", "/api/delete"]
    assert vendor.calls[0] == ("/api/check", {"repository": "ci/app"})
    for _, digest in planned:
        assert not pusher.manifest_exists("ci/app", digest)
    assert pusher.manifest_exists("ci/app", three_builds[2])
    assert pusher.tags("ci/app") == ["build-2"]
    # regprune itself sent no DELETE to the registry: no zero-digest preflight, no delete.
    (requests,) = [line for line in err.splitlines() if line.startswith("main: ")]
    assert "DELETE" not in requests and "GET" in requests


def test_the_vendor_preflight_refusing_stops_the_apply_before_any_delete(
    isolated_cli, vendor, pusher, three_builds, tmp_path, capsys
):
    config = write_config(
        tmp_path / "regprune.toml", pusher.url, f'type = "vendor"\nvendor_url = "{vendor.url}"'
    )
    code, out, err = regprune(capsys, tmp_path, config, "plan", "--json")
    assert code == 0, err
    plan_id = json.loads(out)["plan_id"]
    vendor.refuse = True

    code, _, err = regprune(capsys, tmp_path, config, "--verbose", "apply", plan_id, "--yes")

    assert code == 2, err
    assert "refuses deletes in ci/app" in err
    assert vendor.deletes() == set()
    assert [path for path, _ in vendor.calls] == ["/api/check"]
    assert all(pusher.manifest_exists("ci/app", digest) for digest in three_builds)
    (requests,) = [line for line in err.splitlines() if line.startswith("main: ")]
    assert "DELETE" not in requests  # the Distribution preflight is not the vendor's


def test_delete_manifest_hooks_get_the_registry_name_and_settings(
    isolated_cli, vendor, pusher, three_builds, tmp_path, capsys
):
    seen: list[tuple[str, str, dict[str, Any], bool]] = []
    old_style: list[str] = []

    class Watcher:
        """A new-style implementation that looks and passes the call on."""

        @hookimpl(tryfirst=True)
        def delete_manifest(
            self, client: RegistryBackend, digest: str, registry: str, settings: RegistrySettings
        ) -> str | None:
            seen.append(
                (registry, settings.type, settings.options, isinstance(client, RegistryBackend))
            )
            return None

    class OldStyle:
        """An implementation written for the old three-argument hook."""

        @hookimpl
        def delete_manifest(self, client: object, repository: str, digest: str) -> str | None:
            old_style.append(digest)
            return None

    config = write_config(
        tmp_path / "regprune.toml", pusher.url, f'type = "vendor"\nvendor_url = "{vendor.url}"'
    )
    plugins = [Watcher(), OldStyle()]
    code, out, err = regprune(capsys, tmp_path, config, "plan", "--json", plugins=plugins)
    assert code == 0, err
    plan_id = json.loads(out)["plan_id"]

    code, _, err = regprune(capsys, tmp_path, config, "apply", plan_id, "--yes", plugins=plugins)

    assert code == 0, err
    assert seen == [("main", "vendor", {"vendor_url": vendor.url}, True)] * 2
    assert sorted(old_style) == sorted(three_builds[:2])
    assert vendor.deletes() == {("ci/app", digest) for digest in three_builds[:2]}


# -- configuration: type and type-specific keys ------------------------------------------


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        pytest.param(
            'type = "vendor"\nvendor_url = "ftp://vendor.test"',
            "registry.main.vendor_url: must be an http:// or https:// URL, not 'ftp://vendor.test'",
            id="bad-value",
        ),
        pytest.param(
            'type = "vendor"\nvendor_url = "http://v.test"\nvendor_ur = "http://v.test"',
            "registry.main.vendor_ur: unknown key for a registry of type 'vendor'",
            id="unknown-key",
        ),
        pytest.param(
            'type = "vendor"',
            "registry.main.vendor_url: required key is missing (registry type 'vendor' needs it)",
            id="missing",
        ),
        pytest.param(
            'type = "vendor"\nvendor_url = "http://v.test"\nvendor_timeout = 0',
            "registry.main.vendor_timeout: Input should be greater than 0",
            id="out-of-range",
        ),
        pytest.param(
            'vendor_url = "http://v.test"',
            "registry.main.vendor_url: unknown key for a registry of type 'distribution'",
            id="vendor-key-on-distribution",
        ),
        pytest.param(
            'type = "harbour"',
            "registry.main.type: unknown registry type 'harbour' (known types: distribution, "
            "vendor)",
            id="unknown-type",
        ),
    ],
)
def test_a_bad_registry_type_or_option_is_one_error_exit_2(
    isolated_cli, registry_server, tmp_path, capsys, registry, expected
):
    config = write_config(tmp_path / "regprune.toml", registry_server.url, registry)

    code, _, err = regprune(capsys, tmp_path, config, "plan")

    line = one_error(code, err)
    assert line.startswith(f"error: {config}: ")
    assert expected in line
    assert stored_plans(tmp_path) == 0  # nothing changed


def stored_plans(tmp_path: Path) -> int:
    if not (tmp_path / "state.db").exists():
        return 0
    with State(tmp_path / "state.db") as state:
        return len(state.list_plans())


def test_the_type_is_unknown_without_its_plugin(isolated_cli, registry_server, tmp_path, capsys):
    config = write_config(
        tmp_path / "regprune.toml", registry_server.url, 'type = "vendor"\nvendor_url = "http://v"'
    )
    capsys.readouterr()

    code = run(["--config", str(config), "--state", str(tmp_path / "s.db"), "plan"])

    _, err = capsys.readouterr()
    assert "registry.main.type: unknown registry type 'vendor' (known types: distribution)" in (
        one_error(code, err)
    )
    assert vendor_backend.__name__ not in DEFAULT_PLUGINS


def test_plugins_lists_the_registry_types(isolated_cli, tmp_path, capsys):
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[vendor_backend])
    capsys.readouterr()

    assert run(["plugins", "--json"], manager=manager) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["registered"]["registry_types"] == ["distribution", "vendor"]
    (row,) = [row for row in data["plugins"] if row["name"] == "regprune.plugins.distribution"]
    assert row["builtin"] and row["hooks"] == ["register_registry_backends"]


def test_distribution_is_the_default_type_and_may_be_named(pusher, tmp_path):
    catalog = build_catalog(get_plugin_manager(load_entrypoints=False))
    for extra in ("", 'type = "distribution"\n'):
        text = f'[registry.main]\nurl = "{pusher.url}"\n{extra}'
        parsed = parse_settings(tomllib.loads(text), backends=catalog.registry_backends)
        assert parsed.registry["main"].type == "distribution"
        backend = catalog.open_registry("main", parsed.registry["main"])
        try:
            assert type(backend) is RegistryClient
            assert isinstance(backend, RegistryBackend)
        finally:
            backend.close()


def test_without_the_catalog_the_engine_checks_the_options(registry_server, tmp_path):
    """Settings built in code (no catalog at parse time) are checked when the engine
    validates the policies, before anything is scanned."""
    from regprune.engine import Engine

    text = (
        f'[registry.main]\nurl = "{registry_server.url}"\npasswd = "x"\n'
        '[policy.ci]\nregistry = "main"\nrepositories = ["ci/*"]\n'
        'selectors = [{ use = "count", keep = 1 }]\n'
    )
    parsed = parse_settings(tomllib.loads(text))
    with State(tmp_path / "s.db") as state:
        engine = Engine(parsed, state, manager=get_plugin_manager(load_entrypoints=False))
        with pytest.raises(ConfigError, match=r"registry\.main\.passwd: unknown key"):
            engine.plan("ci")
        assert engine.request_count == 0


# -- what a plugin registers is checked -------------------------------------------------


def _manager_with(register_value: object) -> Any:
    class Odd:
        @hookimpl
        def register_registry_backends(self, register: Any) -> None:
            register("odd", register_value)

    return get_plugin_manager(load_entrypoints=False, extra_plugins=[Odd()])


def test_registering_something_that_is_no_backend_type_is_a_plugin_error():
    with pytest.raises(PluginError, match=r"plugin Odd failed in register_registry_backends: "):
        build_catalog(_manager_with(lambda *args: None))


def test_a_create_that_returns_no_backend_is_a_plugin_error(registry_server):
    catalog = build_catalog(
        _manager_with(BackendType(create=lambda *a: object(), options=NoOptions))
    )
    settings = RegistrySettings(url=registry_server.url, type="odd")

    with pytest.raises(PluginError, match=r"create\(\) returned object, not a RegistryBackend"):
        catalog.open_registry("main", settings)


def test_a_create_raising_value_error_is_a_config_error_naming_the_registry(registry_server):
    def refuse(name: str, settings: RegistrySettings, options: NoOptions) -> RegistryBackend:
        raise ValueError("the vendor API token has expired;\nrenew it")

    catalog = build_catalog(_manager_with(BackendType(create=refuse, options=NoOptions)))
    settings = RegistrySettings(url=registry_server.url, type="odd")

    with pytest.raises(ConfigError) as raised:
        catalog.open_registry("main", settings)
    assert raised.value.message == "registry.main: the vendor API token has expired; renew it"
    assert raised.value.exit_code == 2


def test_two_plugins_registering_one_type_name_both_plugins():
    class Again:
        @hookimpl
        def register_registry_backends(self, register: Any) -> None:
            register(
                "distribution",
                BackendType(
                    create=vendor_backend.open_vendor, options=vendor_backend.VendorOptions
                ),
            )

    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[Again()])
    with pytest.raises(UsageError, match=r"both register the registry type 'distribution'"):
        build_catalog(manager)


# -- any option values: a back end or one config error ---------------------------------


@functools.cache
def vendor_catalog() -> Catalog:
    """Built once: the registry types do not change between examples."""
    return build_catalog(get_plugin_manager(load_entrypoints=False, extra_plugins=[vendor_backend]))


OPTION_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["http://v.test", "https://v.test/", "ftp://x", ""]),
    st.lists(st.text(max_size=5), max_size=2),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["vendor", "distribution", "nope", ""]),
    options=st.dictionaries(
        st.sampled_from(["vendor_url", "vendor_timeout", "vendor", "type2", "x.y"]),
        OPTION_VALUES,
        max_size=3,
    ),
)
def test_any_type_and_options_are_settings_or_one_config_error(kind, options):
    catalog = vendor_catalog()
    options = {key: value for key, value in options.items() if value is not None}
    document = {"registry": {"main": {"url": "http://127.0.0.1:9", "type": kind, **options}}}
    try:
        parsed = parse_settings(document, environ={}, backends=catalog.registry_backends)
    except ConfigError as exc:
        assert "\n" not in exc.message
        assert exc.message.startswith("config: registry.main")
        return
    assert parsed.registry["main"].type in catalog.registry_backends
    assert set(parsed.registry["main"].options) == set(options)
