"""Peak memory and time of ``regprune plan`` as the number of tags grows.

    .venv/bin/python bench/memory.py --tags 10000,50000,100000
    .venv/bin/python bench/memory.py --tags 10000 --registry-binary ../shared/bin/registry-3.1.1
    .venv/bin/python bench/memory.py --tags 10000 --trace 25     # where the bytes go
    .venv/bin/python bench/memory.py --tags 100000 --tmp /dev/shm  # storage on tmpfs

For each size: a throwaway registry on loopback, seeded on disk (``seed.py``) with
``--per-repo`` tags per repository, then each kind of plan in a new process, so the
peak RSS (``ru_maxrss`` of that process, from ``wait4``) is the whole plan's:

- ``engine``: ``Engine.plan`` (imports, plugins, scan, plan, storing it);
- ``cli json``: ``python -m regprune plan --json`` with its output to a file;
- ``cli table``: ``python -m regprune plan`` (the rich tables) to a file;

each cold (a new state DB) and warm (a copy of the DB a cold engine plan left).
It prints tags, peak RSS, RSS per tag above the interpreter's baseline, seconds
and seconds per 1,000 tags. ``--trace N`` runs one cold and one warm engine plan
under ``tracemalloc`` instead and prints the N lines that hold the most memory at
the plan's peak (when the plan is stored, with every scan still alive).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seed import plan_builds, seed_disk

BENCH = Path(__file__).resolve().parent
POLICY_TOML = """\
[registry.local]
url = "{url}"

