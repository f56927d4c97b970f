"""Run a policy against a test registry and get the plan: the plugin author's one-liner.

A selector or keep rule is best tested the way regprune uses it: push a few
images to a throwaway registry, plan a policy that uses the plugin, and look at
what the plan deletes and keeps, and why::

    def test_keeps_two_releases(pusher, regprune_plan):
        for tag in ["v1.0.0", "v1.1.0", "v1.2.0"]:
            pusher.push_image("app", [tag])
        plan = regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": 2}]})
        assert deleted_tags(plan) == {"app:v1.0.0"}

``run_policy`` and ``apply_plan`` are the same thing without pytest: any registry
URL, a directory for the state DB.  The engine, the plugin manager (built-ins,
installed plugins, and ``extra_plugins``), the config validation and the plan are
the real ones; nothing is mocked.

Imports of the engine are deferred, so importing ``regprune.testing`` (which
pytest does for every run, through the ``pytest11`` entry point) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from ..models import ApprovalContext

if TYPE_CHECKING:
    from ..config import Settings
    from ..engine import Engine
    from ..models import ApplyResult, KeepItem, Plan, PlanItem

__all__ = [
    "APPROVE_ALL",
    "DEFAULT_POLICY",
    "DEFAULT_REGISTRY",
    "PolicyRunner",
    "apply_plan",
    "days_ago",
    "deleted_digests",
    "deleted_tags",
    "kept_reasons",
    "kept_tags",
    "make_engine",
    "make_settings",
    "reasons_for",
    "run_policy",
]

DEFAULT_REGISTRY = "test"
"""The name of the ``[registry.NAME]`` section the helpers write for ``url``."""

DEFAULT_POLICY = "test"
"""The name of the policy ``run_policy`` plans."""

APPROVE_ALL = ApprovalContext(assume_yes=True, interactive=False, actor="regprune.testing")
"""What ``--yes`` gives an approver: ``engine.apply(plan.id, context=APPROVE_ALL)``."""

Now = datetime | Callable[[], datetime] | None


def days_ago(days: float) -> datetime:
    """The time ``days`` ago (UTC): ``pusher.push_image(..., created=days_ago(30))``."""
    return datetime.now(UTC) - timedelta(days=days)


def _settings_data(
    url: str,
    policy: Mapping[str, Any] | None,
    *,
    name: str,
    other_policies: Mapping[str, Mapping[str, Any]] | None,
    registry_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The config document: one registry, the policy, and any others (registry filled in)."""
    bodies = dict(other_policies or {})
    if policy is not None:
        bodies[name] = policy
    policies = {
        key: {"registry": DEFAULT_REGISTRY, "repositories": ["*"], **dict(body)}
        for key, body in bodies.items()
    }
    return {
        "registry": {DEFAULT_REGISTRY: {"url": url, **dict(registry_options or {})}},
        "policy": policies,
    }


def _clock(now: Now) -> Callable[[], datetime] | None:
    """A fixed datetime becomes a clock that always answers it."""
    if isinstance(now, datetime):
        fixed = now
        return lambda: fixed
    return now


def make_settings(
    url: str,
    policy: Mapping[str, Any] | None = None,
    *,
    name: str = DEFAULT_POLICY,
    other_policies: Mapping[str, Mapping[str, Any]] | None = None,
    registry_options: Mapping[str, Any] | None = None,
) -> Settings:
    """The validated ``Settings`` :func:`make_engine` uses: registry ``test`` at ``url``.

    ``policy`` is planned as ``name`` (none when ``None``); ``other_policies`` and
    ``registry_options`` are as in :func:`make_engine`.  Bad options raise
    ``regprune.errors.ConfigError`` as a config file would.
    """
    from ..config import parse_settings

    return parse_settings(
        _settings_data(
            url,
            policy,
            name=name,
            other_policies=other_policies,
            registry_options=registry_options,
        ),
        source="run_policy",
    )


def make_engine(
    url: str,
    policy: Mapping[str, Any] | None = None,
    *,
    state_dir: str | Path,
    now: Now = None,
    extra_plugins: Iterable[object] = (),
    other_policies: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = DEFAULT_POLICY,
    registry_options: Mapping[str, Any] | None = None,
    load_entrypoints: bool = True,
) -> Engine:
    """An Engine over a config with registry ``test`` at ``url`` and ``policy`` named ``name``.

    ``policy`` is a ``[policy.NAME]`` table as a dict; ``registry`` defaults to the
    test registry and ``repositories`` to ``["*"]``.  ``other_policies`` are more
    policies (their keep rules guard this policy's repositories too, as in real
    use).  ``now`` is a datetime or a callable returning one (default: the real
    clock).  ``extra_plugins`` are registered after the built-ins and installed
    plugins; ``load_entrypoints=False`` leaves installed plugins out.  The state DB
    is ``state_dir/state.db``; call ``engine.close()`` and ``engine.state.close()``
    when done (``run_policy`` does).
    """
    from ..engine import Engine
    from ..plugin_manager import get_plugin_manager
    from ..state import State

    settings = make_settings(
        url, policy, name=name, other_policies=other_policies, registry_options=registry_options
    )
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    manager = get_plugin_manager(load_entrypoints=load_entrypoints, extra_plugins=extra_plugins)
    return Engine(settings, State(directory / "state.db"), manager=manager, now=_clock(now))


class _EngineOptions(TypedDict, total=False):
    """The keyword arguments :func:`run_policy` hands on to :func:`make_engine`."""

    now: Now
    extra_plugins: Iterable[object]
    other_policies: Mapping[str, Mapping[str, Any]] | None
    name: str
    registry_options: Mapping[str, Any] | None
    load_entrypoints: bool


