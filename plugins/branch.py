"""The ``branch`` selector: images built from branches that no longer exist.

CI usually tags images ``<branch>-<sha>``; once the branch is merged and deleted,
its images are garbage.

```toml
selectors = [{ use = "branch", branches_command = ["git", "ls-remote", "--heads",
                                                   "https://git.example.org/app.git"] }]
selectors = [{ use = "branch", branches_file = "/etc/regprune/branches.txt",
               keep_per_branch = 3 }]
```
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from regprune import hookimpl
from regprune.models import Image, SelectionContext, Verdict
from regprune.options import (
    Argv,
    Options,
    Regex,
    describe_command,
    newest_first,
    parse_options,
    read_text,
    run_command,
    untimed,
)
from regprune.patterns import compile_pattern

DEFAULT_PATTERN = r"^(?P<branch>.+)-(?P<sha>[0-9a-f]{7,40})$"
SOURCES = ("branches", "branches_file", "branches_command")
_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_.-]")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256 object names
_COMMENT = re.compile(r"(^|\s)#.*$")  # '#' may occur inside a git branch name, so only ' #'


class BranchOptions(Options):
    """Options of the branch selector."""

    pattern: Regex = DEFAULT_PATTERN
    branches: list[str] | None = None
    branches_file: str | None = None
    branches_command: Argv | None = None
    keep_per_branch: Annotated[int, Field(strict=True, ge=1)] | None = None
    normalize: Annotated[bool, Field(strict=True)] = True

    @field_validator("pattern")
    @classmethod
    def _has_branch_group(cls, value: str) -> str:
        if "branch" not in compile_pattern(value).groupindex:
            raise ValueError(
                f"regular expression '{value}' has no group named 'branch': "
                "use (?P<branch>...) for the part of the tag that names the branch"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BranchOptions:
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if not given:
            raise ValueError(
                "branches: say where the live branches come from with one of "
                "branches, branches_file or branches_command"
            )
        if len(given) > 1:
            raise ValueError(
                f"{', '.join(given)}: give only one of branches, branches_file or branches_command"
            )
        if self.branches is not None and not _clean_names(self.branches):
            raise ValueError(f"branches: {_EMPTY}")
        return self


_EMPTY = "the list of live branches is empty; refusing, as every branch image would be selected"


def _clean_names(names: Sequence[str]) -> list[str]:
    return [name.strip() for name in names if name.strip()]


def parse_branch_lines(text: str, option: str) -> list[str]:
    """Branch names from ``git ls-remote --heads`` output, or one name per line.

    Lines may be ``<sha>\\trefs/heads/<name>`` (other refs such as tags and HEAD
    are ignored), ``refs/heads/<name>`` or a bare name; ``#`` starts a comment at
    the start of a line or after a space.  A line of any other shape is an error:
    misreading the list could make a live branch look deleted.
    """
    names: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) == 2 and _SHA.match(fields[0]):
            ref = fields[1]
            if ref.startswith("refs/heads/"):
                names.append(ref.removeprefix("refs/heads/"))
            continue  # refs/tags/..., HEAD, refs/pull/...: not branches
        if len(fields) == 1:
            names.append(fields[0].removeprefix("refs/heads/"))
            continue
        raise ValueError(
            f"{option}: cannot read line {number} {line!r}: expected "
            "'<sha><TAB>refs/heads/<name>' or a branch name"
        )
    return names


class BranchSelector:
    """Selects images whose branch (parsed from a tag) is no longer live.

    An image is selected when at least one of its tags matches ``pattern`` and
    none of the branches those tags name is live.  Images with no matching tag are
    not selected.  With ``keep_per_branch``, images of a live branch beyond its
    newest N are selected too (ranked like ``count``: untimed images count as
    newest and are never selected that way).

    With ``normalize`` (the default) branch names are compared after replacing
    every character a Docker tag cannot hold with ``-`` and ignoring case, since
    CI turns branch ``feature/x`` into tag ``feature-x-<sha>``.

    The live branches are read once, at the first ``select``, and reused for every
    repository.  An unreadable or empty list raises ValueError: an empty list
    would make every branch image look deleted.
    """

    def __init__(self, options: BranchOptions) -> None:
        self.options = options
        self.pattern = compile_pattern(options.pattern)
        self._live: set[str] | None = None
        self._error: str | None = None
        self._lock = threading.Lock()  # repositories may be decided concurrently

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BranchSelector:
        """Build from a policy's options; raise ValueError naming a bad option."""
        return cls(parse_options(BranchOptions, options))

    def key(self, name: str) -> str:
        """The form in which branch names are compared."""
        if not self.options.normalize:
            return name
        return _NOT_IN_TAG.sub("-", name).lower()

    def live_branches(self) -> set[str]:
        """The live branch names (compared form), read once; ValueError when unusable."""
        with self._lock:
            if self._live is None and self._error is None:
                try:
                    self._live = {self.key(name) for name in self._read()}
                except ValueError as exc:
                    self._error = str(exc)  # don't rerun a failing 60 s command per repository
            if self._error is not None:
                raise ValueError(self._error)
            assert self._live is not None
            return self._live

    def _read(self) -> list[str]:
        options = self.options
        if options.branches is not None:
            option, names = "branches", _clean_names(options.branches)
        elif options.branches_file is not None:
            option = "branches_file"
            names = parse_branch_lines(read_text(options.branches_file, option), option)
        else:
            assert options.branches_command is not None
            option = "branches_command"
            output = run_command(options.branches_command, option)
            names = parse_branch_lines(output, option)
            if not names:
                shown = describe_command(options.branches_command, limit=80)
                raise ValueError(f"{option}: `{shown}` listed no branches; {_EMPTY}")
        if not names:
            raise ValueError(f"{option}: {_EMPTY}")
        return names

    def branches_of(self, image: Image) -> list[str]:
        """Branch names parsed from the image's tags (sorted tags, distinct, as written)."""
        found: list[str] = []
        for tag in sorted(image.tags):
            match = self.pattern.search(tag)
            name = match.group("branch") if match else None
            if name and name not in found:
                found.append(name)
        return found

    def select(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, Verdict]:
        """Return ``{digest: (selected, reason)}`` for every image."""
        live = self.live_branches()
        parsed = {image.digest: self.branches_of(image) for image in images}
        verdicts: dict[str, Verdict] = {}
        # Images per live branch (compared form), for keep_per_branch ranks.
        by_branch: dict[str, list[Image]] = {}
        for image in images:
            names = parsed[image.digest]
            if not names:
                verdicts[image.digest] = (
                    False,
                    f"branch: no tag matches {self.pattern.pattern}; not selected by branch",
                )
                continue
            alive = [name for name in names if self.key(name) in live]
            if not alive:
                verdicts[image.digest] = (True, _gone(names))
                continue
            for key in dict.fromkeys(self.key(name) for name in alive):  # once per branch
                by_branch.setdefault(key, []).append(image)
        ranks = {
            (branch, image.digest): (rank, len(members))
            for branch, members in by_branch.items()
            for rank, image in enumerate(newest_first(members), start=1)
        }
        for image in images:
            if image.digest not in verdicts:
                alive = [n for n in parsed[image.digest] if self.key(n) in live]
                verdicts[image.digest] = self._live_verdict(image, alive, ranks)
        return verdicts

    def _live_verdict(
        self, image: Image, alive: list[str], ranks: Mapping[tuple[str, str], tuple[int, int]]
    ) -> Verdict:
        keep = self.options.keep_per_branch
        if keep is None:
            return False, f"branch: branch {alive[0]!r} is live"
        # Kept when within the newest N of any live branch it belongs to.
        placed = [(name, *ranks[(self.key(name), image.digest)]) for name in alive]
        name, rank, total = min(placed, key=lambda entry: entry[1])
        position = f"branch: branch {name!r} is live, #{rank} newest of {total}"
        if rank <= keep:
            return False, f"{position}, within keep_per_branch={keep}"
        if image.time is None:
            return False, (
                f"{position}, beyond keep_per_branch={keep}, but {untimed(image)}; "
                "never selected by keep_per_branch"
            )
        return True, f"{position}, beyond keep_per_branch={keep}"


def _gone(names: list[str]) -> str:
    if len(names) == 1:
        return f"branch: branch {names[0]!r} no longer exists"
    return f"branch: branches {', '.join(repr(n) for n in names)} no longer exist"


@hookimpl
def register_selectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``branch`` selector."""
    register("branch", BranchSelector.from_options)
