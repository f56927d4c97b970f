"""What a Distribution ``garbage-collect`` run says it found, read from its output.

The collector prints, on 2.x and 3.x alike::

    <repository>: marking manifest sha256:…
    N blobs marked, M blobs and K manifests eligible for deletion
    blob eligible for deletion: sha256:…
    manifest eligible for deletion: sha256:…     (with --delete-untagged)

A dry run's human report comes from these lines: the summary line when it is there,
else the eligible lines counted.  The summary precedes the eligible list, so the
whole output must be read, not the tail a result keeps.  On a big registry that is
a line per blob, 100 MB and more: `GcOutputReader` reads it in pieces as they come
(``feed``), keeping only the counts and at most `DIGEST_LIMIT` blob digests.
"""

from __future__ import annotations

import re

from .models import GcEligible

__all__ = ["DIGEST_LIMIT", "GcOutputReader"]

DIGEST_LIMIT = 100_000
"""Eligible blob digests kept for sizing a dry run's savings (about 15 MB of memory);
past it the blobs are still counted, but not sized."""

_SUMMARY = re.compile(rb"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion")
_BLOB = re.compile(rb"^blob eligible for deletion: (\S+)", re.MULTILINE)
_MANIFEST = re.compile(rb"^manifest eligible for deletion: \S+", re.MULTILINE)
_MARK = b"eligible for deletion"  # in every line of interest: a cheap test skips the rest


class GcOutputReader:
    """The collector's counts from its output, fed in pieces of whole lines."""

    def __init__(self, digest_limit: int | None = None) -> None:
        self.digest_limit = DIGEST_LIMIT if digest_limit is None else digest_limit
        self._summary: tuple[int, int, int] | None = None
        self._blob_lines = 0
        self._manifest_lines = 0
        self._digests: set[str] | None = set()

    def feed(self, lines: bytes) -> None:
        """Read some whole lines of the output (a line must not be split between calls)."""
        if _MARK not in lines:
            return
        # The last one: a wrapper may run the collector more than once.
        for match in _SUMMARY.finditer(lines):
            marked, eligible, manifests = (int(group) for group in match.groups())
            self._summary = (marked, eligible, manifests)
        listed = _BLOB.findall(lines)
        self._blob_lines += len(listed)
        self._manifest_lines += len(_MANIFEST.findall(lines))
        if self._digests is not None:
            self._digests.update(digest.decode(errors="replace") for digest in listed)
            if len(self._digests) > self.digest_limit:
                self._digests = None  # too many to size: counted only

    def eligible(self) -> GcEligible | None:
        """The counts the output reports; None when it reports none (a wrapper command
        that prints something else, or a collector that failed early)."""
        if self._summary is not None:
            marked, blobs, manifests = self._summary
            return GcEligible(blobs=blobs, manifests=manifests, blobs_marked=marked)
        if self._blob_lines or self._manifest_lines:
            return GcEligible(blobs=self._blob_lines, manifests=self._manifest_lines)
        return None

    def blobs(self) -> set[str] | None:
        """The digests of the blobs listed as eligible; None when over `digest_limit`."""
        return None if self._digests is None else set(self._digests)

