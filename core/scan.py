"""Scan repositories: tags → digests → facts → images.

Request budget (see docs/performance.md): one manifest GET per tag; for a digest
not yet in the cache, one config-blob GET (plus one GET per index child and its
config).  Facts are cached by digest in the state DB, so a warm scan costs one
request per tag, overlapped across the client's worker threads.

A source that reads the registry's storage (`regprune.storage.StorageReader`: it has
``tag_links`` and ``revisions``) costs no request at all: tags resolve from their
link files, only digests new to the cache are read, and the scan also sees what the
API cannot list: untagged manifests (``RepositoryScan.untagged``) and push times.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ManifestNotFound, RegistryError
from .manifests import facts_from_manifest, needs_config, with_config
from .mediatypes import artifact_subject, is_index
from .models import Image, ManifestFacts, Usage
from .registry import Manifest, RegistryBackend
from .scan_progress import NoProgress, ScanProgress
from .state import State

if TYPE_CHECKING:
    from .storage import Link

T = TypeVar("T")
R = TypeVar("R")

# Batched reads go in slices of this many while someone watches the progress: small
# enough for the bar to move, large enough to keep the client's pipelines full (2,000
# tags on 2.8.2: 256 cost a fifth of a warm scan's speed, 1,000 nothing measurable).
PROGRESS_SLICE = 1000


@dataclass
class RepositoryScan:
    """What one repository holds right now."""

    repository: str
    tags: dict[str, str]
    manifests: dict[str, ManifestFacts]
    images: list[Image]
    orphan_artifacts: list[Image] = field(default_factory=list)
    # Storage scans only: top-level manifests no tag points to (not index children,
    # not referrers of what is tagged), and those of them that must stay, with why.
    untagged: list[Image] = field(default_factory=list)
    untagged_kept: dict[str, str] = field(default_factory=dict)
    # Storage scans only: every manifest the repository holds (its revision links).
    revisions: tuple[str, ...] | None = None

    def tags_by_digest(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for tag, digest in self.tags.items():
            grouped[digest].append(tag)
        return {digest: sorted(tags) for digest, tags in grouped.items()}


def match_repositories(
    names: Iterable[str], include: Sequence[str], exclude: Sequence[str] = ()
) -> list[str]:
    """Repositories matching any include glob and no exclude glob ('*' crosses '/')."""
    return sorted(
        name
        for name in names
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in include)
        and not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)
    )


def merged_usage(image: Image, recorded: Mapping[str, Usage]) -> Usage | None:
    """The use of an image: a pull of its own manifest or of any of its platform
    manifests (clients pull an index, then their platform's manifest by digest).
    The push time is its own manifest's."""
    found = [recorded[m.digest] for m in image.manifests if m.digest in recorded]
    if not found:
        return None
    oldest = datetime.min.replace(tzinfo=UTC)
    last = max(found, key=lambda usage: usage.last_pull or oldest)
    own = recorded.get(image.digest)
    agents = list(dict.fromkeys(a for usage in [last, *found] for a in usage.agents))
    return Usage(
        repository=image.repository,
        digest=image.digest,
        first_push=own.first_push if own else None,
        last_pull=last.last_pull,
        last_pull_tag=last.last_pull_tag,
        last_pull_agent=last.last_pull_agent,
        pulls=sum(usage.pulls for usage in found),
        agents=tuple(agents),
    )


def is_literal(pattern: str) -> bool:
    return not any(char in pattern for char in "*?[")


class Scanner:
    """Resolves tags and digest facts for repositories, using the state DB as a cache."""

    def __init__(
        self,
        client: RegistryBackend,
        state: State,
        registry: str,
        now: datetime,
        progress: ScanProgress | None = None,
    ) -> None:
        self.client = client
        self.state = state
        self.registry = registry
        self.now = now
        self.progress: ScanProgress = progress or NoProgress()

    def repositories(self, include: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
        """Repositories a policy covers; literal names skip the catalog (it may need extra scope)."""
        if include and all(is_literal(pattern) for pattern in include):
            return match_repositories(include, include, exclude)
        return match_repositories(self.client.catalog(), include, exclude)

    def scan(
        self, repositories: Sequence[str], listed: Mapping[str, list[str]] | None = None
    ) -> list[RepositoryScan]:
        """Resolve every tag of these repositories and the facts of every digest they reach.

        ``listed``: tag lists already read (checking the scope, see ``scope.py``),
        used instead of asking again."""
        self.progress.started(len(repositories))
        try:
            if _is_storage(self.client):
                scans = self._scan_storage(repositories)
            else:
                known = listed or {}
                unlisted = [repo for repo in repositories if repo not in known]
                fetched = dict(
                    zip(unlisted, self.client.map(self._listed_tags, unlisted), strict=True)
                )
                for repo in repositories:
                    if repo in known:
                        self.progress.listed(repo, len(known[repo]))
                tag_lists = [
                    known[repo] if repo in known else fetched[repo] for repo in repositories
                ]
                pairs = [
                    (repo, tag)
                    for repo, tags in zip(repositories, tag_lists, strict=True)
                    for tag in tags
                ]
                scans = self._build(repositories, pairs, self._resolve_tags(pairs))
            self._attach_usage(scans)
        finally:
            self.progress.finished()
        return scans

    def _listed_tags(self, repository: str) -> list[str]:
        tags = self.client.tags(repository)
        self.progress.listed(repository, len(tags))
        return tags

    def _batched(
        self,
        batch: Callable[[Sequence[T]], list[R]],
        items: Sequence[T],
        done: Callable[[int], None],
    ) -> list[R]:
        """``batch(items)``, in slices when a progress is watching (``done`` after each);
        in one call otherwise, as the client pipelines best."""
        if isinstance(self.progress, NoProgress):
            return batch(items)
        results: list[R] = []
        for start in range(0, len(items), PROGRESS_SLICE):
            part = batch(items[start : start + PROGRESS_SLICE])
            results.extend(part)
            done(len(part))
        return results

    def _mapped(
        self, fn: Callable[[T], R], items: Sequence[T], done: Callable[[int], None]
    ) -> list[R]:
        """``client.map(fn, items)``, with ``done(1)`` after each item."""
        if isinstance(self.progress, NoProgress):
            return self.client.map(fn, items)

        def one(item: T) -> R:
            result = fn(item)
            done(1)
            return result

        return self.client.map(one, items)

    def _attach_usage(self, scans: list[RepositoryScan]) -> None:
        """Give every image the pulls ``regprune listen`` recorded for its manifests:
        one query per repository, none when nothing was ever recorded for the registry."""
        if not self.state.usage.has_any(self.registry):
            return
        for scan in scans:
            recorded = self.state.usage.repository(self.registry, scan.repository)
            if not recorded:
                continue
            for image in [*scan.images, *scan.untagged, *scan.orphan_artifacts]:
                image.usage = merged_usage(image, recorded)

    def _scan_storage(self, repositories: Sequence[str]) -> list[RepositoryScan]:
        """The scan from storage: tags from their links, untagged manifests from the
        revisions, facts read only for digests the cache does not know."""
        source: Any = self.client
        links: dict[str, dict[str, Link]] = {}
        revisions: dict[str, dict[str, Link]] = {}
        for repo in repositories:
            links[repo] = source.tag_links(repo)
            revisions[repo] = source.revisions(repo)
            self.progress.listed(repo, len(links[repo]))
        pairs: list[tuple[str, str]] = []
        digests: list[str] = []
        for repo in repositories:
            for tag, link in sorted(links[repo].items()):
                if link.digest in revisions[repo]:  # else the registry answers 404 for it
                    pairs.append((repo, tag))
                    digests.append(link.digest)
        # Their link files resolved every tag (one that points nowhere counts as done).
        self.progress.resolved(sum(len(tags) for tags in links.values()))
        known = self.state.digests.get_facts(set(digests))
        unknown = sorted(
            {(repo, d) for (repo, _), d in zip(pairs, digests, strict=True) if d not in known}
        )
        self.progress.reading(len(unknown))
        manifests = self._batched(source.get_manifests, unknown, self.progress.read)
        read = dict(zip(unknown, manifests, strict=True))
        resolved: list[tuple[str, str, ManifestFacts] | None] = []
        for (repo, tag), digest in zip(pairs, digests, strict=True):
            if digest in known:
                resolved.append((tag, digest, known[digest]))
                continue
            manifest = read.get((repo, digest))
            resolved.append(None if manifest is None else (tag, digest, _facts(manifest)))
        scans = self._build(repositories, pairs, resolved, known=known)
        for scan in scans:
            self._add_untagged(scan, revisions[scan.repository], links[scan.repository])
        return scans

    def _build(
        self,
        repositories: Sequence[str],
        pairs: list[tuple[str, str]],
        resolved: list[tuple[str, str, ManifestFacts] | None],
        known: dict[str, ManifestFacts] | None = None,
    ) -> list[RepositoryScan]:

        if known is None:
            known = self.state.digests.get_facts(
                {digest for _, digest, _ in (r for r in resolved if r)}
            )
        fresh: dict[tuple[str, str], ManifestFacts] = {}
        tag_maps: dict[str, dict[str, str]] = {repo: {} for repo in repositories}
        for (repo, tag), result in zip(pairs, resolved, strict=True):
            if result is None:  # the tag vanished between listing and resolving
                continue
            _, digest, facts = result
            if digest in known:
                digest = known[digest].digest  # one string per digest, not one per tag
            else:
                fresh[(repo, digest)] = facts
            tag_maps[repo][tag] = digest

        known_keys = {
            (repo, digest)
            for repo, tags in tag_maps.items()
            for digest in tags.values()
            if digest in known
        }
        manifests = self._complete(fresh, known, known_keys)
        scans = []
        for repo in repositories:
            scans.append(self._assemble(repo, tag_maps[repo], manifests))
        return scans

    def _resolve_tags(
        self, pairs: list[tuple[str, str]]
    ) -> list[tuple[str, str, ManifestFacts] | None]:
        """(tag, digest, facts) for each (repository, tag); None for a tag that vanished.

        A back end with the optional batch method ``get_manifests`` (the distribution
        one: pipelined GETs) gets them all at once; any other, one ``get_manifest`` per
        tag through its ``map``.
        """
        batch = getattr(self.client, "get_manifests", None)
        if batch is None:
            return self._mapped(self._resolve_tag, pairs, self.progress.resolved)
        manifests: list[Manifest | None] = self._batched(batch, pairs, self.progress.resolved)
        return [
            None if manifest is None else (tag, manifest.digest, _facts(manifest))
            for (_, tag), manifest in zip(pairs, manifests, strict=True)
        ]

    def _resolve_tag(self, pair: tuple[str, str]) -> tuple[str, str, ManifestFacts] | None:
        repo, tag = pair
        try:
            manifest = self.client.get_manifest(repo, tag)
        except ManifestNotFound:
            return None
        return tag, manifest.digest, _facts(manifest)

    def _complete(
        self,
        fresh: dict[tuple[str, str], ManifestFacts],
        known: dict[str, ManifestFacts],
        known_keys: set[tuple[str, str]],
    ) -> dict[str, ManifestFacts]:
        """Fetch what new digests still lack (index children, config blobs) and cache it."""
        manifests = dict(known)
        # One repository per new digest is enough to fetch what it lacks.
        pending: dict[str, tuple[str, ManifestFacts]] = {}
        for (repo, digest), facts in fresh.items():
            pending.setdefault(digest, (repo, facts))

        # Index children: cached ones are reused, the rest fetched by digest.
        child_keys: dict[str, str] = {}
        indexes = [(repo, facts) for repo, facts in pending.values()]
        indexes += [(repo, known[digest]) for (repo, digest) in known_keys if digest in known]
        for repo, facts in indexes:
            if is_index(facts.media_type):
                for child in facts.children:
                    child_keys.setdefault(child, repo)
        missing = set(child_keys) - set(manifests) - set(pending)
        manifests.update(self.state.digests.get_facts(missing))
        to_fetch = sorted(
            (repo, child)
            for child, repo in child_keys.items()
            if child not in manifests and child not in pending
        )
        self.progress.reading(len(to_fetch))
        for (repo, child), fetched in zip(
            to_fetch, self._mapped(self._fetch_manifest, to_fetch, self.progress.read), strict=True
        ):
            if fetched is not None:
                pending[child] = (repo, fetched)

        # Config blobs give the build time and labels of image manifests.
        config_jobs = [(repo, facts) for repo, facts in pending.values() if needs_config(facts)]
        new_facts = {digest: facts for digest, (_, facts) in pending.items()}
        for facts in self._with_configs(config_jobs):
            new_facts[facts.digest] = facts
        manifests.update(new_facts)
        self.state.digests.put_facts(new_facts.values())
        return manifests

    def facts_for(self, repository: str, digests: Iterable[str]) -> dict[str, ManifestFacts]:
        """Facts of manifests known by digest only (referrers): from the state DB, else
        fetched once (manifest, and config when it is an image's) and cached there.
        A digest whose manifest is gone is left out."""
        wanted = set(digests)
        found = self.state.digests.get_facts(wanted)
        to_fetch = sorted((repository, digest) for digest in wanted - set(found))
        fetched = [f for f in self.client.map(self._fetch_manifest, to_fetch) if f is not None]
        configs = [(repository, f) for f in fetched if needs_config(f)]
        completed = {f.digest: f for f in fetched}
        for facts in self.client.map(self._with_config, configs):
            completed[facts.digest] = facts
        self.state.digests.put_facts(completed.values())
        found.update(completed)
        return found

    def _fetch_manifest(self, key: tuple[str, str]) -> ManifestFacts | None:
        repo, digest = key
        try:
            manifest = self.client.get_manifest(repo, digest)
        except ManifestNotFound:
            return None
        return facts_from_manifest(
            manifest.digest, manifest.media_type, manifest.content, manifest.data
        )

    def _with_configs(self, jobs: list[tuple[str, ManifestFacts]]) -> list[ManifestFacts]:
        """The facts of new image manifests completed from their config blobs, batched
        (``get_blobs``) when the back end offers it."""
        self.progress.reading(len(jobs))
        batch = getattr(self.client, "get_blobs", None)
        if batch is None:
            return self._mapped(self._with_config, jobs, self.progress.read)
        blobs: list[bytes | None] = self._batched(
            batch,
            [(repo, facts.config_digest) for repo, facts in jobs if facts.config_digest],
            self.progress.read,
        )
        # A missing config blob (None) leaves the image without a build time.
        return [
            facts if body is None else with_config(facts, body)
            for (_, facts), body in zip(jobs, blobs, strict=True)
        ]

    def _with_config(self, pair: tuple[str, ManifestFacts]) -> ManifestFacts:
        repo, facts = pair
        assert facts.config_digest is not None
        try:
            body = self.client.get_blob(repo, facts.config_digest)
        except RegistryError as exc:
            if exc.status != 404:
                raise
            return facts  # a missing config blob leaves the image without a build time
        return with_config(facts, body)

    def _add_untagged(
        self, scan: RepositoryScan, revisions: dict[str, Link], tag_links: dict[str, Link]
    ) -> None:
        """Untagged manifests, push times and tag-move times (storage scans only).

        An untagged manifest is its own image unless it goes with something else: a
        platform manifest of any index in the repository goes with that index, and a
        referrer of a manifest that tags reach goes with it (the referrers lookup finds
        it).  Referrers of untagged manifests go with them as artifacts; one whose
        subject is not in the repository at all is an image of its own.  An untagged
        manifest that a tagged artifact (a cosign ``sha256-<hex>.sig`` tag) names as
        its subject stays: ``untagged_kept`` says why.
        """
        repo = scan.repository
        scan.revisions = tuple(revisions)
        pushed = {digest: link.written for digest, link in revisions.items()}
        tagged_at: dict[str, datetime] = {}
        for tag, link in tag_links.items():
            if tag in scan.tags and (
                link.digest not in tagged_at or link.written > tagged_at[link.digest]
            ):
                tagged_at[link.digest] = link.written
        for image in [*scan.images, *scan.orphan_artifacts]:
            image.pushed = pushed.get(image.digest)
            image.tagged_at = tagged_at.get(image.digest)
            for artifact in image.artifacts:
                artifact.pushed = pushed.get(artifact.digest)
                artifact.tagged_at = tagged_at.get(artifact.digest)

        reached = set(scan.manifests)  # every manifest tags reach, with children and artifacts
        loose = sorted(set(revisions) - reached)
        if not loose:
            return
        facts = self.facts_for(repo, loose)
        children = {
            child
            for manifest in [*scan.manifests.values(), *facts.values()]
            for child in manifest.children
        }
        tops: dict[str, Image] = {}
        referrers: list[Image] = []
        for digest in loose:
            found = facts.get(digest)
            if found is None or digest in children:
                continue
            image = Image(
                repository=repo,
                digest=digest,
                tags=[],
                facts=found,
                children=[facts[c] for c in found.children if c in facts],
                pushed=pushed.get(digest),
            )
            if found.subject and found.subject in reached:
                continue  # a referrer of what tags reach: it goes with that
            if found.subject and found.subject in revisions:
                referrers.append(image)
            else:
                tops[digest] = image
        for referrer in referrers:
            root = _root_untagged(referrer, tops, referrers)
            if root is None:
                tops[referrer.digest] = referrer  # a cycle of subjects: its own image
            else:
                tops[root].artifacts.append(referrer)
        for artifact in scan.orphan_artifacts:
            subject = artifact.facts.subject or _tag_subject(artifact.tags)
            if subject in tops:
                scan.untagged_kept[subject] = (
                    f"subject of artifact {', '.join(artifact.tags) or artifact.digest[:19]}, "
                    "which is tagged"
                )
        for image in tops.values():
            for manifest in [*image.manifests, *(a.facts for a in image.artifacts)]:
                scan.manifests[manifest.digest] = manifest
        first_seen = self.state.digests.touch_first_seen(self.registry, repo, tops, self.now)
        for digest, image in tops.items():
            image.first_seen = first_seen.get(digest)
        scan.untagged = sorted(tops.values(), key=lambda image: image.digest)

    def _assemble(
        self, repo: str, tags: dict[str, str], manifests: dict[str, ManifestFacts]
    ) -> RepositoryScan:
        scan = RepositoryScan(repository=repo, tags=tags, manifests={}, images=[])
        by_digest = scan.tags_by_digest()
        first_seen = self.state.digests.touch_first_seen(self.registry, repo, by_digest, self.now)

        images: dict[str, Image] = {}
        artifacts: list[tuple[str, Image]] = []
        for digest, digest_tags in by_digest.items():
            facts = manifests[digest]
            children = [manifests[c] for c in facts.children if c in manifests]
            image = Image(
                repository=repo,
                digest=digest,
                tags=digest_tags,
                facts=facts,
                children=children,
                first_seen=first_seen.get(digest),
            )
            for manifest in image.manifests:
                scan.manifests[manifest.digest] = manifest
            subject = facts.subject or _tag_subject(digest_tags)
            if subject and (facts.subject or all(artifact_subject(t) for t in digest_tags)):
                artifacts.append((subject, image))
            else:
                images[digest] = image

        owner = {child: image.digest for image in images.values() for child in image.facts.children}
        artifact_by_digest = {image.digest: (subject, image) for subject, image in artifacts}
        for subject, artifact in artifacts:
            root = _root_subject(subject, images, owner, artifact_by_digest)
            if root is None:
                scan.orphan_artifacts.append(artifact)
            else:
                images[root].artifacts.append(artifact)
        for image in images.values():  # by digest: the same plan whatever order tags were listed in
            image.artifacts.sort(key=lambda artifact: artifact.digest)
        scan.images = sorted(images.values(), key=lambda image: image.digest)
        return scan


def _is_storage(source: object) -> bool:
    """Whether a scan source reads the registry's storage (it lists revisions)."""
    return callable(getattr(source, "revisions", None)) and callable(
        getattr(source, "tag_links", None)
    )


def _root_untagged(
    referrer: Image, tops: dict[str, Image], referrers: Sequence[Image]
) -> str | None:
    """The untagged image a referrer of an untagged manifest belongs to (following
    referrers of referrers), or None when the chain does not reach one."""
    by_digest = {image.digest: image for image in referrers}
    owner = {child: image.digest for image in tops.values() for child in image.facts.children}
    subject = referrer.facts.subject
    seen: set[str] = set()
    while subject is not None and subject not in seen:
        seen.add(subject)
        if subject in tops:
            return subject
        if subject in owner:
            return owner[subject]
        nxt = by_digest.get(subject)
        subject = nxt.facts.subject if nxt is not None else None
    return None


def _facts(manifest: Manifest) -> ManifestFacts:
    return facts_from_manifest(
        manifest.digest, manifest.media_type, manifest.content, manifest.data
    )


def _tag_subject(tags: Sequence[str]) -> str | None:
    for tag in tags:
        subject = artifact_subject(tag)
        if subject:
            return subject
    return None


def _root_subject(
    subject: str,
    images: dict[str, Image],
    owner: dict[str, str],
    artifacts: dict[str, tuple[str, Image]],
) -> str | None:
    """The top-level image an artifact belongs to, following signatures of signatures."""
    seen: set[str] = set()
    while subject not in seen:
        seen.add(subject)
        if subject in images:
            return subject
        if subject in owner:  # signed a platform child: belongs to its index
            return owner[subject]
        if subject in artifacts:
            subject = artifacts[subject][0]
            continue
        return None
    return None
