"""The ``in_use`` keep rule: images that running workloads reference are kept.

```toml
protectors = [{ use = "in_use", command = ["kubectl", "get", "pods", "-A",
                                           "-o", "jsonpath={..image}"],
                registry_hosts = ["registry.example.org"] }]
protectors = [{ use = "in_use", file = "/var/lib/regprune/in-use.txt" }]
```
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import field_validator, model_validator

from regprune import hookimpl
from regprune.models import Image, SelectionContext
from regprune.options import Argv, Options, describe_command, parse_options, read_text, run_command

# host[:port] as an image reference names its registry: a DNS name, IPv4 or [IPv6].
_HOST_PORT = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


class InUseOptions(Options):
    """Options of the in_use keep rule."""

    file: str | None = None
    command: Argv | None = None
    registry_hosts: list[str] | None = None

    @field_validator("registry_hosts")
    @classmethod
    def _bare_hosts(cls, value: list[str] | None) -> list[str] | None:
        # A reference names its registry as host[:port]: a URL here would never match,
        # and references naming any host would silently stop counting as in use.
        for host in value or []:
            if not _HOST_PORT.fullmatch(host.strip()):
                raise ValueError(
                    f"registry_hosts: {host!r} is not a host[:port] as image references "
                    "write it (e.g. registry.example.org or localhost:5000), no scheme or path"
                )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> InUseOptions:
        if self.file is None and self.command is None:
            raise ValueError("file, command: give one of file or command to list images in use")
        if self.file is not None and self.command is not None:
            raise ValueError("file, command: give only one of file or command")
        return self


@dataclass(frozen=True)
class Reference:
    """One image reference ``[host/]repository[:tag][@digest]``, as written and parsed."""

    text: str
    host: str | None
    repository: str
    tag: str | None
    digest: str | None


def _is_host(component: str) -> bool:
    # Docker's rule: a first path component is a registry host when it looks like one.
    return "." in component or ":" in component or component == "localhost"


def parse_reference(text: str) -> Reference | None:
    """Parse ``[host[:port]/]repo[:tag][@digest]``; None when it is not a reference.

    A reference with neither tag nor digest means the tag ``latest``, as in Docker.
    """
    cleaned = text.strip().strip("'\"`,;")
    # Pod status imageIDs look like docker-pullable://host/repo@sha256:...
    cleaned = cleaned.split("://", 1)[-1]
    name, _, digest = cleaned.partition("@")
    host: str | None = None
    first, slash, rest = name.partition("/")
    if slash and _is_host(first):
        host, name = first.lower(), rest
    path, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        path, tag = name, ""  # no tag: "a/b", or "host:port/a" was misread
    if not path or (digest and ":" not in digest):
        return None
    if not tag and not digest:
        tag = "latest"
    return Reference(cleaned, host, path, tag or None, digest or None)


class InUseProtector:
    """Keeps images that a list of image references (a file or a command's output) names.

    The output is split on whitespace; each item is ``[host/]repository[:tag][@digest]``.
    An image is kept when its digest (or one of its platform manifests' digests) is
    referenced, or when one of its tags is referenced in its repository.  With
    ``registry_hosts``, references naming another host are ignored; references
    without a host always count.  The list is read once and reused.
    """

    def __init__(self, options: InUseOptions) -> None:
        self.options = options
        self.hosts = (
            {host.strip().lower() for host in options.registry_hosts}
            if options.registry_hosts is not None
            else None
        )
        if options.command is not None:
            self.source = f"command {describe_command(options.command)}"
        else:
            self.source = f"file {options.file}"
        self._references: list[Reference] | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> InUseProtector:
        """Build from options; raise ValueError naming a bad option."""
        return cls(parse_options(InUseOptions, options))

    def references(self) -> list[Reference]:
        """The references that count (host filter applied), read once; ValueError on failure."""
        with self._lock:
            if self._references is None and self._error is None:
                try:
                    self._references = self._read()
                except ValueError as exc:
                    self._error = str(exc)  # a failing command is not rerun per repository
            if self._error is not None:
                raise ValueError(self._error)
            assert self._references is not None
            return self._references

    def _read(self) -> list[Reference]:
        if self.options.command is not None:
            text = run_command(self.options.command, "command")
        else:
            assert self.options.file is not None
            text = read_text(self.options.file, "file")
        found = []
        for token in text.split():
            reference = parse_reference(token)
            if reference is None:
                continue
            if (
                self.hosts is not None
                and reference.host is not None
                and reference.host not in self.hosts
            ):
                continue
            found.append(reference)
        return found

    def protect(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, str]:
        """Return ``{digest: reason}`` for every referenced image."""
        references = self.references()
        by_digest: dict[str, Reference] = {}
        by_tag: dict[tuple[str, str], Reference] = {}
        for reference in references:
            if reference.digest:
                by_digest.setdefault(reference.digest, reference)
            if reference.tag:
                by_tag.setdefault((reference.repository, reference.tag), reference)
        kept: dict[str, str] = {}
        for image in images:
            reason = self._reason(image, by_digest, by_tag)
            if reason is not None:
                kept[image.digest] = reason
        return kept

    def _reason(
        self,
        image: Image,
        by_digest: Mapping[str, Reference],
        by_tag: Mapping[tuple[str, str], Reference],
    ) -> str | None:
        if image.digest in by_digest:
            return f"in_use: referenced as {by_digest[image.digest].text} ({self.source})"
        for child in image.children:
            # A pod may pin one platform of a multi-arch image; deleting the index deletes it.
            if child.digest in by_digest:
                return (
                    f"in_use: platform manifest {child.digest[:19]} referenced as "
                    f"{by_digest[child.digest].text} ({self.source})"
                )
        for tag in sorted(image.tags):
            reference = by_tag.get((image.repository, tag))
            if reference is not None:
                # Quoting the tag lets the plan say which tag kept a shared digest.
                return f"in_use: tag {tag!r} referenced as {reference.text} ({self.source})"
        return None


@hookimpl
def register_protectors(register: Callable[[str, Any], None]) -> None:
    """Register the ``in_use`` keep rule."""
    register("in_use", InUseProtector.from_options)
