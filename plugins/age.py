"""The ``age`` selector: images built longer ago than ``older_than``.

```toml
selectors = [{ use = "age", older_than = "14d" }]
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator

from regprune import hookimpl
from regprune.durations import format_duration, parse_duration
from regprune.models import Image, SelectionContext, Verdict
from regprune.options import Options, parse_options, untimed
from regprune.timing import aware


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


class AgeOptions(Options):
    """Options of the age selector."""

    older_than: Annotated[str, AfterValidator(_check_duration)]


class AgeSelector:
    """Selects images whose trustworthy build time is older than ``older_than``.

    An image without a trustworthy time (``image.time is None``: missing, the Unix
    epoch of reproducible builds, in the future) is never selected: not knowing its
    age must not be a reason to delete it.
    """

    def __init__(self, older_than: str) -> None:
        self.older_than_text = older_than
        self.older_than: timedelta = parse_duration(older_than)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AgeSelector:
        """Build from a policy's options; raise ValueError naming a bad option."""
        parsed = parse_options(AgeOptions, options)
        return cls(parsed.older_than)

    def select(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, Verdict]:
        """Return ``{digest: (selected, reason)}`` for every image."""
        return {image.digest: self._verdict(image, context) for image in images}

    def _verdict(self, image: Image, context: SelectionContext) -> Verdict:
        if image.time is None:
            return False, f"age: {untimed(image)}; never selected by age"
        age = aware(context.now) - aware(image.time)
        source = image.time_source or "unknown source"
        shown = format_duration(max(age, timedelta(0)))  # a few minutes of clock skew: "0s"
        if age > self.older_than:
            return True, f"age: built {shown} ago ({source}), older than {self.older_than_text}"
        return False, f"age: built {shown} ago ({source}), not older than {self.older_than_text}"


@hookimpl
def register_selectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``age`` selector."""
    register("age", AgeSelector.from_options)
