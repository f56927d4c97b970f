"""The built-in garbage collector: run the registry's own ``garbage-collect`` command.

``before`` commands run first (e.g. put the registry in read-only mode and restart
it: GC must not overlap with pushes); if one fails, GC does not run.  ``after``
commands run whenever a ``before`` command ran, even if GC failed (leave read-only
mode; restart so the in-memory blob descriptor cache forgets deleted layers).  A
dry run only runs the command with ``--dry-run``.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from regprune import hookimpl
from regprune.config import RegistrySettings
from regprune.durations import parse_duration
from regprune.errors import ConfigError
from regprune.models import GcResult

OUTPUT_LIMIT = 8000


def disk_usage(path: str | None) -> int | None:
    """Bytes in files under the storage root, or None when it is not configured/readable."""
    if not path:
        return None
    root = Path(path)
    if not root.is_dir():
        return None
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += (Path(folder) / name).stat().st_size
            except OSError:
                continue
    return total


def _run(argv: list[str], timeout: float) -> tuple[int, str]:
    try:
        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        return 127, f"command not found: {argv[0]}"
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f}s: {' '.join(argv)}"
    return completed.returncode, (completed.stdout or "") + (completed.stderr or "")


@hookimpl(trylast=True)
def collect_garbage(registry: RegistrySettings, name: str, dry_run: bool) -> GcResult | None:
    """Run ``[registry.NAME.gc]``: before commands, the GC command, after commands."""
    gc = registry.gc
    if not gc.command:
        return None
    if not isinstance(gc.command, list) or not gc.command:
        raise ConfigError(f"registry.{name}.gc.command: give the command as a list of words")
    timeout = parse_duration(gc.timeout).total_seconds()
    command = [*gc.command, "--dry-run"] if dry_run else list(gc.command)
    started = datetime.now(UTC)
    before_bytes = disk_usage(gc.storage_path)
    log: list[str] = []
    exit_code = 0
    ran_before = False
    if not dry_run:
        for step in gc.before:
            ran_before = True
            code, output = _run(step, timeout)
            log.append(f"$ {' '.join(step)}\n{output}")
            if code != 0:
                exit_code = code
                log.append(f"before command failed (exit {code}); garbage collection not run")
                break
    if exit_code == 0:
        exit_code, output = _run(command, timeout)
        log.append(f"$ {' '.join(command)}\n{output}")
    if not dry_run and (ran_before or not gc.before):
        for step in gc.after:
            code, output = _run(step, timeout)
            log.append(f"$ {' '.join(step)}\n{output}")
            if code != 0 and exit_code == 0:
                exit_code = code
    warnings = []
    if not dry_run and not gc.after:
        warnings.append(
            "no `after` command restarts the registry: with the default in-memory blob descriptor "
            "cache it may report deleted layers as present until restarted"
        )
    text = "\n".join(log)
    return GcResult(
        registry=name,
        dry_run=dry_run,
        command=command,
        exit_code=exit_code,
        output=text[-OUTPUT_LIMIT:],
        started_at=started,
        finished_at=datetime.now(UTC),
        bytes_before=before_bytes,
        bytes_after=disk_usage(gc.storage_path),
        warnings=warnings,
    )
