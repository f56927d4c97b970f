"""Garbage collection through the engine: the checks before a run, the run under the
registry's lock, and the ``--delete-untagged`` judgement on Distribution 2.x.

Split out of ``engine.py`` (one concern per module); ``Engine.gc`` and
``Engine.gc_preflight`` call these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import RegistrySettings
from .errors import ConfigError, GcInterrupted, RegpruneError, UsageError
from .gc_checks import delete_untagged_spelling, validate_commands
from .hookcalls import first_result, notify_event
from .mediatypes import is_index
from .models import GcResult
from .scan import Scanner

if TYPE_CHECKING:
    from .engine import Engine


def run_gc(
    engine: Engine, registry: str, *, dry_run: bool = False, allow_delete_untagged: bool = False
) -> GcResult:
    """Run the registry's garbage collector through the configured command, under the lock.

    Refuses (`UsageError`, before any command runs) a command that cannot run and,
    on Distribution 2.x, ``--delete-untagged`` while the registry holds a multi-arch
    image, unless ``allow_delete_untagged``.  The GC child's pid is kept in the
    lock, so the lock is not stale while it lives.  An interrupted run is recorded
    before `GcInterrupted` goes on.
    """
    state = engine.state
    settings = engine.registry_settings(registry)
    gc_preflight(engine, registry)
    name = engine.lock_name(registry)
    with state.locks.hold(name, purpose="garbage collection" + (" (dry run)" if dry_run else "")):
        warnings = gc_warnings(
            engine, registry, settings, dry_run=dry_run, allow_delete_untagged=allow_delete_untagged
        )
        try:
            _, result = first_result(
                engine.manager,
                "collect_garbage",
                registry=settings,
                name=registry,
                dry_run=dry_run,
                track_child=lambda pid: state.locks.set_child(name, pid),
            )
        except GcInterrupted as stop:
            if isinstance(stop.result, GcResult):
                stop.result.warnings[:0] = warnings
                state.gc_runs.record(registry, stop.result)
            raise
        if result is None:
            raise ConfigError(
                f"no garbage collector for registry {registry!r}: set [registry.{registry}.gc] command = [...]"
            )
        result.warnings[:0] = warnings
    state.gc_runs.record(registry, result)
    notify_event(engine.manager, "gc_finished", state, name=registry, result=result)
    return result


def gc_preflight(engine: Engine, registry: str, *, scan: bool = False) -> None:
    """The checks `gc` makes before anything runs; raises `UsageError` (exit 2).

    The config checks make no request.  With ``scan`` the ``--delete-untagged``
    judgement is made too (it scans the registry): `run --gc` calls this before
    applying anything, so a GC it would refuse refuses the whole run up front.
    """
    settings = engine.registry_settings(registry)
    validate_commands(settings.gc, registry)
    delete_untagged_spelling(settings.gc.command, f"registry.{registry}.gc.command")
    if scan:
        gc_warnings(engine, registry, settings)


def gc_warnings(
    engine: Engine,
    registry: str,
    settings: RegistrySettings,
    *,
    dry_run: bool = False,
    allow_delete_untagged: bool = False,
) -> list[str]:
    """Warnings for a GC run; raise `UsageError` when it must not run at all.

    ``--delete-untagged`` (in any spelling the registry's flag parser accepts) on
    Distribution 2.x deletes the platform manifests of every multi-arch image: refused
    while a scan of the registry finds an index or manifest list, or when the
    registry cannot be scanned.  A dry run deletes nothing, so it only warns.
    """
    spelling = delete_untagged_spelling(settings.gc.command, f"registry.{registry}.gc.command")
    if spelling is None or settings.version == 3:
        return []
    flag = "--delete-untagged" + (f" (as {spelling!r})" if spelling != "--delete-untagged" else "")
    risk = (
        f"registry.{registry}.gc.command has {flag}, which on Distribution 2.x deletes the"
        " platform manifests of multi-arch images (fixed in 3.0)"
    )
    fix = (
        "remove the flag (regprune deletes index children itself), set"
        f" [registry.{registry}] version = 3 if the registry runs 3.x, or pass"
        " --allow-delete-untagged to `regprune gc` to run it anyway"
    )
    if allow_delete_untagged:
        return [f"{risk}; running it because --allow-delete-untagged was given"]
    try:
        found = multi_arch_images(engine, registry)
    except RegpruneError as exc:
        why = f"the registry could not be scanned for them ({exc.message})"
        if dry_run:
            return [f"{risk}, and {why}"]
        raise UsageError(f"{risk}, and {why}; not running garbage collection: {fix}") from exc
    if not found:
        return []
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    holds = f"this registry holds {len(found)} ({found[0]}{more})"
    if dry_run:
        return [f"{risk}, and {holds}; a real run is refused: {fix}"]
    raise UsageError(f"{risk}, and {holds}; not running garbage collection: {fix}")


def multi_arch_images(engine: Engine, registry: str) -> list[str]:
    """``repo:tag`` (or ``repo@digest``) of every index / manifest list the registry holds.

    Scans every repository through the API with the digest cache, so a warm scan
    costs one request per tag.
    """
    scanner = Scanner(engine.client(registry), engine.state, registry, engine.now())
    found: list[str] = []
    for scan in scanner.scan(scanner.repositories(["*"])):
        tags = scan.tags_by_digest()
        for digest, facts in sorted(scan.manifests.items()):
            if is_index(facts.media_type):
                names = tags.get(digest)
                found.append(
                    f"{scan.repository}:{names[0]}" if names else f"{scan.repository}@{digest}"
                )
    return found
