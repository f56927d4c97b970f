"""regprune-semver: a regprune selector for semantic-version release tags.

Keeps the newest ``keep_per_major`` releases of every major version and selects
the older ones::

    selectors = [{ use = "semver_releases", keep_per_major = 2 }]

The tutorial in regprune's docs/plugins/writing-plugins.md builds this file step
by step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import Field, field_validator
from regprune import (
    Image,
    Options,
    Pattern,
    Regex,
    SelectionContext,
    UsageError,
    Verdict,
    compile_pattern,
    hookimpl,
    parse_options,
)

__version__ = "0.1.0"

# https://semver.org: MAJOR.MINOR.PATCH, an optional -pre.release and +build metadata.
SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
DEFAULT_PATTERN = r"^v?(?P<version>.+)$"


@dataclass(frozen=True)
class Version:
    """A release version read from a tag (``text`` is the tag as written)."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...]
    text: str

    @property
    def is_prerelease(self) -> bool:
        return bool(self.pre)

    def key(self) -> tuple[Any, ...]:
        """Sort key in semver precedence: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-rc.1 < 1.0.0."""
        pre = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.pre)
        return (self.major, self.minor, self.patch, not self.pre, pre)


def parse_version(tag: str, pattern: Pattern) -> Version | None:
    """The version a tag names, or None when it is not a release tag.

    ``pattern`` must match the tag; its ``version`` group must be a semver version.
    """
    match = pattern.search(tag)
    if match is None or match.group("version") is None:
        return None
    found = SEMVER.match(match.group("version"))
    if found is None:
        return None
    pre = tuple(found["pre"].split(".")) if found["pre"] else ()
    return Version(int(found["major"]), int(found["minor"]), int(found["patch"]), pre, tag)


class SemverOptions(Options):
    """The selector's options: everything in ``{ use = "semver_releases", ... }`` but ``use``."""

    keep_per_major: int = Field(default=2, ge=1, strict=True)
    # Regex: compiled with regprune's linear-time engine (RE2) when the options are
    # parsed, never Python's backtracking `re`: tags are chosen by whoever can push.
    pattern: Regex = DEFAULT_PATTERN

    @field_validator("pattern")
    @classmethod
    def _has_version_group(cls, pattern: str) -> str:
        if "version" not in compile_pattern(pattern).groupindex:
            raise ValueError(f"{pattern!r} needs a (?P<version>...) group around the version")
        return pattern


class SemverSelector:
    """Keeps the newest ``keep_per_major`` releases of each major version; selects older ones.

    Releases are ranked by version, never by date or tag name.  Pre-releases never
    take one of the kept places: one is selected once a release of its major
    version outranks it, and kept while it is newer than every release.  Images
    without a release tag are never selected, nor are releases that also carry a
    tag that is not a release (``latest``): deleting them would delete that tag.
    """

    def __init__(self, keep_per_major: int, pattern: Pattern) -> None:
        self.keep_per_major = keep_per_major
        self.pattern = pattern

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SemverSelector:
        """The factory regprune calls with a policy's options (everything but ``use``)."""
        parsed = parse_options(SemverOptions, options)
        return cls(parsed.keep_per_major, compile_pattern(parsed.pattern))

    def select(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, Verdict]:
        """Return ``{digest: (selected, reason)}`` for the images of one repository."""
        verdicts: dict[str, Verdict] = {}
        majors: dict[int, list[tuple[Version, Image]]] = {}
        for image in images:
            versions = [parse_version(tag, self.pattern) for tag in image.tags]
            found = [version for version in versions if version is not None]
            if not found:
                shown = ", ".join(sorted(image.tags)) or "untagged"
                reason = f"semver_releases: no semver tag ({shown}); not selected"
                verdicts[image.digest] = (False, reason)
                continue
            newest = max(found, key=Version.key)
            majors.setdefault(newest.major, []).append((newest, image))
        for major, members in majors.items():
            verdicts.update(self.rank(major, members))
        return verdicts

    def rank(self, major: int, members: list[tuple[Version, Image]]) -> dict[str, Verdict]:
        """Verdicts for the images of one major version."""
        members = sorted(members, key=lambda pair: (pair[0].key(), pair[1].digest), reverse=True)
        releases = [(version, image) for version, image in members if not version.is_prerelease]
        newest = releases[0][0] if releases else None
        keep = self.keep_per_major
        verdicts: dict[str, Verdict] = {}
        for rank, (version, image) in enumerate(releases, start=1):
            reason = f"semver_releases: {version.text} is release #{rank} of major {major}"
            if rank <= keep:
                verdicts[image.digest] = (False, f"{reason}, within keep_per_major={keep}")
            else:
                verdicts[image.digest] = self.older(
                    image, f"{reason}, beyond keep_per_major={keep}"
                )
        for version, image in members:
            if not version.is_prerelease:
                continue
            if newest is None or version.key() > newest.key():
                reason = (
                    f"semver_releases: pre-release {version.text} is newer than every "
                    f"{major}.x release"
                )
                verdicts[image.digest] = (False, reason)
            else:
                reason = (
                    f"semver_releases: pre-release {version.text} is outranked by release "
                    f"{newest.text}"
                )
                verdicts[image.digest] = self.older(image, reason)
        return verdicts

    def older(self, image: Image, reason: str) -> Verdict:
        """Select an outranked image, unless it also carries a tag that is not a release."""
        others = sorted(tag for tag in image.tags if parse_version(tag, self.pattern) is None)
        if others:
            return False, f"{reason}, but also tagged {', '.join(others)}; not selected"
        return True, reason


@hookimpl
def register_selectors(register: Callable[[str, Any], None]) -> None:
    """Make ``{ use = "semver_releases", ... }`` available to policies."""
    register("semver_releases", SemverSelector.from_options)


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    """Add ``regprune semver-sort TAG...``: how the selector reads and orders tags."""

    @cli.command("semver-sort")
    def semver_sort(
        tags: Annotated[list[str], typer.Argument(help="Tags, e.g. v1.2.3 1.3.0-rc.1 latest.")],
        pattern: Annotated[
            str, typer.Option(help="Where the version is in a tag.")
        ] = DEFAULT_PATTERN,
    ) -> None:
        """Print TAGS newest first, as the semver selector ranks them; other tags last."""
        try:
            parsed = parse_options(SemverOptions, {"pattern": pattern})
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        compiled = compile_pattern(parsed.pattern)
        versions = [parse_version(tag, compiled) for tag in tags]
        ranked = sorted((v for v in versions if v), key=Version.key, reverse=True)
        for version in ranked:
            kind = "pre-release" if version.is_prerelease else "release"
            typer.echo(f"{version.text}\t{kind} of major {version.major}")
        for tag, version in zip(tags, versions, strict=True):
            if version is None:
                typer.echo(f"{tag}\tnot a semver release: never selected")
