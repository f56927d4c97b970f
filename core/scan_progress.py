"""What a scan reports as it goes, for a front end to show (the CLI draws a bar).

Core knows no terminal: `Scanner` calls these plain methods and the front end
decides what, if anything, to draw.  Calls may come from the registry client's
worker threads, so an implementation must be thread-safe (rich's progress is).
"""

from __future__ import annotations

from typing import Protocol


class ScanProgress(Protocol):
    """Receives a scan's steps: repositories listed, tags resolved, new digests read."""

    def started(self, repositories: int) -> None:
        """The scan covers this many repositories (their tags are listed next)."""
        ...

    def listed(self, repository: str, tags: int) -> None:
        """A repository's tags were listed: ``tags`` more to resolve."""
        ...

    def resolved(self, tags: int) -> None:
        """This many more tags were resolved to their digests."""
        ...

    def reading(self, manifests: int) -> None:
        """Digests new to the cache: this many more manifests or configs to read."""
        ...

    def read(self, manifests: int) -> None:
        """This many more of those were read."""
        ...

    def finished(self) -> None:
        """The scan is over (also when it failed): stop drawing."""
        ...


class NoProgress:
    """Reports nowhere: scans without a front end watching (apply's re-check, gc)."""

    def started(self, repositories: int) -> None:
        pass

    def listed(self, repository: str, tags: int) -> None:
        pass

    def resolved(self, tags: int) -> None:
        pass

    def reading(self, manifests: int) -> None:
        pass

    def read(self, manifests: int) -> None:
        pass

    def finished(self) -> None:
        pass
