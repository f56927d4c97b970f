"""The built-in garbage collector: run the registry's own ``garbage-collect`` command.

``before`` commands run first (e.g. put the registry in read-only mode and restart
it: GC must not overlap with pushes); if one fails, GC does not run.  ``after``
commands run whenever a ``before`` command ran (or there are none), even if GC
failed, could not start, or was interrupted by Ctrl-C or SIGTERM: they leave
read-only mode and restart the registry so its in-memory blob descriptor cache
forgets deleted layers.  A second Ctrl-C waits for them.  A dry run only runs the
command with ``--dry-run``.

The commands get a minimal environment (``regprune.gc_env``): regprune's secrets
and ``REGISTRY_*`` overrides do not reach the registry's GC unless configured.

Every command runs in its own process group, stopped as a whole (SIGTERM, then
SIGKILL) on a timeout or an interruption; its pid goes to ``track_child`` so the
registry's lock is never taken for stale while it lives.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from regprune import hookimpl
from regprune.config import GcSettings, RegistrySettings
from regprune.durations import parse_duration
from regprune.errors import GcInterrupted
from regprune.gc_checks import validate_commands
from regprune.gc_env import gc_environment
from regprune.gc_output import GcOutputReader
from regprune.interrupts import deferred, last_signal, no_forced_exit, signal_name
from regprune.models import GcEligible, GcResult
from regprune.paths import PathProblem, path_kind
from regprune.processes import Stopped, run_group
from regprune.storage import StorageLayout, StorageUnreadable

OUTPUT_LIMIT = 8000
TrackChild = Callable[[int | None], None]


def disk_usage(path: str | None) -> int | None:
    """Bytes in files under the storage root, or None when it is not configured/readable."""
    if not path:
        return None
    root = Path(path)
    try:
        if path_kind(root) != "directory":
            return None
    except PathProblem:  # a name too long, a parent not searchable: not readable
        return None
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += (Path(folder) / name).stat().st_size
            except OSError:
                continue
    return total


@dataclass
class _Run:
    """What one GC run did so far, for its result and for an interruption's message."""

    timeout: float
    track_child: TrackChild | None
    env: dict[str, str]
    """The commands' whole environment (`gc_environment`): regprune's secrets stay out."""
    log: list[str] = field(default_factory=list)
    exit_code: int = 0
    stage: str = "start"
    """Where an interruption hit: "before N/M", "gc", "after" or "finished"."""
    stopped: str | None = None
    after_failed: str | None = None
    signal: int | None = None
    """The signal of the first interruption (a second one only waits for ``after``)."""
    gc_output: GcOutputReader | None = None
    """What the GC command's whole output said: its counts come before the list the
    tail keeps, so the output is read as a stream, not kept."""

    def step(self, argv: list[str], reader: GcOutputReader | None = None) -> int:
        try:
            outcome = run_group(
                argv,
                self.timeout,
                on_start=self.track_child,
                env=self.env,
                on_output=None if reader is None else reader.feed,
            )
        except Stopped as stop:
            self.stopped = stop.outcome.stopped
            self.log.append(f"$ {' '.join(argv)}\n{stop.outcome.output}")
            raise
        self.log.append(f"$ {' '.join(argv)}\n{outcome.output}")
        return outcome.exit_code


