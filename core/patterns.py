"""Regular expressions from the config, flags and plugins, matched in linear time (RE2).

Patterns are written by whoever edits the config, but the text they run against
(tags, branch names) is chosen by anyone who can push.  Python's ``re``
backtracks: ``^(a+)+$`` against 41 ``a`` and a ``!`` takes minutes.  RE2
(``google-re2``) guarantees time linear in the text, so every pattern a person
gives regprune is compiled here, and nowhere else.

RE2 lacks a few Perl features that need backtracking: backreferences (``\\1``,
``(?P=name)``), lookaround (``(?=``, ``(?!``, ``(?<=``, ``(?<!``), atomic groups,
possessive quantifiers, ``\\Z`` (use ``\\z`` or ``$``) and ``(?#...)`` comments.
Using one is a :class:`PatternError` naming what RE2 could not parse.

We also bound the compiled program (``MAX_PROGRAM_SIZE``): RE2's time is linear in
the text, but the factor is the program's size, and ``(.?){1000}`` repeated makes
that large.  The bound leaves every realistic pattern (a semver regex is ~70) a
hundredfold margin while keeping one match on a 128-character tag in milliseconds.
"""

from __future__ import annotations

import re2

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_PROGRAM_SIZE",
    "Pattern",
    "PatternError",
    "check_pattern",
    "compile_pattern",
]

MAX_PATTERN_LENGTH = 4096
"""Characters a pattern may have."""
MAX_PROGRAM_SIZE = 10_000
"""RE2 program size a pattern may compile to (its matching cost per character)."""
_MAX_MEM = 8 << 20  # RE2's default budget, stated so it cannot change under us



class Pattern:
    """A compiled pattern: ``search`` / ``fullmatch`` any text, ``groups``, ``groupindex``."""

    __slots__ = ("_regexp",)

    def __init__(self, regexp: re2._Regexp) -> None:
        self._regexp = regexp

    @property
    def pattern(self) -> str:
        """The pattern as written."""
        return self._regexp.pattern

    @property
    def groups(self) -> int:
        """How many capturing groups it has."""
        return self._regexp.groups

    @property
    def groupindex(self) -> dict[str, int]:
        """Named groups and their numbers."""
        return dict(self._regexp.groupindex)

    def search(self, text: str) -> re2._Match | None:
        """The first match anywhere in ``text`` (like ``re.search``), or None."""
        return self._regexp.search(_matchable(text))

    def fullmatch(self, text: str) -> re2._Match | None:
        """A match of the whole of ``text``, or None."""
        return self._regexp.fullmatch(_matchable(text))

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


class PatternError(ValueError):
    """A pattern RE2 cannot compile or that is too large; the message is one line."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would also log each error on stderr
    options.max_mem = _MAX_MEM
    return options


# RE2's words for its error codes where they would mislead a reader of one line.
_RE2_WORDS = {
    "unexpected )": "unmatched )",
    "unexpected error": "internal error in RE2",
}
_MAX_DETAIL = 40


def _reason(exc: Exception, pattern: str) -> str:
    """RE2's error, on one short line: ``what: the part it is about``.

    RE2 writes ``code: argument``, where the argument is the offending part, or the
    whole pattern (after ``missing )``, for instance).  The pattern is quoted before
    the reason already: a copy of it is dropped, and any other part is capped."""
    detail = exc.args[0] if exc.args else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    text = " ".join(str(detail).split())
    what, sep, part = text.partition(": ")
    what = _RE2_WORDS.get(what, what).replace("unexpected", "stray")
    if not sep or not part or part == " ".join(pattern.split()):
        return what
    if len(part) > _MAX_DETAIL:
        part = part[: _MAX_DETAIL - 3] + "..."
    return f"{what}: {part}"


def compile_pattern(pattern: str) -> Pattern:
    """Compile ``pattern`` with RE2; raise PatternError with a one-line reason otherwise."""
    if not isinstance(pattern, str):
        raise PatternError(f"a regular expression must be a string, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"regular expression of {len(pattern)} characters is too long "
            f"(at most {MAX_PATTERN_LENGTH})"
        )
    shown = _shown(pattern)
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise PatternError(f"invalid regular expression {shown}: not valid UTF-8") from None
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as exc:
        raise PatternError(
            f"invalid regular expression {shown}: {_reason(exc, pattern)} (regprune uses RE2 syntax: "
            "no backreferences or lookaround)"
        ) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise PatternError(
            f"regular expression {shown} is too complex (RE2 program size "
            f"{compiled.programsize}, at most {MAX_PROGRAM_SIZE}); simplify its repetitions"
        )
    return Pattern(compiled)


def check_pattern(value: str) -> str:
    """Validate a pattern and return it unchanged (for pydantic validators)."""
    compile_pattern(value)
    return value


def _matchable(text: str) -> str:
    """``text`` as RE2 can take it: a lone surrogate (from undecodable bytes) becomes U+FFFD.

    The wrapper encodes text as UTF-8, which a lone surrogate cannot be; such a tag
    must still match or not match, never raise.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _shown(pattern: str, limit: int = 80) -> str:
    text = repr(pattern)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
