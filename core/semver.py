"""Strict Semantic Versioning 2.0.0 versions read from tags (https://semver.org).

``parse_tag("v1.4.2")`` and ``parse_tag("1.4.2")`` give the same version; anything
that is not ``[v]MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`` exactly is None (``1.4``,
``01.2.3``, ``1.2.3-rc.01``, ``latest``).  Versions order by SemVer precedence:
build metadata is ignored, so ``1.2.3+a`` and ``1.2.3+b`` are the same version.

Parsed by hand, not by a regex: linear in the tag's length, and numbers are compared
as digit strings (no leading zeros, so longer means larger), never converted to
``int``, so a tag of any length is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_IDENTIFIER = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")

# One prerelease identifier's sort key: numeric ones sort below alphanumeric ones.
_Part = tuple[int, int, str]


def _numeric_key(digits: str) -> tuple[int, str]:
    """Numeric order of a digit string without leading zeros."""
    return (len(digits), digits)


def _is_number(text: str) -> bool:
    """A SemVer numeric identifier: digits, no leading zero (but ``0`` itself)."""
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


def _is_identifier(text: str) -> bool:
    return bool(text) and all(char in _IDENTIFIER for char in text)


@dataclass(frozen=True, order=False)
class Version:
    """A version as SemVer defines it; ``tag`` is the tag it was read from."""

    major: str
    minor: str
    patch: str
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()
    tag: str = field(default="", compare=False)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def core(self) -> str:
        """``MAJOR.MINOR.PATCH``."""
        return f"{self.major}.{self.minor}.{self.patch}"

    def key(self) -> tuple[object, ...]:
        """Sort key in SemVer precedence (build metadata ignored):
        ``1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta < 1.0.0-rc.1 < 1.0.0 < 1.0.1``."""
        parts: tuple[_Part, ...] = tuple(
            (0, len(part), part) if part.isdigit() else (1, 0, part) for part in self.prerelease
        )
        # A release outranks every prerelease of the same core version.
        return (
            _numeric_key(self.major),
            _numeric_key(self.minor),
            _numeric_key(self.patch),
            not self.prerelease,
            parts,
        )

    def line(self, per: str) -> tuple[str, ...]:
        """The release line this version belongs to: ``(major,)`` or ``(major, minor)``."""
        return (self.major,) if per == "major" else (self.major, self.minor)


def line_name(line: tuple[str, ...]) -> str:
    """``("1",)`` -> ``1.x``; ``("1", "4")`` -> ``1.4.x``."""
    return ".".join(line) + ".x"


def parse_version(text: str) -> Version | None:
    """``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`` exactly, or None."""
    rest, plus, build_text = text.partition("+")
    build: tuple[str, ...] = ()
    if plus:
        build = tuple(build_text.split("."))
        if not all(_is_identifier(part) for part in build):
            return None
    # The core has no hyphen, so the first one starts the prerelease.
    core, hyphen, pre_text = rest.partition("-")
    prerelease: tuple[str, ...] = ()
    if hyphen:
        prerelease = tuple(pre_text.split("."))
        for part in prerelease:
            if not _is_identifier(part):
                return None
            if part.isdigit() and not _is_number(part):
                return None  # 1.0.0-rc.01: a numeric identifier with a leading zero
    numbers = core.split(".")
    if len(numbers) != 3 or not all(_is_number(number) for number in numbers):
        return None
    major, minor, patch = numbers
    return Version(major, minor, patch, prerelease, build, tag=text)


def parse_tag(tag: str) -> Version | None:
    """The version a tag names, with an optional ``v`` prefix, or None."""
    version = parse_version(tag[1:] if tag.startswith("v") else tag)
    if version is None:
        return None
    return Version(
        version.major, version.minor, version.patch, version.prerelease, version.build, tag=tag
    )
