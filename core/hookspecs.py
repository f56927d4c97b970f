"""The hooks regprune calls.  Built-in behaviour is implemented by plugins in
``regprune.plugins`` through exactly these hooks; third-party plugins register
through the ``regprune`` entry-point group.

Every hook is documented in ``docs/plugins/hooks.md``; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from .config import RegistrySettings
    from .frontends import FrontEnd
    from .models import (
        ApplyResult,
        Approval,
        Approver,
        GcResult,
        Image,
        Plan,
        PlanItem,
        PlanStatus,
        Protector,
        Selector,
        TimeReading,
    )
    from .notify import Notifier
    from .options import Options
    from .registry import BackendType, RegistryBackend
    from .state import AuditLog, State

hookspec = pluggy.HookspecMarker("regprune")
hookimpl = pluggy.HookimplMarker("regprune")

SelectorFactory = Callable[[dict[str, Any]], "Selector"]
ProtectorFactory = Callable[[dict[str, Any]], "Protector"]
TimeSource = Callable[["Image"], "TimeReading | None"]
NotifierFactory = Callable[[dict[str, Any]], "Notifier"]


@hookspec
def register_selectors(register: Callable[[str, SelectorFactory], None]) -> None:
    """Register selectors by name: ``register("age", factory)``.

    ``factory(options)`` receives a policy's options for the selector (everything in
    ``{ use = "age", older_than = "14d" }`` but ``use``) and returns an object with
    ``select(images, context) -> {digest: (selected, reason)}``.  It raises
    ``ValueError`` with a one-line message when the options are wrong.
    """


@hookspec
def register_protectors(register: Callable[[str, ProtectorFactory], None]) -> None:
    """Register keep rules by name: ``register("in_use", factory)``.

    ``factory(options)`` returns an object with ``protect(images, context) ->
    {digest: reason}``.  Every image it names is kept, whatever any selector says.
    """


@hookspec
def register_approvers(register: Callable[[str, Approver], None]) -> None:
    """Register approval methods by name (a policy's ``approval`` key): ``register("cli", approver)``.

    ``approver.approve(plan, context)`` returns an ``Approval`` that is approved,
    rejected, or pending (the decision is made elsewhere, in a front end).  An
    approver that always answers pending says so with ``decided_elsewhere = True``
    and names the deciding front end with ``front_end = "NAME"``.
    """


@hookspec
def register_front_ends(register: Callable[[FrontEnd], None]) -> None:
    """Register front ends: ``register(FrontEnd(name="chat", settings=ChatSettings))``.

    A front end shows plans to people and brings their decisions back (a chat bot,
    a web page).  ``settings`` is the pydantic model of its top-level config section
    (``[chat]``, or ``FrontEnd(section=...)``): core validates the section with it,
    naming key paths in errors, and ``Settings.front_end("chat")`` returns the result.
    A name or a section registered twice is an error naming both plugins.
    """


@hookspec
def register_time_sources(register: Callable[[str, TimeSource], None]) -> None:
    """Register where an image's time can come from: ``register("created", fn)``.

    ``fn(image)`` returns a ``TimeReading`` (a time or None, and a note), or None
    when it knows nothing.  A policy's ``time_source`` list picks the order; the
    engine takes the first trustworthy time (not missing, not before 2013, not in
    the future).
    """


@hookspec
def register_notifiers(register: Callable[[str, NotifierFactory], None]) -> None:
    """Register where run reports can go by name (``[notify.NAME] use``):
    ``register("jsonl", factory)``.

    ``factory(options)`` receives the table's keys but ``use``, ``on``, ``policies``
    and ``commands`` (validate them with a ``regprune.Options`` model; raise
    ``ValueError`` with a one-line message when they are wrong: the config is then
    refused with exit 2, naming ``notify.NAME``).  It returns an object with
    ``send(report)``, called with a ``regprune.RunReport`` once a command
    ends.  ``send`` may raise: the failure is one ``warning:`` line and the run's
    outcome and exit code stay what they were.  It should give up within seconds.
    """


@hookspec
def register_settings(register: Callable[[type[Options], Callable[[Any], None]], None]) -> None:
    """Declare the plugin's ``[plugins.NAME]`` table: ``register(Model, configure)``.

    ``Model`` is a subclass of ``regprune.Options``.  When a configuration is loaded,
    regprune validates the plugin's table with it (an empty table when the file has
    none; errors read ``plugins.NAME.KEY: ...``) and calls ``configure(settings)``
    with the validated model, before it calls the plugin's other hooks.  A plugin
    registers at most once.
    """


@hookspec
def register_registry_backends(register: Callable[[str, BackendType[Any]], None]) -> None:
    """Register kinds of registry by name (``[registry.NAME] type``):
    ``register("harbor", BackendType(create=..., options=HarborOptions))``.

    ``options`` is a pydantic model for the keys of ``[registry.NAME]`` only this type
    knows (make it forbid extra keys, so a misspelled key is an error naming
    ``registry.NAME.KEY``); ``create(name, settings, options)`` returns an object
    meeting ``regprune.registry.RegistryBackend``: catalog, tags, manifests, blobs,
    delete, preflight, map and close.  The built-in ``distribution`` type is
    ``RegistryClient``.
    """


@hookspec
def register_commands(cli: typer.Typer) -> None:
    """Add commands to the ``regprune`` command line: ``@cli.command()``."""


@hookspec(firstresult=True)
def delete_manifest(
    client: RegistryBackend,
    repository: str,
    digest: str,
    registry: str,
    settings: RegistrySettings,
) -> str | None:
    """Delete one manifest by digest.  firstresult: the first non-None answer wins.

    ``client`` is the registry's back end, ``registry`` its name in the config and
    ``settings`` its ``[registry.NAME]`` section; an implementation may take any
    subset of these arguments.  Return ``"deleted"``, or ``"absent"`` when it was
    already gone; raise a ``regprune.errors.RegpruneError`` on failure.  Return None
    to let the next implementation (ultimately the built-in, which calls the back
    end's ``delete_manifest``) do it.
    """


@hookspec(firstresult=True)
def collect_garbage(
    registry: RegistrySettings,
    name: str,
    dry_run: bool,
    track_child: Callable[[int | None], None],
) -> GcResult | None:
    """Run garbage collection for one registry.  firstresult: the first non-None answer wins.

    The built-in runs the configured ``gc.command`` with its ``before`` and
    ``after`` commands.  Return None to leave it to the next implementation.
    Call ``track_child(pid)`` when a child process starts and ``track_child(None)``
    when it is gone: the registry's lock is not stale while it lives.
    """


# The event hooks below receive ``audit``, the audit log (``regprune.state.AuditLog``):
# what a listener that records events needs.  ``state``, the whole state DB, is still
# passed for plugins written before ``audit`` existed; new plugins take ``audit``
# (pluggy lets an implementation take any subset of a spec's arguments).


@hookspec
def plan_created(plan: Plan, state: State, audit: AuditLog) -> None:
    """Called once a plan is computed and stored, before anyone approves it."""


@hookspec
def plan_decided(plan: Plan, approval: Approval, state: State, audit: AuditLog) -> None:
    """Called when a plan is approved or rejected (by a prompt, --yes, auto or a front end).

    Kept for existing plugins: ``plan_status_changed`` hears of every status change,
    these two included.
    """


@hookspec
def plan_status_changed(
    plan: Plan,
    old: PlanStatus,
    new: PlanStatus,
    actor: str,
    reason: str,
    method: str,
    audit: AuditLog,
) -> None:
    """Called once for every change of a plan's status, right after the engine's
    compare-and-set made it (``regprune.lifecycle.TRANSITIONS`` lists the moves).

    ``old`` and ``new`` are ``PlanStatus`` members (they compare equal to the status
    strings); ``plan.status`` is already ``new``.  ``actor`` is who made the change
    (``alice@host``, ``U123``, ``regprune-bot``), ``method`` how (``cli --yes``,
    ``slack``, ``auto``; may be empty), ``reason`` why, in words (an approval's
    note, an apply's error; may be empty).  A third-party plugin's exception is
    logged as a warning; the change has happened either way.
    """


@hookspec
def item_deleted(plan: Plan, item: PlanItem, state: State, audit: AuditLog) -> None:
    """Called after one manifest of a plan was deleted (or found already gone)."""


@hookspec
def item_skipped(plan: Plan, item: PlanItem, reason: str, state: State, audit: AuditLog) -> None:
    """Called when apply skips an item because the registry changed since the plan."""


@hookspec
def item_failed(plan: Plan, item: PlanItem, error: str, state: State, audit: AuditLog) -> None:
    """Called when deleting an item failed; a later apply of the plan retries it."""


@hookspec
def apply_finished(plan: Plan, result: ApplyResult, state: State, audit: AuditLog) -> None:
    """Called when an apply run ends, whatever its outcome."""


@hookspec
def gc_finished(name: str, result: GcResult, state: State, audit: AuditLog) -> None:
    """Called after a garbage-collection run (or dry run) of registry ``name``."""
