"""The ``unused`` selector: images nobody pulled for ``not_pulled_for``.

```toml
[policy.unused]
registry = "main"
repositories = ["*"]
selectors = [{ use = "unused", not_pulled_for = "30d" }]
```

Pulls come from the registry's own notifications, recorded by ``regprune listen``
(regprune's own reads and ``[listen] ignore_agents`` never count).  An image is used
when its manifest or any of its platform manifests was pulled in this repository.

Unknown is never unused: an image is selected only when the listener heard the
registry, without a break, for the whole window, and the image was there for all of
it (no push recorded inside the window, and a storage push time, when known, before
it).  Otherwise it is kept, and the reason says why ("usage known only for 12d").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator

from regprune import hookimpl
from regprune.durations import format_duration, parse_duration
from regprune.models import Image, SelectionContext, Usage, Verdict
from regprune.options import Options, parse_options
from regprune.timing import aware

MINIMUM_WINDOW = timedelta(hours=1)
LISTEN_DOCS = "docs/listen.md"


def _check_window(value: str) -> str:
    if parse_duration(value) < MINIMUM_WINDOW:
        raise ValueError(f"not_pulled_for {value!r} is under 1h; use e.g. '30d'")
    return value


class UnusedOptions(Options):
    """Options of the unused selector."""

    not_pulled_for: Annotated[str, AfterValidator(_check_window)]


class UnusedSelector:
    """Selects images not pulled within ``not_pulled_for``, where the listener's
    recorded use covers that whole window; keeps everything else, saying why."""

    def __init__(self, not_pulled_for: str) -> None:
        self.window_text = not_pulled_for
        self.window: timedelta = parse_duration(not_pulled_for)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> UnusedSelector:
        """Build from a policy's options; raise ValueError naming a bad option."""
        return cls(parse_options(UnusedOptions, options).not_pulled_for)

    def select(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, Verdict]:
        """Return ``{digest: (selected, reason)}`` for every image."""
        coverage = context.coverage
        if coverage is None or coverage.since is None:
            why = (
                "unused: no recorded use: regprune listen has not heard this registry"
                f" (see {LISTEN_DOCS}); kept"
            )
            return {image.digest: (False, why) for image in images}
        if not coverage.covers(self.window):
            why = (
                f"unused: usage known only for {format_duration(coverage.span)}, "
                f"not {self.window_text}; kept"
            )
            return {image.digest: (False, why) for image in images}
        span = format_duration(coverage.span)
        now = aware(context.now)
        return {image.digest: self._verdict(image, now, span) for image in images}

    def _verdict(self, image: Image, now: datetime, span: str) -> Verdict:
        start = now - self.window
        usage: Usage | None = image.usage
        if usage is not None and usage.last_pull is not None and aware(usage.last_pull) > start:
            return False, f"unused: {_last_pull(usage, now)}, within {self.window_text}"
        pushes = (usage.first_push if usage else None, image.pushed)
        arrived = [aware(t) for t in pushes if t is not None]
        if arrived and max(arrived) > start:
            ago = format_duration(max(now - max(arrived), timedelta(0)))
            return False, f"unused: pushed {ago} ago, not yet {self.window_text}"
        if usage is not None and usage.last_pull is not None:
            return True, f"unused: {_last_pull(usage, now)}, not in {self.window_text}"
        return True, f"unused: never pulled in {span} of recorded use"


def _last_pull(usage: Usage, now: datetime) -> str:
    assert usage.last_pull is not None
    ago = format_duration(max(now - aware(usage.last_pull), timedelta(0)))
    tag = f" (tag {usage.last_pull_tag})" if usage.last_pull_tag else ""
    return f"last pulled {ago} ago by {usage.last_client or 'an unnamed client'}{tag}"


@hookimpl
def register_selectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``unused`` selector."""
    register("unused", UnusedSelector.from_options)
