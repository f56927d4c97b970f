"""The scan's progress on a terminal: repositories, tags and their rate, on stderr.

A `regprune.scan_progress.ScanProgress` drawn with rich.  Only on a terminal:
when stderr is a pipe or a file the CLI passes none, so scripts and logs see
nothing extra.  The bar is transient: it disappears when the scan ends, and the
command's output takes its place.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..scan_progress import ScanProgress


class _Rate(ProgressColumn):
    """Items per second of a task, once it has one."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


class ScanBar:
    """Two lines while a scan runs: repositories listed, tags resolved (and the rate);
    a third while manifests and configs new to the cache are read."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._repositories: TaskID | None = None
        self._tags: TaskID | None = None
        self._reads: TaskID | None = None

    def started(self, repositories: int) -> None:
        self.finished()  # one bar per scan: a command planning several policies scans again
        bar = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            # What goes to stdout stays there (rich would print it through stderr).
            redirect_stdout=False,
        )
        self._repositories = bar.add_task("repositories", total=repositories)
        # The tags' total grows as repositories are listed.
        self._tags = bar.add_task("tags", total=0)
        self._reads = None
        self._bar = bar
        bar.start()

    def listed(self, repository: str, tags: int) -> None:
        if self._bar is None or self._repositories is None or self._tags is None:
            return
        total = (self._bar.tasks[self._tags].total or 0) + tags
        self._bar.update(self._tags, total=total)
        self._bar.advance(self._repositories)

    def resolved(self, tags: int) -> None:
        if self._bar is not None and self._tags is not None:
            self._bar.advance(self._tags, tags)

    def reading(self, manifests: int) -> None:
        if self._bar is None or not manifests:
            return
        if self._reads is None:
            self._reads = self._bar.add_task("new digests", total=manifests)
        else:
            total = (self._bar.tasks[self._reads].total or 0) + manifests
            self._bar.update(self._reads, total=total)

    def read(self, manifests: int) -> None:
        if self._bar is not None and self._reads is not None:
            self._bar.advance(self._reads, manifests)

    def finished(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def scan_progress(console: Console) -> ScanProgress | None:
    """A bar on ``console`` when it is a terminal; None (report nowhere) otherwise."""
    return ScanBar(console) if console.is_terminal else None
