"""The ``tags`` keep rule: images with a tag matching one of ``patterns`` are kept.

A policy's ``keep_tags = ["^latest$", "^v\\d+"]`` is passed to this rule by the
engine as ``{ patterns = [...] }``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from regprune import hookimpl
from regprune.models import Image, SelectionContext
from regprune.options import Options, Regex, parse_options
from regprune.patterns import compile_pattern


class KeepTagsOptions(Options):
    """Options of the tags keep rule."""

    patterns: list[Regex]


class KeepTagsProtector:
    """Keeps every image that carries a tag matching any pattern (searched, RE2).

    The reason names the first matching tag (sorted) and the pattern it matched, so
    the plan can say which tag kept a shared digest.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [compile_pattern(pattern) for pattern in patterns]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> KeepTagsProtector:
        """Build from options; raise ValueError naming a bad option."""
        return cls(parse_options(KeepTagsOptions, options).patterns)

    def protect(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, str]:
        """Return ``{digest: reason}`` for every image with a matching tag."""
        kept: dict[str, str] = {}
        for image in images:
            reason = self._reason(image)
            if reason is not None:
                kept[image.digest] = reason
        return kept

    def _reason(self, image: Image) -> str | None:
        for tag in sorted(image.tags):
            for pattern in self.patterns:
                if pattern.search(tag):
                    return f"keep_tags: tag {tag!r} matches {pattern.pattern}"
        return None


@hookimpl
def register_protectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``tags`` keep rule."""
    register("tags", KeepTagsProtector.from_options)