def run_policy(
    url: str,
    policy: Mapping[str, Any],
    *,
    state_dir: str | Path,
    **options: Unpack[_EngineOptions],
) -> Plan:
    """Plan ``policy`` against the registry at ``url`` and return the stored ``Plan``.

    Nothing is deleted.  Bad options raise ``regprune.errors.ConfigError`` with the
    message a user would see (``policy.test.selectors.0: ...``).  Arguments are
    those of :func:`make_engine` (``now``, ``extra_plugins``, ``other_policies``,
    ``name``, ``registry_options``, ``load_entrypoints``).
    """
    engine = make_engine(url, policy, state_dir=state_dir, **options)
    name = options.get("name", DEFAULT_POLICY)
    try:
        return engine.plan(name, requested_by="regprune.testing")
    finally:
        engine.close()
        engine.state.close()


def apply_plan(
    url: str,
    plan: Plan | str,
    *,
    state_dir: str | Path,
    extra_plugins: Iterable[object] = (),
    registry_options: Mapping[str, Any] | None = None,
    load_entrypoints: bool = True,
) -> ApplyResult:
    """Approve (as ``--yes`` would) and apply a plan made by :func:`run_policy`.

    ``state_dir`` must be the one the plan was made with.  Returns the
    ``ApplyResult``: ``result.of("deleted")``, ``result.of("skipped")``, ...
    """
    engine = make_engine(
        url,
        None,
        state_dir=state_dir,
        extra_plugins=extra_plugins,
        registry_options=registry_options,
        load_entrypoints=load_entrypoints,
    )
    plan_id = plan if isinstance(plan, str) else plan.id
    try:
        return engine.apply(plan_id, context=APPROVE_ALL)
    finally:
        engine.close()
        engine.state.close()


class PolicyRunner:
    """``runner(policy) -> Plan`` and ``runner.apply(plan) -> ApplyResult`` for one registry.

    What the ``regprune_plan`` fixture returns.  Every call plans against the same
    registry and state DB, so the digest cache and ``first_seen`` times carry over
    from one call to the next, as they do between real runs.
    """

    def __init__(
        self,
        url: str,
        state_dir: str | Path,
        *,
        extra_plugins: Iterable[object] = (),
        load_entrypoints: bool = True,
    ) -> None:
        self.url = url
        self.state_dir = Path(state_dir)
        self.extra_plugins = tuple(extra_plugins)
        self.load_entrypoints = load_entrypoints

    def __call__(
        self,
        policy: Mapping[str, Any],
        *,
        now: Now = None,
        extra_plugins: Iterable[object] = (),
        other_policies: Mapping[str, Mapping[str, Any]] | None = None,
        name: str = DEFAULT_POLICY,
        registry_options: Mapping[str, Any] | None = None,
    ) -> Plan:
        """Plan ``policy`` (see :func:`run_policy`)."""
        return run_policy(
            self.url,
            policy,
            state_dir=self.state_dir,
            now=now,
            extra_plugins=(*self.extra_plugins, *extra_plugins),
            other_policies=other_policies,
            name=name,
            registry_options=registry_options,
            load_entrypoints=self.load_entrypoints,
        )

    def apply(
        self,
        plan: Plan | str,
        *,
        extra_plugins: Iterable[object] = (),
        registry_options: Mapping[str, Any] | None = None,
    ) -> ApplyResult:
        """Approve and apply a plan this runner made (see :func:`apply_plan`)."""
        return apply_plan(
            self.url,
            plan,
            state_dir=self.state_dir,
            extra_plugins=(*self.extra_plugins, *extra_plugins),
            registry_options=registry_options,
            load_entrypoints=self.load_entrypoints,
        )

    def __repr__(self) -> str:
        return f"<PolicyRunner {self.url} state={str(self.state_dir)!r}>"


def deleted_tags(plan: Plan) -> set[str]:
    """``repository:tag`` of every tag the plan deletes (images and their artifacts)."""
    return {f"{item.repository}:{tag}" for item in plan.delete for tag in item.tags}


def deleted_digests(plan: Plan) -> set[str]:
    """The digest of every manifest the plan deletes."""
    return {item.digest for item in plan.delete}


def kept_reasons(plan: Plan, digest: str) -> list[str]:
    """Why the plan keeps the manifest ``digest``; ``AssertionError`` when it does not keep it."""
    for item in plan.keep:
        if item.digest == digest:
            return list(item.reasons)
    raise AssertionError(f"{digest} is not in the keep list of plan {plan.id}")


def kept_tags(plan: Plan) -> set[str]:
    """``repository:tag`` of every tag of every image the plan keeps."""
    return {f"{item.repository}:{tag}" for item in plan.keep for tag in item.tags}


def reasons_for(plan: Plan, reference: str) -> list[str]:
    """The reasons the plan gives for ``repository:tag`` or ``repository@digest``.

    Raises ``KeyError`` when the plan neither deletes nor keeps it.
    """
    repository, at, digest = reference.partition("@")
    if not at:
        repository, _, tag = reference.rpartition(":")
    items: list[PlanItem | KeepItem] = [*plan.delete, *plan.keep]
    for item in items:
        if item.repository != repository:
            continue
        if (at and item.digest == digest) or (not at and tag in item.tags):
            return list(item.reasons)
    raise KeyError(f"{reference} is neither deleted nor kept by plan {plan.id}")
