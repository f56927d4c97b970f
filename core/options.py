"""Helpers for plugins: option models, commands, ordering (public via ``regprune``).

The built-in selectors and keep rules use them, and so may any plugin: import
them from the top-level package (``from regprune import Options, parse_options``).
Options are validated with small pydantic models; ``parse_options`` turns any
validation error into one line that names the option, because the engine
prefixes it with the config key (``policy.ci.selectors.0: older_than: ...``)
and shows it to a person.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .bounded_read import COMMAND_OUTPUT_LIMIT, LIST_LIMIT, Refused, capture, read_regular_file
from .durations import parse_duration
from .models import Image
from .patterns import check_pattern
from .timing import aware

COMMAND_TIMEOUT = 60.0
"""Seconds a ``branches_command`` or in_use ``command`` may run."""


class Options(BaseModel):
    """Base for plugin options: unknown keys are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


M = TypeVar("M", bound=Options)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Regex = Annotated[str, AfterValidator(check_pattern)]
"""An option holding a regular expression (RE2 syntax), checked when the options are parsed."""
Argv = Annotated[list[str], Field(min_length=1)]
"""An option holding a command as a non-empty list of arguments, for :func:`run_command`."""
Duration = Annotated[str, AfterValidator(_check_duration)]
"""An option holding a duration such as ``"14d"`` or ``"12h"`` (see ``regprune.durations``)."""


def parse_options(
    model: type[M], options: Mapping[str, Any] | None, *, where: str | None = None
) -> M:
    """Validate ``options`` against ``model``; raise ValueError with one line naming the option.

    With ``where`` (a config key such as ``plugins.semver``) each problem is spelled
    with the option's full key path: ``plugins.semver.keep: ...``.
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        shown = f"{where}: " if where else ""
        raise ValueError(
            f"{shown}options must be a table of key = value, got {type(options).__name__}"
        )
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise ValueError(_one_line(model, exc, where)) from None


def _one_line(model: type[Options], exc: ValidationError, prefix: str | None = None) -> str:
    valid = ", ".join(model.model_fields) or "none"
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if prefix is not None:
            where = f"{prefix}.{where}" if where else prefix
        if kind == "extra_forbidden" and prefix is not None:
            parts.append(f"{where}: unknown option (valid options: {valid})")
        elif kind == "extra_forbidden":
            parts.append(f"unknown option {where!r} (valid options: {valid})")
        elif kind == "missing":
            parts.append(f"{where}: required option missing")
        elif kind == "too_short":
            parts.append(f"{where}: must not be empty")
        elif (expected := expected_type(error)) is not None:
            parts.append(f"{where}: {expected}")
        elif kind == "value_error":
            # Our own validators' messages are already worded for people.
            message = str(error.get("ctx", {}).get("error", error["msg"]))
            parts.append(f"{where}: {message}" if where else message)
        else:
            message = error["msg"][:1].lower() + error["msg"][1:]
            parts.append(f"{where}: {message}, got {_short(error.get('input'))}")
    return " ".join("; ".join(parts).split())  # one line, whatever the messages contain


_EXPECTED = {
    "int_type": "expected a whole number without quotes (e.g. 8)",
    "float_type": "expected a number without quotes (e.g. 30 or 2.5)",
    "bool_type": "expected true or false without quotes",
    "string_type": 'expected a string in quotes (e.g. "2h")',
}


def expected_type(error: Mapping[str, Any]) -> str | None:
    """For a value of the wrong TOML type (``"8"`` or ``true`` for a number: never
    converted), what was expected and what was written; None for other errors."""
    expected = _EXPECTED.get(error["type"])
    return None if expected is None else f"{expected}, not {_toml_value(error.get('input'))}"


def _toml_value(value: Any) -> str:
    """A value as it was written in TOML, shortened: ``"8"``, ``true``, ``1.5``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value)
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        text = (
            "an array"
            if isinstance(value, list)
            else "a table"
            if isinstance(value, dict)
            else type(value).__name__
        )
    return text if len(text) <= 40 else text[:37] + "..."


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_command(argv: Sequence[str], limit: int = 40) -> str:
    """A command line shortened at a word for reasons: ``kubectl get pods -A ...``."""
    words = [shlex.quote(arg) for arg in argv]
    shown = words[:1]
    for word in words[1:]:
        if len(" ".join([*shown, word])) > limit:
            return " ".join([*shown, "..."])
        shown.append(word)
    return " ".join(shown)


def run_command(argv: Sequence[str], option: str, timeout: float | None = None) -> str:
    """Run ``argv`` and return its stdout; any failure is a ValueError naming ``option``.

    The output is read up to `COMMAND_OUTPUT_LIMIT` (16 MiB): a command that prints
    more is stopped, and that is a failure too.
    """
    timeout = COMMAND_TIMEOUT if timeout is None else timeout
    shown = describe_command(argv, limit=80)
    # Never wait for a password prompt: git would hang until the timeout.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = capture(argv, timeout=timeout, limit=COMMAND_OUTPUT_LIMIT, env=env)
    except FileNotFoundError:
        raise ValueError(f"{option}: command not found: {argv[0]!r}") from None
    except PermissionError:
        raise ValueError(f"{option}: command not executable: {argv[0]!r}") from None
    except subprocess.TimeoutExpired:
        raise ValueError(f"{option}: `{shown}` timed out after {timeout:g}s") from None
    except Refused as exc:
        raise ValueError(f"{option}: `{shown}` {exc}") from None
    except OSError as exc:
        raise ValueError(f"{option}: `{shown}` could not run: {exc}") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        detail = f": {lines[-1]}" if lines else ""
        raise ValueError(f"{option}: `{shown}` exited with status {done.returncode}{detail}")
    return done.stdout.decode(errors="replace")


def read_text(path: str, option: str) -> str:
    """Read a UTF-8 file (``~`` expanded); any failure is a ValueError naming ``option``.

    Only a regular file of at most `LIST_LIMIT` (16 MiB) is read: a FIFO, a device
    or a directory is refused at once, without blocking.
    """
    try:
        data = read_regular_file(os.path.expanduser(path), LIST_LIMIT)
        return data.decode("utf-8")
    except Refused as exc:
        raise ValueError(f"{option}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"{option}: cannot read {path!r}: {detail}") from None


def untimed(image: Image) -> str:
    """Why an image has no trustworthy time, as a phrase: ``no trustworthy build time (...)``."""
    note = (image.time_note or "").strip()
    if not note:
        return "no trustworthy build time"
    # A resolver may already phrase its note this way; don't say it twice.
    if note.startswith("no trustworthy build time"):
        return note
    return f"no trustworthy build time ({note})"


def newest_first(images: Sequence[Image]) -> list[Image]:
    """Order images newest first; images without a trustworthy time count as newest.

    Untimed images go first so that rank-based rules (count, keep_per_branch) keep
    them rather than delete them; ties are broken by digest so plans are stable.
    """

    def key(image: Image) -> tuple[int, float, str]:
        if image.time is None:
            return (0, 0.0, image.digest)
        return (1, -aware(image.time).timestamp(), image.digest)

    return sorted(images, key=key)
