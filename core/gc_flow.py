"""Garbage collection through the engine: the checks before a run, the run under the
registry's lock, the preview read from the registry's storage, and the
``--delete-untagged`` judgement (multi-arch images on Distribution 2.x, untagged
referrers of kept images on 2.x and 3.x).

Split out of ``engine.py`` (one concern per module); ``Engine.gc`` and
``Engine.gc_preflight`` call these.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Set
from functools import partial
from typing import TYPE_CHECKING

from .config import RegistrySettings
from .errors import ConfigError, GcInterrupted, RegpruneError, UsageError
from .gc_checks import delete_untagged_spelling, validate_commands
from .hookcalls import first_result, notify_event
from .mediatypes import is_index
from .models import GcResult
from .registry import referrers_of
from .scan import Scanner

if TYPE_CHECKING:
    from .engine import Engine
    from .storage import GcPreview


def run_gc(
    engine: Engine, registry: str, *, dry_run: bool = False, allow_delete_untagged: bool = False
) -> GcResult:
    """Run the registry's garbage collector through the configured command, under the lock.

    Refuses (`UsageError`, before any command runs) a command that cannot run and
    ``--delete-untagged`` while it would delete what stays (see `gc_warnings`), unless
    ``allow_delete_untagged``.  The GC child's pid is kept in the
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
        if dry_run and settings.storage is not None:
            # Under the lock: no apply changes the storage while it is read.
            result.preview = gc_preview(registry, settings)
    state.gc_runs.record(registry, result)
    notify_event(engine.manager, "gc_finished", state, name=registry, result=result)
    return result


def gc_preview(
    registry: str,
    settings: RegistrySettings,
    deleted: Mapping[str, Set[str]] | None = None,
    *,
    known_revisions: Mapping[str, Collection[str]] | None = None,
    known_references: Mapping[str, tuple[str, ...]] | None = None,
) -> GcPreview:
    """What the registry's garbage-collect (without ``--delete-untagged``) would free,
    read from its storage (``[registry.NAME] storage``, which must be set), once the
    manifests in ``deleted`` (repository -> digests) are deleted through the API."""
    from .storage import StorageLayout, preview_gc

    if settings.storage is None:
        raise ConfigError(f"registry {registry!r} has no storage: set [registry.{registry}] storage")
    layout = StorageLayout(settings.storage, key=f"registry.{registry}.storage")
    return preview_gc(
        layout, deleted, known_revisions=known_revisions, known_references=known_references
    )


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

    ``--delete-untagged`` (in any spelling the registry's flag parser accepts) deletes
    every manifest no tag reaches.  Measured on 2.8.2 and 3.1.1 (tests/test_gc_untagged.py):
    both delete the untagged referrers (signatures, SBOMs, attestations pushed with a
    ``subject`` and no tag) of images that stay, and 2.x also deletes the platform
    manifests of every multi-arch image (3.x keeps them).  So it is refused while a scan
    of the registry finds what the registry's version would wrongly delete (an index on
    2.x unless ``version = 3`` is configured; an untagged referrer of a tagged image on
    either), or when the registry cannot be scanned.  A dry run deletes nothing, so it
    only warns.
    """
    spelling = delete_untagged_spelling(settings.gc.command, f"registry.{registry}.gc.command")
    if spelling is None:
        return []
    flag = "--delete-untagged" + (f" (as {spelling!r})" if spelling != "--delete-untagged" else "")
    # Only a configured version relaxes the multi-arch judgement: unknown counts as 2.x.
    indexes_at_risk = settings.version != 3
    key = f"registry.{registry}.gc.command has {flag}"
    index_risk = (
        f"{key}, which on Distribution 2.x deletes the platform manifests of multi-arch"
        " images (fixed in 3.0)"
    )
    referrer_risk = (
        f"{key}, which deletes the untagged referrers (signatures, SBOMs, attestations"
        " pushed with a subject and no tag) of images that stay, on Distribution 2.x and"
        " 3.x alike"
    )
    fix = "remove the flag (regprune deletes index children and referrers itself)"
    if indexes_at_risk:
        fix += f", set [registry.{registry}] version = 3 if the registry runs 3.x"
    fix += ", or pass --allow-delete-untagged to `regprune gc` to run it anyway"
    if allow_delete_untagged:
        risk = index_risk if indexes_at_risk else referrer_risk
        return [f"{risk}; running it because --allow-delete-untagged was given"]
    try:
        indexes, referrers = untagged_at_risk(engine, registry, indexes=indexes_at_risk)
    except RegpruneError as exc:
        risk = index_risk if indexes_at_risk else referrer_risk
        why = f"the registry could not be scanned for them ({exc.message})"
        if dry_run:
            return [f"{risk}, and {why}"]
        raise UsageError(f"{risk}, and {why}; not running garbage collection: {fix}") from exc
    problems = []
    if indexes:
        problems.append(f"{index_risk}, and this registry holds {_some(indexes)}")
    if referrers:
        problems.append(f"{referrer_risk}, and this registry holds {_some(referrers)}")
    if not problems:
        return []
    if dry_run:
        return [f"{problem}; a real run is refused: {fix}" for problem in problems]
    raise UsageError(f"{'; '.join(problems)}; not running garbage collection: {fix}")


def _some(found: list[str]) -> str:
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    return f"{len(found)} ({found[0]}{more})"


def untagged_at_risk(
    engine: Engine, registry: str, *, indexes: bool = True
) -> tuple[list[str], list[str]]:
    """What ``--delete-untagged`` would wrongly sweep: ``repo:tag`` of every index or
    manifest list (when ``indexes``), and ``repo@digest (a referrer of repo:tag)`` of
    every untagged referrer of a tagged manifest.

    Scans every repository through the API with the digest cache (a warm scan costs one
    request per tag), then asks the referrers API about every tagged manifest, its
    platform manifests and its tagged artifacts: one request each where the registry
    serves it, one in all where it does not (there, OCI 1.1 clients list referrers in a
    tagged ``sha256-<hex>`` index, which the index judgement covers on 2.x and which
    3.x keeps).
    """
    client = engine.client(registry)
    scanner = Scanner(client, engine.state, registry, engine.now())
    found_indexes: list[str] = []
    found_referrers: list[str] = []
    for scan in scanner.scan(scanner.repositories(["*"])):
        tags = scan.tags_by_digest()
        if indexes:
            for digest, facts in sorted(scan.manifests.items()):
                if is_index(facts.media_type):
                    names = tags.get(digest)
                    found_indexes.append(
                        f"{scan.repository}:{names[0]}" if names else f"{scan.repository}@{digest}"
                    )
        subjects: dict[str, str] = {}  # manifest digest -> the tagged image it belongs to
        for image in scan.images:
            shown = f"{scan.repository}:{image.tags[0]}" if image.tags else image.label
            for manifest in [*image.manifests, *(a.facts for a in image.artifacts)]:
                subjects.setdefault(manifest.digest, shown)
        ordered = sorted(subjects)
        answers = client.map(partial(referrers_of, client, scan.repository), ordered)
        for subject, answer in zip(ordered, answers, strict=True):
            for descriptor in answer or ():
                if descriptor.digest not in scan.manifests:
                    found_referrers.append(
                        f"{scan.repository}@{descriptor.digest[:19]}, a referrer of {subjects[subject]}"
                    )
    return found_indexes, found_referrers

