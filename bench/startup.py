"""The CLI's own start-up: interpreter, imports and plugin loading, paid on every cron run.

    .venv/bin/python bench/startup.py            # median of 10 runs of each command
    .venv/bin/python bench/startup.py --runs 20 --json

Times, in new processes: a bare interpreter, ``import regprune.cli``, ``regprune
--help`` (builds the CLI, loads plugins) and ``regprune plugins`` (lists what the
plugin manager loaded), then lists the slowest imports of ``regprune --help`` from
``python -X importtime``.  No registry is needed: this is the fixed cost a plan pays
before its first request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import regprune.cli": ["-c", "import regprune.cli"],
    "regprune --help": ["-m", "regprune", "--help"],
    "regprune plugins": ["-m", "regprune", "plugins"],
}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REGPRUNE_")}


def time_command(args: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of ``python <args>`` (the first, cold one dropped)."""
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, env=_env(), check=True)
        times.append(time.perf_counter() - start)
    return times[1:]


def slowest_imports(args: list[str], top: int) -> list[dict[str, Any]]:
    """The ``top`` imports with the largest cumulative time (``-X importtime``), in ms."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=_env()
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append(
            {
                "module": name.strip(),
                "self_ms": int(self_us) / 1000,
                "cumulative_ms": int(cumulative_us) / 1000,
            }
        )
    rows.sort(key=lambda r: r["cumulative_ms"], reverse=True)
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--top", type=int, default=15, help="slowest imports to list")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = []
    for name, command in COMMANDS.items():
        times = time_command(command, args.runs)
        results.append(
            {
                "command": name,
                "runs": len(times),
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
            }
        )
    imports = slowest_imports(COMMANDS["regprune --help"], args.top)
    report = {"python": sys.version.split()[0], "startup": results, "slowest_imports": imports}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"CLI start-up, Python {report['python']}, median of {args.runs} runs")
    print(f"{'command':<24}{'median s':>9}{'min s':>7}{'max s':>7}")
    for r in results:
        print(f"{r['command']:<24}{r['median_s']:>9.3f}{r['min_s']:>7.3f}{r['max_s']:>7.3f}")
    print("\nslowest imports of `regprune --help` (python -X importtime, cumulative ms):")
    for r in imports:
        print(f"  {r['cumulative_ms']:>8.1f}  {r['module']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
