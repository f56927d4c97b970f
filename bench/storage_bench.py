"""Benchmark plans read from the registry's storage against plans through its API.

    .venv/bin/python bench/storage_bench.py                        # 2,000 tags, Distribution 2 and 3
    .venv/bin/python bench/storage_bench.py --versions 3 --sizes 10000,50000,100000
    .venv/bin/python bench/storage_bench.py --versions 3 --sizes 10000 --profile 25

For each registry version (as in ``plan_bench.py``: ``--versions 2,3`` or
``--registry-binary``) and each size in ``--sizes`` (tags; ``--per-repo`` tags per
repository): a throwaway registry on loopback, seeded on disk (``seed.py``), then
``Engine.plan`` with the policy of ``plan_bench.py``, each run in a new process so
that its peak RSS (``ru_maxrss`` from ``wait4``) is the whole plan's:

- storage cold: ``[registry.NAME] storage`` set, a new state DB;
- storage warm: the same, on a copy of the DB a cold storage plan left;
- API warm: no ``storage``, on a copy of the DB a cold API plan left (sizes up to
  ``--api-max-tags``; an API plan of 100,000 tags takes minutes);
- CLI: ``python -m regprune plan --json`` from storage, cold and warm (process start
  and imports included; sizes up to ``--cli-max-tags``).

Seconds are ``Engine.plan``'s own wall time inside the child (as ``plan_bench.py``
times it); medians of ``--reps``.  It prints each run, the API-over-storage ratio,
seconds per 1,000 tags and how that grows across sizes.  ``--profile N`` also runs
one cold and one warm storage plan under cProfile at each size and prints the N
functions with the most own time.  See docs/performance.md#storage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memory import _env, baseline_mb, cli_command, run_measured
from plan_bench import POLICY, log, registry_binaries, registry_version
from seed import plan_builds, seed_disk

from regprune import __version__

BENCH = Path(__file__).resolve().parent
# Issue 10's targets: seconds for a cold or warm plan from storage, by tag count.
TARGET_S = {2000: 0.5, 100000: 15.0}
TARGET_RATIO = 10.0  # the warm API plan over the storage plan, at least


@dataclass
class Run:
    tags: int
    version: str
    kind: str  # cold | warm
    source: str  # storage | api
    via: str  # engine | cli
    seconds: float  # Engine.plan's own wall time (cli: the whole process)
    process_s: float  # the child process, imports included
    peak_mb: float
    requests: int | None
    delete: int | None
    cpu_s: float | None = None  # Engine.plan's CPU time: steadier than wall on a busy machine


def config_text(url: str, storage: Path | None) -> str:
    """The bench's config: ``plan_bench.POLICY``, from the storage when given."""
    lines = ["[registry.local]", f"url = {json.dumps(url)}"]
    if storage is not None:
        lines.append(f"storage = {json.dumps(str(storage))}")
    lines += ["", "[policy.ci]"]
    for key, value in POLICY.items():
        lines.append(f"{key} = {_toml_value(value)}")
    lines.append('approval = "auto"')
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


# -- the child: one plan in a process of its own ------------------------------------------


def child(config: Path, state_path: Path, profile: int, no_gc: bool = False) -> int:
    """One ``Engine.plan`` (``--child``): prints its seconds, requests and item count."""
    started = time.perf_counter()
    if no_gc:  # an experiment: what Python's cyclic GC costs a large plan
        import gc

        gc.disable()
    from regprune.config import load_settings
    from regprune.engine import Engine
    from regprune.plugin_manager import get_plugin_manager
    from regprune.state import State

    state = State(state_path)
    engine = Engine(
        load_settings(config), state, manager=get_plugin_manager(load_entrypoints=False)
    )
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    try:
        begin = time.perf_counter()
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        plan = engine.plan("ci", requested_by="bench")
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - begin
        cpu = time.process_time() - cpu
        requests = engine.request_count
    finally:
        engine.close()
        state.close()
    if profiler is not None:
        import pstats

        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(profile)
        stats.sort_stats("cumulative").print_stats(profile)
    result = {
        "seconds": seconds,
        "cpu_s": cpu,
        "process_s": time.perf_counter() - started,
        "requests": requests,
        "delete": len(plan.delete),
    }
    print(json.dumps(result))
    return 0


