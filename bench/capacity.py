"""How many manifest requests per second the registry itself can serve.

The yardstick for regprune's own rate: a client as cheap as Python allows, in separate
processes so it does not share a GIL with anything, each process keeping one
keep-alive connection with one request in flight (like ``wrk -c<connections>``), or
with ``depth`` requests in flight (HTTP/1.1 pipelining: the probe that reaches wrk's
rate, as its own CPU per request is a few microseconds).  ``wrk`` is used as well when
it is installed.

Both compete for the same CPUs as the registry, as regprune does; on a 2-core machine
that is part of the answer, not an error in it.
"""

from __future__ import annotations

import multiprocessing
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from regprune.mediatypes import MANIFEST_ACCEPT

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Capacity:
    method: str
    requests: int
    seconds: float
    connections: int
    tool: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _request_bytes(method: str, host: str, path: str) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {MANIFEST_ACCEPT}\r\n"
        "User-Agent: regprune-bench\r\n\r\n"
    ).encode()


def _read_answer(sock: socket.socket, buffer: bytes, head_only: bool) -> bytes:
    """Read one 200 answer from ``buffer`` + the socket; return what is left after it."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = buffer[:end]
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            match = _CONTENT_LENGTH.search(head)
            body = 0 if head_only or match is None else int(match.group(1))
            if len(buffer) >= end + 4 + body:
                return buffer[end + 4 + body :]
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed by the registry")
        buffer += chunk


def _worker(
    host: str,
    port: int,
    method: str,
    paths: list[str],
    offset: int,
    start_at: float,
    seconds: float,
    depth: int,
    results: multiprocessing.Queue,
) -> None:
    """Send requests on one connection until the time is up, ``depth`` in flight."""
    requests = [_request_bytes(method, f"{host}:{port}", path) for path in paths]
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head_only = method == "HEAD"
    buffer = b""
    count = 0
    index = offset
    while time.time() < start_at:
        time.sleep(0.001)
    begin = time.perf_counter()
    deadline = begin + seconds
    try:
        # Fill the pipeline, then send one request for each answer read.
        sock.sendall(b"".join(requests[(index + i) % len(requests)] for i in range(depth)))
        index += depth
        while time.perf_counter() < deadline:
            buffer = _read_answer(sock, buffer, head_only)
            count += 1
            sock.sendall(requests[index % len(requests)])
            index += 1
        results.put((count, time.perf_counter() - begin, None))
    except Exception as exc:  # reported to the parent, which raises
        results.put((count, time.perf_counter() - begin, f"{type(exc).__name__}: {exc}"))
    finally:
        sock.close()


def measure_python(
    host: str,
    port: int,
    paths: list[str],
    *,
    method: str,
    seconds: float,
    connections: int,
    depth: int = 1,
) -> Capacity:
    """Run ``connections`` probe processes at once, ``depth`` requests in flight on each
    (1: one at a time, like wrk; more: pipelined); the sum of their rates."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    start_at = time.time() + 1.0 + 0.2 * connections  # after every process has started
    step = max(1, len(paths) // connections)
    processes = [
        context.Process(
            target=_worker,
            args=(host, port, method, paths, i * step, start_at, seconds, depth, results),
            daemon=True,
        )
        for i in range(connections)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join()
    errors = [error for _, _, error in outcomes if error]
    if errors:
        raise RuntimeError(f"capacity probe failed: {errors[0]}")
    rate = sum(count / elapsed for count, elapsed, _ in outcomes if elapsed)
    total = sum(count for count, _, _ in outcomes)
    # Report as requests over a common duration so that rate == requests / seconds.
    tool = "python" if depth == 1 else f"python, pipelined x{depth}"
    return Capacity(method, total, total / rate if rate else 0.0, connections, tool)


def wrk_path() -> str | None:
    return shutil.which("wrk")


_WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("%s", paths[(i %% #paths) + 1], {["Accept"] = "%s"})
end
"""


def measure_wrk(
    url: str, paths: list[str], *, method: str, seconds: float, connections: int
) -> Capacity:
    """The same measurement with wrk (two threads, ``connections`` connections)."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    quoted = ",".join(f'"{p}"' for p in paths)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "paths.lua"
        script.write_text(_WRK_SCRIPT % (quoted, method, MANIFEST_ACCEPT))
        threads = max(1, min(2, connections))
        out = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk got errors:\n{out}")
    elapsed = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    return Capacity(method, int(match.group(1)), elapsed, connections, "wrk")
