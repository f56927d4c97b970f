"""The ``count`` selector: keep the newest ``keep`` images, select the rest.

```toml
selectors = [{ use = "count", keep = 5 }]
selectors = [{ use = "count", keep = 3, group_by = '^(?P<group>.+)-[0-9a-f]{7,40}$' }]
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator

from regprune import hookimpl
from regprune.models import Image, SelectionContext, Verdict
from regprune.options import Options, Regex, newest_first, parse_options, untimed
from regprune.patterns import Pattern, compile_pattern

NO_GROUP = "(no group)"


class CountOptions(Options):
    """Options of the count selector."""

    keep: Annotated[int, Field(strict=True, ge=0)]
    group_by: Regex | None = None

    @field_validator("group_by")
    @classmethod
    def _has_group(cls, value: str | None) -> str | None:
        if value is not None and compile_pattern(value).groups == 0:
            raise ValueError(
                f"regular expression '{value}' has no group: use (?P<group>...) "
                "to say which part of the tag names the group"
            )
        return value


def group_of(pattern: Pattern, tags: Sequence[str]) -> str | None:
    """The group named by an image's first tag (sorted) that matches, or None.

    The group is the named group ``group``, else ``branch``, else group 1.
    """
    name: str | int = next((n for n in ("group", "branch") if n in pattern.groupindex), 1)
    for tag in sorted(tags):
        match = pattern.search(tag)
        if match and match.group(name) is not None:  # an optional group may not take part
            return match.group(name)
    return None


class CountSelector:
    """Keeps the newest ``keep`` images per group and selects the others.

    Without ``group_by`` the group is the whole repository (the images passed in,
    nothing else).  With ``group_by`` (a regex with a named group ``group`` or
    ``branch``, else group 1, searched in each tag), an image's group comes from its
    first tag in sorted order that matches; images with no matching tag (untagged
    ones included) together form one more group, ``(no group)``, which also keeps
    its newest ``keep``.

    Images are ranked by build time, newest first.  Images without a trustworthy
    time rank as newest and are never selected: count must not delete what it
    cannot date.  Equal times are ordered by digest, so plans are reproducible.
    """

    def __init__(self, keep: int, group_by: str | None = None) -> None:
        self.keep = keep
        self.group_by = compile_pattern(group_by) if group_by is not None else None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CountSelector:
        """Build from a policy's options; raise ValueError naming a bad option."""
        parsed = parse_options(CountOptions, options)
        return cls(parsed.keep, parsed.group_by)

    def select(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, Verdict]:
        """Return ``{digest: (selected, reason)}`` for every image."""
        groups: dict[str | None, list[Image]] = {}
        for image in images:
            key = group_of(self.group_by, image.tags) if self.group_by else None
            groups.setdefault(key, []).append(image)
        verdicts: dict[str, Verdict] = {}
        for key, members in groups.items():
            if self.group_by is None:
                where = "in repository"
            elif key is None:
                where = f"in {NO_GROUP}"
            else:
                where = f"in group {key!r}"
            ordered = newest_first(members)
            for rank, image in enumerate(ordered, start=1):
                verdicts[image.digest] = self._verdict(image, rank, len(ordered), where)
        return verdicts

    def _verdict(self, image: Image, rank: int, total: int, where: str) -> Verdict:
        position = f"count: #{rank} newest of {total} {where}"
        if rank <= self.keep:
            note = f" ({untimed(image)}, counted as newest)" if image.time is None else ""
            return False, f"{position}{note}, within keep={self.keep}"
        if image.time is None:
            # Only possible when more than `keep` images are untimed.
            return False, (
                f"{position}, beyond keep={self.keep}, but {untimed(image)}; "
                "never selected by count"
            )
        return True, f"{position}, beyond keep={self.keep}"


@hookimpl
def register_selectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``count`` selector."""
    register("count", CountSelector.from_options)
