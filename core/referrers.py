"""Untagged referrers: artifacts (signatures, attestations, SBOMs, anything with a
``subject``) pushed without a tag, found through the OCI 1.1 referrers API.

Tagged artifacts (cosign's ``sha256-<hex>.sig|.att|.sbom`` tags, the OCI 1.1
referrers tag schema ``sha256-<hex>``, any tagged manifest with a ``subject``) are
found by the scan itself.  An untagged one is visible only where the registry serves
``GET /v2/<name>/referrers/<digest>``; where it does not (Distribution 2.x and 3.1),
the first question answers "not served" and nothing more is asked in that run.

Only images the plan would delete are asked about (and their platform manifests and
artifacts, and the referrers found, for referrers of referrers): what a kept image's
referrers are does not change the plan, since they stay with it anyway.  See
docs/performance.md#requests for what that costs.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models import Image
from .registry import referrers_of
from .scan import RepositoryScan, Scanner

__all__ = ["attach_referrers"]


def attach_referrers(
    scanner: Scanner, scan: RepositoryScan, images: Sequence[Image]
) -> list[Image]:
    """Find the untagged referrers of ``images`` and add them to their ``artifacts``.

    Every manifest of an image (its own, its platform manifests, its artifacts) is a
    subject to ask about, and so is every referrer found.  A listed referrer counts
    only when its manifest really names that subject (a registry's list is not taken
    on trust: it decides what is deleted).  Returns the referrers added, which are in
    ``scan.manifests`` too.
    """
    client = scanner.client
    repository = scan.repository
    known = set(scan.manifests)
    frontier: dict[str, Image] = {}  # subject digest -> the image it belongs to
    for image in images:
        for manifest in [image.facts, *image.children, *(a.facts for a in image.artifacts)]:
            frontier.setdefault(manifest.digest, image)
    asked: set[str] = set()
    added: list[Image] = []
    while frontier:
        subjects = sorted(set(frontier) - asked)
        asked.update(subjects)
        answers = client.map(lambda digest: referrers_of(client, repository, digest), subjects)
        listed: dict[str, tuple[str, Image]] = {}  # referrer digest -> (subject, owner)
        for subject, answer in zip(subjects, answers, strict=True):
            for descriptor in answer or ():
                if descriptor.digest not in known:
                    listed.setdefault(descriptor.digest, (subject, frontier[subject]))
        facts = scanner.facts_for(repository, listed)
        frontier = {}
        for digest, (subject, owner) in sorted(listed.items()):
            found = facts.get(digest)
            if found is None or found.subject != subject:
                continue  # gone since it was listed, or not a referrer of that subject
            referrer = Image(repository=repository, digest=digest, tags=[], facts=found)
            owner.artifacts.append(referrer)
            scan.manifests[digest] = found
            known.add(digest)
            added.append(referrer)
            frontier[digest] = owner
    return added