@hookimpl(trylast=True)
def collect_garbage(
    registry: RegistrySettings, name: str, dry_run: bool, track_child: TrackChild | None = None
) -> GcResult | None:
    """Run ``[registry.NAME.gc]``: before commands, the GC command, after commands."""
    gc = registry.gc
    if not gc.command:
        return None
    validate_commands(gc, name)  # nothing runs when any command could not
    run = _Run(
        timeout=parse_duration(gc.timeout).total_seconds(),
        track_child=track_child,
        env=gc_environment(gc),
    )
    command = [*gc.command, "--dry-run"] if dry_run else list(gc.command)
    # A second signal interrupts like the first here, never ending the process at
    # once: the after commands must run (see regprune.interrupts).
    with no_forced_exit():
        started = datetime.now(UTC)
        before_bytes = disk_usage(gc.storage_path)
        ran_before = False
        interrupted: KeyboardInterrupt | None = None
        try:
            if not dry_run:
                for n, step in enumerate(gc.before, 1):
                    run.stage, ran_before = f"before {n}/{len(gc.before)}", True
                    code = run.step(step)
                    if code != 0:
                        run.exit_code = code
                        run.log.append(
                            f"before command failed (exit {code}); garbage collection not run"
                        )
                        break
            if run.exit_code == 0:
                run.stage = "gc"
                reader = GcOutputReader()
                run.exit_code = run.step(command, reader)
                run.gc_output = reader
        except KeyboardInterrupt as exc:
            interrupted, run.exit_code, run.signal = exc, 130, last_signal()
            run.log.append(f"interrupted ({signal_name(last_signal())}) during {run.stage}")
        if not dry_run and (ran_before or not gc.before):
            stage, run.stage = run.stage, "after"
            interrupted_earlier = interrupted is not None
            try:
                with deferred():  # a second Ctrl-C must not leave the registry read-only
                    _after(run, gc.after)
            except KeyboardInterrupt as exc:
                if interrupted is None:
                    interrupted, run.signal = exc, last_signal()
            # The message tells where the first interruption hit, not where a second one did.
            run.stage = stage if interrupted_earlier else ("after" if interrupted else "finished")
        result = GcResult(
            registry=name,
            dry_run=dry_run,
            command=command,
            exit_code=run.exit_code,
            output="\n".join(run.log)[-OUTPUT_LIMIT:],
            started_at=started,
            finished_at=datetime.now(UTC),
            bytes_before=before_bytes,
            bytes_after=disk_usage(gc.storage_path),
            warnings=_warnings(dry_run, gc.after),
            eligible=_eligible(run.gc_output, gc.storage_path if dry_run else None),
        )
        if interrupted is not None:
            raise GcInterrupted(_interrupted_message(name, run, ran_before, dry_run, gc), result)
        return result


def _eligible(output: GcOutputReader | None, storage_path: str | None) -> GcEligible | None:
    """The collector's counts; with ``storage_path`` (a dry run's: the blobs are still
    there) the eligible blobs' sizes too, when the output lists every one of them (and
    no more than ``DIGEST_LIMIT``)."""
    eligible = None if output is None else output.eligible()
    if output is None or eligible is None or not storage_path:
        return eligible
    listed = output.blobs()
    if listed is None or len(listed) != eligible.blobs:
        return eligible
    try:
        layout = StorageLayout(storage_path, key="gc.storage_path")
        sizes = [layout.blob_size(digest) or 0 for digest in sorted(listed)]
    except StorageUnreadable:
        return eligible
    return replace(eligible, bytes=sum(sizes))


def _after(run: _Run, steps: list[list[str]]) -> None:
    for step in steps:
        code = run.step(step)
        if code != 0:
            run.after_failed = run.after_failed or f"`{' '.join(step)}` failed (exit {code})"
            if run.exit_code == 0:
                run.exit_code = code


def _warnings(dry_run: bool, after: list[list[str]]) -> list[str]:
    if not dry_run and not after:
        return [
            "no `after` command restarts the registry: with the default in-memory blob descriptor "
            "cache it may report deleted layers as present until restarted"
        ]
    return []


def _interrupted_message(
    name: str, run: _Run, ran_before: bool, dry_run: bool, gc: GcSettings
) -> str:
    """One line: what ran, what was stopped, whether ``after`` ran, and what to do."""
    what = signal_name(run.signal)
    stopped = f" (its process group got {run.stopped})" if run.stopped else ""
    if run.stage == "after":
        done = "garbage collection had finished; the interruption waited for the after commands"
    elif run.stage == "gc":
        done = ("before commands done, " if gc.before else "") + f"GC stopped{stopped}"
    elif run.stage.startswith("before"):
        done = f"before command {run.stage.split()[1]} stopped{stopped}; GC not run"
    else:
        done = "nothing had started"
    if dry_run:
        after = "dry run: no before/after commands"
    elif not (ran_before or not gc.before):
        after = "after commands not needed"
    elif not gc.after:
        after = "no after commands configured"
    elif run.after_failed:
        after = (
            f"after commands ran but {run.after_failed}: the registry may still be read-only;"
            " run the after commands by hand"
        )
    else:
        after = "after commands ran"
    return (
        f"interrupted ({what}) during garbage collection of registry '{name}': {done}; {after};"
        " GC only removes unreferenced data, so nothing is lost: run `regprune gc` again to finish"
    )