[policy.ci]
registry = "local"
repositories = ["bench/*"]
keep_tags = ['^latest$']
selectors = [
  {{ use = "age", older_than = "30d" }},
  {{ use = "count", keep = 10 }},
]
approval = "auto"
"""


@dataclass
class Measured:
    tags: int
    kind: str  # cold | warm
    via: str  # engine | cli json | cli table | baseline
    peak_mb: float
    seconds: float
    output_mb: float = 0.0


def _env() -> dict[str, str]:
    # Loopback only: a proxy from the environment would sit between regprune and the registry.
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def run_measured(command: list[str], stdout: Path) -> tuple[float, float]:
    """Run ``command`` to completion; (peak RSS in MB, wall seconds) of that process alone."""
    start = time.perf_counter()
    with stdout.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=_env())
        assert process.stderr is not None
        errors = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{errors.decode()}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


def cli_command(config: Path, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "regprune",
        "--config",
        str(config),
        "--state",
        str(state),
        "plan",
        "--policy",
        "ci",
        *extra,
    ]


def engine_command(config: Path, state: Path, trace: int = 0) -> list[str]:
    command = [sys.executable, str(BENCH / "memory.py"), "--child", str(config), str(state)]
    return command + (["--trace", str(trace)] if trace else [])


def child(config: Path, state_path: Path, trace: int) -> int:
    """The ``engine`` run: one ``Engine.plan`` in this process (``--child``)."""
    if trace:
        import tracemalloc

        tracemalloc.start(1)
    from regprune.config import load_settings
    from regprune.engine import Engine
    from regprune.state import State
    from regprune.state.plans import Plans

    snapshots: list[Any] = []
    if trace:
        save = Plans.save

        def traced_save(self: Plans, plan: Any) -> None:
            save(self, plan)
            snapshots.append(tracemalloc.take_snapshot())

        setattr(Plans, "save", traced_save)  # noqa: B010 (a bench-only wrapper)

    state = State(state_path)
    engine = Engine(load_settings(config), state)
    try:
        plan = engine.plan("ci", requested_by="bench")
    finally:
        engine.close()
        state.close()
    print(json.dumps({"delete": len(plan.delete), "keep": len(plan.keep)}))
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        print(f"tracemalloc peak {peak / 2**20:.1f} MB", file=sys.stderr)
        stats = snapshots[0].statistics("lineno")
        total = sum(stat.size for stat in stats)
        print(f"held when the plan is stored: {total / 2**20:.1f} MB", file=sys.stderr)
        for stat in stats[:trace]:
            frame = stat.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            print(f"{stat.size / 2**20:8.2f} MB {stat.count:>9,} blocks  {where}", file=sys.stderr)
    return 0


def measure_size(
    tags: int,
    per_repo: int,
    binary: str | None,
    reps: int,
    trace: int,
    table: bool,
    tmp: str | None,
) -> list[Measured]:
    from regprune.testing import RegistryServer

    workdir = Path(tempfile.mkdtemp(prefix="regprune-memory-", dir=tmp))
    # The registry runs with its root as cwd: a relative binary path would not resolve.
    binary = os.path.abspath(binary) if binary else None
    server = RegistryServer(workdir / "registry", binary=binary)
    results: list[Measured] = []
    try:
        server.start()
        repos = max(1, tags // per_repo)
        started = time.perf_counter()
        seeded = seed_disk(server.storage_path, plan_builds(repos, per_repo))
        log(f"seeded {seeded:,} tags in {time.perf_counter() - started:.1f} s")
        config = workdir / "regprune.toml"
        config.write_text(POLICY_TOML.format(url=server.url))
        out = workdir / "out"
        cold_db = workdir / "cold-left.db"

        def fresh(path: Path, warm: bool) -> Path:
            path.unlink(missing_ok=True)
            if warm:
                shutil.copy(cold_db, path)
            return path

        if trace:
            for kind in ("cold", "warm"):
                db = fresh(workdir / f"trace-{kind}.db", kind == "warm")
                print(f"--- {kind}, {seeded:,} tags", file=sys.stderr, flush=True)
                command = engine_command(config, db, trace)
                subprocess.run(command, check=True, env=_env(), stdout=subprocess.DEVNULL)
                if kind == "cold":
                    shutil.copy(db, cold_db)
            return []

        # The cold engine plan first (it leaves the warm DB), then the warm runs (the
        # usual case of a scheduled job), the cold CLI runs last.
        runs: list[tuple[str, list[str], Path | None]] = [("cold", ["engine"], workdir / "c.db")]
        for kind in ("warm", "cold"):
            db = workdir / f"{kind}.db"
            if kind == "warm":
                runs.append((kind, ["engine"], db))
            runs.append((kind, ["cli json", "--json"], db))
            if table:
                runs.append((kind, ["cli table"], db))
        for rep in range(reps):
            for kind, (via, *flags), db in runs:
                assert db is not None
                fresh(db, kind == "warm")
                if via == "engine":
                    command = engine_command(config, db)
                else:
                    command = cli_command(config, db, *flags)
                peak, seconds = run_measured(command, out)
                if via == "engine" and kind == "cold" and rep == 0:
                    shutil.copy(db, cold_db)
                size = out.stat().st_size / 2**20
                results.append(Measured(seeded, kind, via, peak, seconds, size))
                log(f"{seeded:>7,} tags {kind} {via:<9} {peak:7.1f} MB {seconds:7.1f} s")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def baseline_mb() -> float:
    """Peak RSS of a process that only imports regprune and loads its plugins."""
    code = (
        "from regprune.plugin_manager import get_plugin_manager; "
        "import regprune.engine, regprune.cli; get_plugin_manager()"
    )
    peak, _ = run_measured([sys.executable, "-c", code], Path(os.devnull))
    return peak


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(results: list[Measured], base: float) -> str:
    lines = [
        f"baseline (imports and plugins only): {base:.1f} MB",
        "",
        f"{'tags':>8} {'plan':<5} {'via':<10}{'peak MB':>9}{'KB/tag':>8}{'s':>8}"
        f"{'s/1k tags':>10}{'output MB':>10}",
    ]
    groups: dict[tuple[int, str, str], list[Measured]] = {}
    for m in results:
        groups.setdefault((m.tags, m.kind, m.via), []).append(m)
    for (tags, kind, via), group in groups.items():
        peak = max(m.peak_mb for m in group)
        seconds = sorted(m.seconds for m in group)[len(group) // 2]
        per_tag = (peak - base) * 1024 / tags
        lines.append(
            f"{tags:>8,} {kind:<5} {via:<10}{peak:>9.1f}{per_tag:>8.2f}{seconds:>8.1f}"
            f"{1000 * seconds / tags:>10.2f}{group[0].output_mb:>10.1f}"
        )
    lines += [
        "",
        "peak MB: the largest max RSS of the runs; KB/tag: (peak - baseline) / tags;",
        "s: the median wall time, registry on the same machine.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tags", default="10000", help="comma-separated tag counts")
    parser.add_argument("--per-repo", type=int, default=500, help="tags per repository")
    parser.add_argument("--reps", type=int, default=1, help="runs of each kind per size")
    parser.add_argument("--registry-binary", default=None, help="registry binary to run")
    parser.add_argument("--no-table", action="store_true", help="skip the table CLI runs")
    parser.add_argument(
        "--tmp",
        default=None,
        help="where the registry's storage and the state DBs go (a tmpfs keeps a slow or"
        " shared disk out of the numbers); default: the system's temporary directory",
    )
    parser.add_argument("--trace", type=int, default=0, help="tracemalloc: top N lines")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(Path(args.child[0]), Path(args.child[1]), args.trace)
    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        log("note: an address-space limit is set; large sizes may fail")
    base = baseline_mb()
    results: list[Measured] = []
    for tags in (int(t) for t in args.tags.split(",")):
        results += measure_size(
            tags,
            args.per_repo,
            args.registry_binary,
            args.reps,
            args.trace,
            not args.no_table,
            args.tmp,
        )
    if args.trace:
        return 0
    if args.json:
        print(json.dumps({"baseline_mb": base, "runs": [asdict(m) for m in results]}, indent=2))
    else:
        print(render(results, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