def engine_run(
    config: Path, state: Path, out: Path, no_gc: bool = False
) -> tuple[dict[str, Any], float]:
    """One plan in a child process: (what it printed, its peak RSS in MB)."""
    command = [sys.executable, str(BENCH / "storage_bench.py"), "--child", str(config), str(state)]
    command += ["--no-gc"] if no_gc else []
    peak, _ = run_measured(command, out)
    return json.loads(out.read_text()), peak


def cli_run(config: Path, state: Path, out: Path) -> tuple[float, float, int]:
    """``python -m regprune plan --json``: (wall seconds, peak RSS MB, items to delete)."""
    peak, seconds = run_measured(cli_command(config, state, "--json"), out)
    return seconds, peak, len(json.loads(out.read_text()).get("delete", []))


# -- one registry, one size -----------------------------------------------------------------


def bench_size(
    args: argparse.Namespace, binary: str, version: str, tags_wanted: int
) -> tuple[list[Run], dict[str, Any]]:
    from regprune.testing import RegistryServer

    workdir = Path(tempfile.mkdtemp(prefix="regprune-storage-bench-", dir=args.tmp))
    server = RegistryServer(workdir / "registry", binary=binary)
    runs: list[Run] = []
    info: dict[str, Any] = {}
    try:
        server.start()
        repos = max(1, tags_wanted // args.per_repo)
        started = time.perf_counter()
        tags = seed_disk(server.storage_path, plan_builds(repos, args.per_repo))
        info = {
            "tags": tags,
            "repositories": repos,
            "seed_seconds": round(time.perf_counter() - started, 2),
        }
        log(f"{version}: seeded {tags:,} tags in {info['seed_seconds']:.1f} s")
        storage_config = workdir / "storage.toml"
        storage_config.write_text(config_text(server.url, Path(server.storage_path)))
        api_config = workdir / "api.toml"
        api_config.write_text(config_text(server.url, None))
        out = workdir / "out.json"

        def record(kind: str, source: str, db: Path, config: Path) -> None:
            result, peak = engine_run(config, db, out, args.no_gc and source == "storage")
            runs.append(
                Run(
                    tags,
                    version,
                    kind,
                    source,
                    "engine",
                    result["seconds"],
                    result["process_s"],
                    peak,
                    result["requests"],
                    result["delete"],
                    result["cpu_s"],
                )
            )
            log(
                f"{version} {tags:>7,} tags {source:<7} {kind} {result['seconds']:8.3f} s"
                f" (CPU {result['cpu_s']:.3f} s) {peak:7.1f} MB {result['requests']:>7,} requests"
            )

        def fresh(path: Path, warm_from: Path | None) -> Path:
            path.unlink(missing_ok=True)
            if warm_from is not None:
                shutil.copy(warm_from, path)
            return path

        storage_warm = workdir / "storage-warm.db"
        for rep in range(args.reps):
            db = fresh(workdir / "storage-cold.db", None)
            record("cold", "storage", db, storage_config)
            if rep == 0:
                shutil.copy(db, storage_warm)
        for _ in range(args.reps):
            record("warm", "storage", fresh(workdir / "w.db", storage_warm), storage_config)

        if tags <= args.api_max_tags:
            # The API's warm DB comes from a cold API plan, as a scheduled job's would.
            api_warm = fresh(workdir / "api-warm.db", None)
            record("cold", "api", api_warm, api_config)
            for _ in range(args.reps):
                record("warm", "api", fresh(workdir / "w.db", api_warm), api_config)

        if tags <= args.cli_max_tags and not args.no_cli:
            for kind in ("cold", "warm"):
                for _ in range(args.reps):
                    db = fresh(workdir / "cli.db", storage_warm if kind == "warm" else None)
                    seconds, peak, delete = cli_run(storage_config, db, out)
                    runs.append(
                        Run(
                            tags,
                            version,
                            kind,
                            "storage",
                            "cli",
                            seconds,
                            seconds,
                            peak,
                            None,
                            delete,
                        )
                    )
                    log(f"{version} {tags:>7,} tags cli     {kind} {seconds:8.3f} s {peak:7.1f} MB")

        if args.profile:
            for kind in ("cold", "warm"):
                db = fresh(workdir / "profile.db", storage_warm if kind == "warm" else None)
                log(f"--- cProfile, storage {kind}, {version}, {tags:,} tags (own time)")
                command = [
                    sys.executable,
                    str(BENCH / "storage_bench.py"),
                    "--child",
                    str(storage_config),
                    str(db),
                    "--profile",
                    str(args.profile),
                ]
                # The profile goes to this process's stderr.
                subprocess.run(command, check=True, env=_env(), stdout=subprocess.DEVNULL)
    finally:
        server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return runs, info


# -- summaries --------------------------------------------------------------------------------


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (version, tags): medians of each kind, the ratio and the targets."""
    groups: dict[tuple[str, int], dict[str, list[Run]]] = {}
    for run in runs:
        name = f"{run.via if run.via == 'cli' else run.source} {run.kind}"
        groups.setdefault((run.version, run.tags), {}).setdefault(name, []).append(run)
    rows = []
    for (version, tags), kinds in groups.items():

        def median(name: str, kinds: dict[str, list[Run]] = kinds) -> float | None:
            found = kinds.get(name)
            return statistics.median(r.seconds for r in found) if found else None

        def cpu(name: str, kinds: dict[str, list[Run]] = kinds) -> float | None:
            found = [r.cpu_s for r in kinds.get(name, []) if r.cpu_s is not None]
            return statistics.median(found) if found else None

        def peak(name: str, kinds: dict[str, list[Run]] = kinds) -> float | None:
            found = kinds.get(name)
            return max(r.peak_mb for r in found) if found else None

        cold, warm, api = median("storage cold"), median("storage warm"), median("api warm")
        target = TARGET_S.get(tags)
        rows.append(
            {
                "version": version,
                "tags": tags,
                "storage_cold_s": cold,
                "storage_warm_s": warm,
                "api_cold_s": median("api cold"),
                "api_warm_s": api,
                "ratio_warm": api / warm if api and warm else None,
                "ratio_cold": api / cold if api and cold else None,
                "storage_cold_cpu_s": cpu("storage cold"),
                "storage_warm_cpu_s": cpu("storage warm"),
                "api_warm_cpu_s": cpu("api warm"),
                "cli_cold_s": median("cli cold"),
                "cli_warm_s": median("cli warm"),
                "peak_cold_mb": peak("storage cold"),
                "peak_warm_mb": peak("storage warm"),
                "peak_api_mb": peak("api warm"),
                "cold_s_per_1k": 1000 * cold / tags if cold else None,
                "warm_s_per_1k": 1000 * warm / tags if warm else None,
                "target_s": target,
                "ok": None
                if target is None or cold is None or warm is None
                else max(cold, warm) < target
                and (api is None or (api / max(cold, warm)) >= TARGET_RATIO),
            }
        )
    return rows


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per version: seconds per tag at the largest size over that at the smallest (1.0 is linear)."""
    found = []
    for version in dict.fromkeys(r["version"] for r in rows):
        mine = sorted((r for r in rows if r["version"] == version), key=lambda r: r["tags"])
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]
        entry: dict[str, Any] = {"version": version, "from": small["tags"], "to": large["tags"]}
        for kind in ("cold", "warm"):
            a, b = small[f"{kind}_s_per_1k"], large[f"{kind}_s_per_1k"]
            entry[kind] = b / a if a and b else None
        found.append(entry)
    return found


