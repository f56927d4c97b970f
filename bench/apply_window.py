"""Measure the window that remains between apply's last re-check of an item and its DELETE.

    .venv/bin/python bench/apply_window.py                    # 2.8.2 (docker-registry), 60 images
    .venv/bin/python bench/apply_window.py --binary ../shared/bin/registry-3.1.1 --images 200

Starts a throwaway registry on loopback, pushes ``--images`` old images, plans them
all for deletion, and applies the plan through a recording ``FaultProxy`` (no
faults).  For every DELETE it takes the arrival time, at the registry's doorstep, of

- the item's tag-list read (what "a tag new since the snapshot" is judged from), and
- the last tag resolution (HEAD) before it (what "its own tags" are judged from),

and reports the gaps to the DELETE's arrival.  A push that lands inside the gap is
the one apply cannot see; everything pushed before it is caught (docs/safety.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regprune.config import parse_settings
from regprune.engine import Engine
from regprune.models import ApprovalContext
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State
from regprune.testing import FaultProxy, ImagePusher, RegistryServer


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--binary", help="registry binary (default: as the test kit finds it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        RegistryServer(
            Path(tmp) / "registry", binary=str(Path(args.binary).resolve()) if args.binary else None
        ) as server,
    ):
        old = datetime.now(UTC) - timedelta(days=30)
        with ImagePusher(server.url) as pusher:
            for n in range(args.images):
                pusher.push_image("bench/app", [f"build-{n}"], created=old)
        seen: list[tuple[float, str, str]] = []
        lock = threading.Lock()

        def record(method: str, path: str) -> None:
            with lock:
                seen.append((time.perf_counter(), method, path))

        with FaultProxy(server.url) as proxy:
            proxy.on_request(record)
            settings = parse_settings(
                {
                    "registry": {"local": {"url": proxy.url}},
                    "policy": {
                        "bench": {
                            "registry": "local",
                            "repositories": ["bench/*"],
                            "selectors": [{"use": "age", "older_than": "7d"}],
                        }
                    },
                }
            )
            engine = Engine(
                settings,
                State(Path(tmp) / "state.db"),
                manager=get_plugin_manager(load_entrypoints=False),
            )
            plan = engine.plan("bench")
            seen.clear()
            started = time.perf_counter()
            result = engine.apply(
                plan.id, context=ApprovalContext(assume_yes=True, interactive=False, actor="bench")
            )
            elapsed = time.perf_counter() - started
            engine.close()

    list_gaps: list[float] = []
    head_gaps: list[float] = []
    last_list = last_head = None
    for at, method, path in seen:
        if method == "GET" and path.split("?")[0].endswith("/tags/list"):
            last_list = at
        elif method == "HEAD":
            last_head = at
        elif method == "DELETE" and "sha256:0000" not in path:
            if last_list is not None:
                list_gaps.append((at - last_list) * 1000)
            if last_head is not None:
                head_gaps.append((at - last_head) * 1000)
    report = {
        "registry": args.binary or "registry (test kit default)",
        "images": args.images,
        "deleted": len(result.of("deleted")),
        "apply_seconds": round(elapsed, 3),
        "per_item_ms": round(elapsed * 1000 / max(1, len(result.of("deleted"))), 2),
        "tag_list_to_delete_ms": {
            "median": round(statistics.median(list_gaps), 2),
            "p95": round(percentile(list_gaps, 0.95), 2),
            "max": round(max(list_gaps), 2),
        },
        "own_tag_to_delete_ms": {
            "median": round(statistics.median(head_gaps), 2),
            "p95": round(percentile(head_gaps, 0.95), 2),
            "max": round(max(head_gaps), 2),
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
