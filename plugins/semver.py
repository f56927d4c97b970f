"""The ``semver`` keep rule: the newest ``keep`` releases of each major (or minor) line are kept.

```toml
protectors = [{ use = "semver", keep = 3 }]
protectors = [{ use = "semver", keep = 2, per = "minor", prereleases = "ignore" }]
```

Tags are read as strict SemVer 2.0 versions with an optional ``v`` prefix (see
``regprune.semver``); a tag that is not one is never kept nor judged by this rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from regprune import hookimpl
from regprune.models import Image, SelectionContext
from regprune.options import Options, parse_options
from regprune.semver import Version, line_name, parse_tag

Line = tuple[str, ...]


class SemverOptions(Options):
    """Options of the semver keep rule."""

    keep: Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
    per: Literal["major", "minor"] = "major"
    prereleases: Literal["keep_newer", "ignore"] = "keep_newer"


class SemverProtector:
    """Keeps every image carrying one of the newest ``keep`` release versions of its line.

    A line is a major version (``1.x``) or, with ``per = "minor"``, a major.minor
    (``1.4.x``).  Versions are ranked by SemVer precedence, never by date or tag
    name, and counted once however many tags or images carry them (``v1.2.3`` and
    ``1.2.3``, or ``1.2.3+a`` and ``1.2.3+b``, are one version).  Prereleases never
    take one of the ``keep`` places; with ``prereleases = "keep_newer"`` one is kept
    while it is newer than every release of its line (``1.3.0-rc.1`` until ``1.3.0``
    or a later 1.x release exists), with ``"ignore"`` this rule never keeps one.

    The ranking is over the images it is shown (one repository, the policy's
    ``tags`` filter applied): a tag the policy does not consider does not count.
    """

    def __init__(self, options: SemverOptions) -> None:
        self.options = options

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SemverProtector:
        """Build from options; raise ValueError naming a bad option."""
        return cls(parse_options(SemverOptions, options))

    def protect(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, str]:
        """Return ``{digest: reason}`` for every image with a kept version."""
        versions = {
            image.digest: [v for v in map(parse_tag, sorted(image.tags)) if v is not None]
            for image in images
        }
        ranks, newest = self._rank(v for found in versions.values() for v in found)
        kept: dict[str, str] = {}
        for image in images:
            reason = self._reason(versions[image.digest], ranks, newest)
            if reason is not None:
                kept[image.digest] = reason
        return kept

    def _rank(
        self, versions: Iterable[Version]
    ) -> tuple[dict[tuple[object, ...], int], dict[Line, tuple[object, ...]]]:
        """Rank (1 = newest) of each distinct release version in its line, and each
        line's newest release."""
        lines: dict[Line, set[tuple[object, ...]]] = {}
        for version in versions:
            if not version.is_prerelease:
                lines.setdefault(version.line(self.options.per), set()).add(version.key())
        ranks: dict[tuple[object, ...], int] = {}
        newest: dict[Line, tuple[object, ...]] = {}
        for line, keys in lines.items():
            ordered = sorted(keys, reverse=True)
            newest[line] = ordered[0]
            ranks.update({key: rank for rank, key in enumerate(ordered, start=1)})
        return ranks, newest

    def _reason(
        self,
        versions: Sequence[Version],
        ranks: Mapping[tuple[object, ...], int],
        newest: Mapping[Line, tuple[object, ...]],
    ) -> str | None:
        keep = self.options.keep
        releases = [v for v in versions if not v.is_prerelease and ranks[v.key()] <= keep]
        if releases:
            # The best-ranked version speaks for the image; ties go to the first tag.
            best = min(releases, key=lambda v: ranks[v.key()])
            line = line_name(best.line(self.options.per))
            return (
                f"semver: tag {best.tag!r} is release #{ranks[best.key()]} of {line}, "
                f"within keep={keep}"
            )
        if self.options.prereleases == "ignore":
            return None
        for version in versions:
            if not version.is_prerelease:
                continue
            line_key = version.line(self.options.per)
            line = line_name(line_key)
            if line_key not in newest:
                return f"semver: tag {version.tag!r} is a prerelease of {line}, which has no release yet"
            if version.key() > newest[line_key]:
                return (
                    f"semver: tag {version.tag!r} is a prerelease newer than every {line} release"
                )
        return None


@hookimpl
def register_protectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``semver`` keep rule."""
    register("semver", SemverProtector.from_options)
