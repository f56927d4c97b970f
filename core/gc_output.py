"""What a Distribution ``garbage-collect`` run says it found, read from its output.

The collector prints, on 2.x and 3.x alike::

    <repository>: marking manifest sha256:…
    N blobs marked, M blobs and K manifests eligible for deletion
    blob eligible for deletion: sha256:…
    manifest eligible for deletion: sha256:…     (with --delete-untagged)

A dry run's human report comes from these lines: the summary line when it is there,
else the eligible lines counted.  The summary precedes the eligible list, so the
whole output must be read, not the tail a result keeps.
"""

from __future__ import annotations

import re

from .models import GcEligible

__all__ = ["eligible_blobs", "parse_gc_output"]

_SUMMARY = re.compile(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion")
_BLOB = re.compile(r"^blob eligible for deletion: (\S+)", re.MULTILINE)
_MANIFEST = re.compile(r"^manifest eligible for deletion: \S+", re.MULTILINE)


def parse_gc_output(text: str) -> GcEligible | None:
    """The counts a collector's output reports; None when it reports none (a wrapper
    command that prints something else, or a collector that failed early)."""
    # The last one: a wrapper may run the collector more than once.
    summaries = list(_SUMMARY.finditer(text))
    summary = summaries[-1] if summaries else None
    blob_lines = len(_BLOB.findall(text))
    manifest_lines = len(_MANIFEST.findall(text))
    if summary is not None:
        marked, blobs, manifests = (int(group) for group in summary.groups())
        return GcEligible(blobs=blobs, manifests=manifests, blobs_marked=marked)
    if blob_lines or manifest_lines:
        return GcEligible(blobs=blob_lines, manifests=manifest_lines)
    return None


def eligible_blobs(text: str) -> set[str]:
    """The digests of the blobs the output lists as eligible for deletion."""
    return set(_BLOB.findall(text))
