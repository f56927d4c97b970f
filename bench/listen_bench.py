"""Measure how many notification events ``regprune listen`` records per second.

    .venv/bin/python bench/listen_bench.py                       # 2.8.2 (docker-registry)
    .venv/bin/python bench/listen_bench.py --binary ../shared/bin/registry-3.1.1

Runs a real ``regprune listen`` process (its own state DB, ``synchronous = FULL``)
and two loads against it, counting events sent, acknowledged and stored (from the DB):

1. **registry**: a real Distribution registry notifying the listener; ``--clients``
   threads GET manifests with a non-regprune User-Agent (``--pulls`` in all); each
   GET is one pull event the registry queues and delivers, one per POST, in order.
   Rate = pulls stored / time from the first GET until the last one is stored.
2. **synthetic**: ``--senders`` threads POST envelopes of ``--batch`` events each
   over keep-alive connections (``--events`` in all), as many registries at once
   would.  Rate = events stored / time until the last acknowledgement.

"Nothing lost" means stored == sent, counted after the queues drained.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regprune.mediatypes import MANIFEST_ACCEPT, OCI_MANIFEST
from regprune.testing import ImagePusher, RegistryServer
from regprune.testing.server import notification_endpoint

TOKEN = "bench-token"


def start_listener(tmp: Path) -> tuple[subprocess.Popen[str], int]:
    config = tmp / "regprune.toml"
    config.write_text(
        '[registry.main]\nurl = "http://127.0.0.1:1"\n\n'
        f'[listen]\ntoken = "{TOKEN}"\nregistry = "main"\n'
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "regprune",
            "--config",
            str(config),
            "--state",
            str(tmp / "state.db"),
            "listen",
            "--port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REGPRUNE_LOAD_PLUGINS": ""},
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    port = int(first.split("listening on http://127.0.0.1:", 1)[1].split()[0])
    threading.Thread(target=process.stderr.read, daemon=True).start()  # drain
    return process, port


def stored(db: Path) -> tuple[int, int]:
    """(distinct event ids, pulls) recorded so far."""
    with sqlite3.connect(db) as conn:
        events = conn.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0]
        pulls = conn.execute("SELECT COALESCE(SUM(pulls), 0) FROM usage").fetchone()[0]
    return int(events), int(pulls)


def wait_stored(db: Path, want: int, timeout: float, column: int) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored(db)[column] >= want:
            return time.monotonic()
        time.sleep(0.02)
    return time.monotonic()


def event(n: int) -> dict[str, Any]:
    digest = f"sha256:{n % 5000:064x}"
    return {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
        "action": "pull",
        "target": {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "repository": f"bench/r{n % 50}",
            "tag": "v1",
            "size": 500,
        },
        "request": {"addr": "10.0.0.1:1", "method": "GET", "useragent": "containerd/1.7.0"},
    }


def synthetic(port: int, db: Path, total: int, senders: int, batch: int) -> dict[str, Any]:
    before = stored(db)[0]
    per_sender = total // senders
    acked = [0] * senders
    errors: list[str] = []

    def send(index: int) -> None:
        try:
            _send(index)
        except OSError as exc:  # counted: what was not acknowledged was not sent
            errors.append(repr(exc))

    def _send(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/vnd.docker.distribution.events.v1+json",
        }
        done = 0
        while done < per_sender:
            size = min(batch, per_sender - done)
            body = json.dumps(
                {"events": [event(index * per_sender + done + k) for k in range(size)]}
            ).encode()
            conn.request("POST", "/events", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(str(response.status))
                return
            done += size
            acked[index] += size
        conn.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    sent = per_sender * senders
    count = stored(db)[0] - before
    return {
        "load": f"synthetic, {senders} senders x {batch}/envelope",
        "sent": sent,
        "acknowledged": sum(acked),
        "stored": count,
        "seconds": round(elapsed, 2),
        "events_per_s": round(sum(acked) / elapsed),
        "errors": len(errors),
    }


def registry_load(
    port: int, db: Path, binary: str | None, tmp: Path, pulls: int, clients: int
) -> dict[str, Any]:
    with RegistryServer(
        tmp / "registry",
        binary=binary,
        notify=[notification_endpoint(f"http://127.0.0.1:{port}/events", TOKEN, timeout="5s")],
    ) as server:
        with ImagePusher(server.url) as pusher:
            images = [pusher.push_image("bench/app", [f"t{n}"], seed=str(n)) for n in range(20)]
        wait_stored(db, 20, 30, 0)  # the pushes
        _, pulls_before = stored(db)
        per_client = pulls // clients
        ok = [0] * clients

        def pull(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for n in range(per_client):
                image = images[(index + n) % len(images)]
                conn.request(
                    "GET",
                    f"/v2/bench/app/manifests/{image.tags[0]}",
                    headers={"Accept": MANIFEST_ACCEPT, "User-Agent": "bench-puller/1.0"},
                )
                response = conn.getresponse()
                response.read()
                ok[index] += response.status == 200
            conn.close()

        threads = [threading.Thread(target=pull, args=(i,)) for i in range(clients)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent_done = time.monotonic() - start
        sent = sum(ok)
        end = wait_stored(db, pulls_before + sent, 300, 1)
        count = stored(db)[1] - pulls_before
        elapsed = end - start
        return {
            "load": f"registry {server.binary.rsplit('/', 1)[-1]}, {clients} pulling clients",
            "sent": sent,
            "acknowledged": count,
            "stored": count,
            "pulls_per_s_served": round(sent / sent_done),
            "seconds": round(elapsed, 2),
            "events_per_s": round(count / elapsed),
            "errors": 0,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="registry binary (default: as the test kit finds it)")
    parser.add_argument("--pulls", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=40000)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1, help="events per synthetic envelope")
    parser.add_argument("--skip-registry", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        process, port = start_listener(tmp)
        db = tmp / "state.db"
        try:
            results = []
            if not args.skip_registry:
                binary = str(Path(args.binary).resolve()) if args.binary else None
                results.append(registry_load(port, db, binary, tmp, args.pulls, args.clients))
            results.append(synthetic(port, db, args.events, args.senders, args.batch))
        finally:
            process.terminate()
            process.wait(30)
    for result in results:
        # Lost: acknowledged (or, from the registry, sent) and not stored.
        print(json.dumps({**result, "lost": result["acknowledged"] - result["stored"]}))
    return 0 if all(r["sent"] == r["stored"] and not r["errors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
