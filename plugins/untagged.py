"""The ``untagged`` selector: manifests no tag points to, pushed longer ago than ``older_than``.

```toml
[registry.main]
storage = "/var/lib/registry"       # needed: only the storage lists untagged manifests

[policy.untagged]
registry = "main"
repositories = ["*"]
selectors = [{ use = "untagged", older_than = "7d" }]
```

Every re-push of a tag (``latest``, ``nightly``) leaves the previous manifest
untagged, still holding its layers.  The scan of the storage lists them; what goes
with something else is never one of them: a platform manifest of any index (tagged
or not) goes with that index, a referrer goes with its subject, and one that a
tagged artifact names as its subject stays.  Keep rules run on them as on any image
(``in_use`` by digest, for instance).  Age counts from the push (the manifest's
revision link in the storage), and at least an hour: the platform manifests of a
multi-arch push are untagged until their index lands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator

from regprune import hookimpl
from regprune.durations import format_duration, parse_duration
from regprune.models import Image, SelectionContext, Verdict
from regprune.options import Options, parse_options
from regprune.timing import aware, untrusted

MINIMUM_AGE = timedelta(hours=1)


def _check_duration(value: str) -> str:
    if parse_duration(value) < MINIMUM_AGE:
        raise ValueError(
            f"older_than {value!r} is under 1h: a multi-arch push leaves its platform "
            "manifests untagged until the index lands; use at least '1h'"
        )
    return value


class UntaggedOptions(Options):
    """Options of the untagged selector."""

    older_than: Annotated[str, AfterValidator(_check_duration)]


class UntaggedSelector:
    """Selects untagged manifests (``image.tags == []``) pushed before ``older_than``.

    ``considers_untagged`` asks the planner to show this policy the scan's untagged
    manifests as well as its tagged images; it needs ``[registry.NAME] storage``.
    A manifest without a push time, or with one no time source would trust (the
    epoch, before 2013, the future), is never selected.
    """

    considers_untagged = True

    def __init__(self, older_than: str) -> None:
        self.older_than_text = older_than
        self.older_than: timedelta = parse_duration(older_than)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> UntaggedSelector:
        """Build from a policy's options; raise ValueError naming a bad option."""
        parsed = parse_options(UntaggedOptions, options)
        return cls(parsed.older_than)

    def select(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, Verdict]:
        """Return ``{digest: (selected, reason)}`` for every image."""
        return {image.digest: self._verdict(image, context) for image in images}

    def _verdict(self, image: Image, context: SelectionContext) -> Verdict:
        if image.tags:
            return False, f"untagged: tagged {', '.join(image.tags)}"
        what = (
            f"untagged artifact whose subject {image.facts.subject[:19]} is not in the repository"
            if image.facts.subject
            else "untagged: no tag points to it"
        )
        if image.pushed is None:
            return False, f"{what}; push time unknown, never selected"
        # Same trust rules as every time source: a storage copied with epoch or future
        # modification times says nothing about age.
        distrust = untrusted(image.pushed, context.now)
        if distrust:
            return False, f"{what}; push time is {distrust}, never selected"
        age = aware(context.now) - aware(image.pushed)
        shown = format_duration(max(age, timedelta(0)))
        if age > self.older_than:
            return True, f"{what}; pushed {shown} ago, older than {self.older_than_text}"
        return False, f"{what}; pushed {shown} ago, not older than {self.older_than_text}"


@hookimpl
def register_selectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``untagged`` selector."""
    register("untagged", UntaggedSelector.from_options)
