"""The GC command's output is streamed, not kept: a collector that prints a line per
blob (100 MB and more on a big registry) or a command that floods its log still gives
a dry run's counts and sizes, with a bounded tail in the result and bounded memory.
"""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import pytest

from regprune import gc_output, processes
from regprune.config import GcSettings, RegistrySettings
from regprune.gc_output import GcOutputReader
from regprune.models import GcEligible
from regprune.plugins import gc_command


def test_run_group_keeps_a_tail_and_streams_the_whole_output_in_bounded_pieces() -> None:
    pieces: list[int] = []
    lines = 0

    def count(piece: bytes) -> None:
        nonlocal lines
        pieces.append(len(piece))
        lines += piece.count(b"\n")

    # 30 MB of lines, a 3 MB line without an end, the last line.
    script = "yes 'ci/app: marking manifest sha256:0123' | head -n 750000; head -c 3000000 /dev/zero; echo; echo done"
    outcome = processes.run_group(["sh", "-c", script], 30, on_output=count)
    assert outcome.exit_code == 0
    assert len(outcome.output) <= processes.OUTPUT_TAIL + 100
    assert outcome.output.endswith("\ndone\n")
    assert lines == 750000 + 2
    assert max(pieces) <= 1024 * 1024 + 64 * 1024 + 1


def test_run_group_timeout_keeps_a_tail_only() -> None:
    script = "head -c 50000000 /dev/zero; exec sleep 30"
    outcome = processes.run_group(["sh", "-c", script], 1)
    assert outcome.exit_code == 124
    assert len(outcome.output) <= processes.OUTPUT_TAIL + 200
    assert outcome.output.endswith("timed out after 1s: sh -c " + script)


def _blob(storage: Path, hex_digest: str, size: int) -> str:
    folder = storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest
    folder.mkdir(parents=True)
    (folder / "data").write_bytes(b"x" * size)
    return f"sha256:{hex_digest}"


def _gc_settings(tmp_path: Path, script: str) -> RegistrySettings:
    gc = GcSettings(command=["sh", "-c", script, "gc"], storage_path=str(tmp_path / "storage"))
    return RegistrySettings(url="http://127.0.0.1:5000", gc=gc)


def _big_dry_run_script(digests: list[str]) -> str:
    eligible = " ".join(digests)
    return textwrap.dedent(
        f"""\
        # One 1 MiB line that ends 9 bytes before the first 1 MiB piece does: the
        # summary after it is split between two pieces of the log.
        head -c 1048566 /dev/zero | tr '\\0' x; echo
        echo '300000 blobs marked, {len(digests)} blobs and 0 manifests eligible for deletion'
        for d in {eligible}; do echo "blob eligible for deletion: $d"; done
        yes 'ci/app: marking manifest sha256:0123456789abcdef0123456789abcdef' | head -n 400000
        """
    )


def test_gc_dry_run_counts_come_from_a_big_output_read_in_bounded_memory(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    digests = [_blob(storage, f"{n:064x}", 1000 * n) for n in (1, 2, 3)]
    registry = _gc_settings(tmp_path, _big_dry_run_script(digests))
    tracemalloc.start()
    try:
        result = gc_command.collect_garbage(registry=registry, name="local", dry_run=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result is not None and result.exit_code == 0, result
    assert result.eligible == GcEligible(blobs=3, manifests=0, blobs_marked=300000, bytes=6000)
    assert len(result.output) <= gc_command.OUTPUT_LIMIT
    # ~28 MB of output; what is kept is a 1 MiB tail and 1 MiB pieces.
    assert peak < 12 * 1024 * 1024, peak


def test_gc_dry_run_past_the_digest_limit_counts_but_does_not_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gc_output, "DIGEST_LIMIT", 2)
    storage = tmp_path / "storage"
    digests = [_blob(storage, f"{n:064x}", 1000) for n in (1, 2, 3)]
    registry = _gc_settings(tmp_path, _big_dry_run_script(digests))
    result = gc_command.collect_garbage(registry=registry, name="local", dry_run=True)
    assert result is not None
    assert result.eligible == GcEligible(blobs=3, manifests=0, blobs_marked=300000, bytes=None)


def test_gc_output_reader_takes_the_last_summary_or_counts_lines() -> None:
    reader = GcOutputReader()
    reader.feed(b"1 blobs marked, 2 blobs and 0 manifests eligible for deletion\n")
    reader.feed(b"noise\n5 blobs marked, 1 blobs and 1 manifests eligible for deletion\n")
    reader.feed(
        b"blob eligible for deletion: sha256:aa\nmanifest eligible for deletion: sha256:bb\n"
    )
    assert reader.eligible() == GcEligible(blobs=1, manifests=1, blobs_marked=5)
    assert reader.blobs() == {"sha256:aa"}
    lines_only = GcOutputReader()
    lines_only.feed(
        b"blob eligible for deletion: sha256:aa\nblob eligible for deletion: sha256:cc\n"
    )
    assert lines_only.eligible() == GcEligible(blobs=2, manifests=0)