def _fmt(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"regprune {result['regprune']} plans from storage; {machine['cpus']} CPUs; Python "
        f"{machine['python']}; load average {machine['load_start']} -> {machine['load_end']}; "
        f"imports alone {result['baseline_mb']:.1f} MB",
        "",
        f"{'registry':<16}{'tags':>8}{'cold s':>8}{'warm s':>8}{'API s':>8}{'API/warm':>9}"
        f"{'API/cold':>9}{'cold MB':>8}{'warm MB':>8}{'API MB':>8}{'cold s/1k':>10}"
        f"{'warm s/1k':>10}{'cold CPU':>9}{'warm CPU':>9}{'cli cold':>9}{'cli warm':>9}  target",
    ]
    for r in result["summary"]:
        verdict = {True: "ok", False: "MISSED", None: "-"}[r["ok"]]
        target = f"{r['target_s']} s, x{TARGET_RATIO:.0f}: {verdict}" if r["target_s"] else "-"
        lines.append(
            f"{r['version']:<16}{r['tags']:>8,}{_fmt(r['storage_cold_s'], '.3f', 8)}"
            f"{_fmt(r['storage_warm_s'], '.3f', 8)}{_fmt(r['api_warm_s'], '.3f', 8)}"
            f"{_fmt(r['ratio_warm'], '.1f', 9)}{_fmt(r['ratio_cold'], '.1f', 9)}"
            f"{_fmt(r['peak_cold_mb'], '.1f', 8)}{_fmt(r['peak_warm_mb'], '.1f', 8)}"
            f"{_fmt(r['peak_api_mb'], '.1f', 8)}{_fmt(r['cold_s_per_1k'], '.3f', 10)}"
            f"{_fmt(r['warm_s_per_1k'], '.3f', 10)}{_fmt(r['storage_cold_cpu_s'], '.3f', 9)}"
            f"{_fmt(r['storage_warm_cpu_s'], '.3f', 9)}{_fmt(r['cli_cold_s'], '.2f', 9)}"
            f"{_fmt(r['cli_warm_s'], '.2f', 9)}  {target}"
        )
    for g in result["growth"]:
        lines.append(
            f"\n{g['version']}: seconds per tag at {g['to']:,} tags over {g['from']:,}: "
            f"cold {_fmt(g['cold'], '.2f', 0)}, warm {_fmt(g['warm'], '.2f', 0)} (1.00 = linear)"
        )
    lines += [
        "",
        "s: Engine.plan's wall time in its own process (median); CPU: its CPU seconds (median);",
        "MB: that process's peak RSS;",
        "API: the warm plan through the registry's API; cli: `plan --json`, process included.",
    ]
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(size < 1 for size in sizes):
        raise SystemExit(f"error: --sizes wants tag counts separated by commas, not {text!r}")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="2000", help="tag counts, comma-separated (default 2000)"
    )
    parser.add_argument(
        "--per-repo", type=int, default=100, help="tags per repository (default 100)"
    )
    parser.add_argument("--reps", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument(
        "--versions", default="2,3", help="registry versions, comma-separated (default 2,3)"
    )
    parser.add_argument(
        "--registry-binary", action="append", default=None, help="registry binary (repeatable)"
    )
    parser.add_argument(
        "--api-max-tags",
        type=int,
        default=10000,
        help="largest size that also gets API plans (default 10000)",
    )
    parser.add_argument(
        "--cli-max-tags",
        type=int,
        default=2000,
        help="largest size that also gets CLI runs (default 2000)",
    )
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI runs")
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="run the storage plans with Python's cyclic GC off (an experiment)",
    )
    parser.add_argument("--profile", type=int, default=0, help="cProfile: top N functions")
    parser.add_argument("--tmp", default=None, help="where the storage and state DBs go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--save", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.per_repo < 1 or args.reps < 1:
        raise SystemExit("error: --per-repo and --reps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(Path(args.child[0]), Path(args.child[1]), args.profile, args.no_gc)
    sizes = parse_sizes(args.sizes)
    load_start = os.getloadavg()[0]
    base = baseline_mb()
    runs: list[Run] = []
    seeding: list[dict[str, Any]] = []
    for binary in registry_binaries(args):
        version = registry_version(binary)
        for size in sizes:
            found, info = bench_size(args, binary, version, size)
            runs += found
            seeding.append({"version": version, **info})
    summary = summarize(runs)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_start": round(load_start, 2),
            "load_end": round(os.getloadavg()[0], 2),
        },
        "regprune": __version__,
        "baseline_mb": base,
        "per_repo": args.per_repo,
        "reps": args.reps,
        "policy": POLICY,
        "seeding": seeding,
        "summary": summary,
        "growth": growth(summary),
        "runs": [asdict(r) for r in runs],
    }
    text = json.dumps(result, indent=2)
    if args.save:
        args.save.write_text(text + "\n")
    print(text if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
