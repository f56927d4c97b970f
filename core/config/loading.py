"""Reading the configuration: ``${ENV}`` expansion, the document checks, one-line
errors with key paths, the front ends' sections, and where the files are found.

The settings models themselves are in ``regprune.config.models``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, ConfigProblems
from ..frontends import FrontEnd, default_front_ends, sections_of
from ..options import expected_type
from ..paths import PathProblem, describe_other, path_kind, shown_path
from .models import CONFIG_ENV, STATE_ENV, Settings

if TYPE_CHECKING:
    from ..registry import BackendTypes


# ``$$``, or ``${`` with a valid NAME and ``}`` after it (group 1 is None when not).
_ENV_REF = re.compile(r"\$\$|\$\{(?:([A-Za-z_][A-Za-z0-9_]*)\})?")
_SHOWN_REFERENCE = 40


def _broken_reference(path: str, text: str, start: int) -> ConfigError:
    """``${`` at ``start`` that is not ``${NAME}``: quoted up to its ``}`` (or the end)."""
    end = text.find("}", start)
    broken = text[start : len(text) if end < 0 else end + 1]
    if len(broken) > _SHOWN_REFERENCE:
        broken = broken[: _SHOWN_REFERENCE - 3] + "..."
    return ConfigError(
        f"{path}: {broken!r} is not a ${{NAME}} reference (NAME is letters, digits and _; "
        "write $$ for a literal $)"
    )


def expand_env(data: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${NAME}`` in every string of a parsed TOML document; ``$$`` is a
    literal ``$``.  A ``${`` that does not start a ``${NAME}`` is a ConfigError naming
    the key: a reference written wrong must not be used as it is (a password, a URL)."""
    if isinstance(data, dict):
        return {
            key: expand_env(value, environ, f"{path}.{key}" if path else key)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [expand_env(value, environ, f"{path}.{index}") for index, value in enumerate(data)]
    if isinstance(data, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name is None:
                raise _broken_reference(path, data, match.start())
            if name not in environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return environ[name]

        return _ENV_REF.sub(substitute, data)
    return data


_PLAIN_KEY = re.compile(r"[\w-]+")


def _key(part: object) -> str:
    """One part of a key path; a key with spaces, dots or line breaks is quoted, so
    the problem stays on one line and its path stays readable."""
    text = str(part)
    return text if _PLAIN_KEY.fullmatch(text) else json.dumps(text)


def _format_one(error: Any, prefix: str = "") -> str:
    parts = [_key(part) for part in error["loc"]]
    location = ".".join([prefix, *parts] if prefix else parts)
    message = " ".join(error["msg"].removeprefix("Value error, ").split())
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see docs/configuration.md)"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif (expected := expected_type(error)) is not None:
        message = expected
    return f"{location}: {message}" if location else message


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """Every problem of one validation, ``prefix.key.path: message``, in order, once each."""
    return list(dict.fromkeys(_format_one(error, prefix) for error in exc.errors()))


def _format_validation_error(exc: ValidationError) -> str:
    """Every problem, on one line separated by "; " (the first is the one named first)."""
    return "; ".join(_problems(exc))


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_section_name(name: object) -> bool:
    """Whether ``name`` is a valid ``[registry.NAME]``, ``[policy.NAME]`` or ``[notify.NAME]``."""
    return bool(_NAME.match(str(name)))


def _check_document(data: Any, path: str = "") -> None:
    """Checks on the raw document that no model field can make: section names and NULs."""
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if path in ("registry", "policy", "notify") and not is_section_name(key):
                raise ConfigError(
                    f"{path}.{key!r}: invalid name: use letters, digits, '_', '.' and '-' "
                    "(at most 64, starting with a letter or digit)"
                )
            _check_document(value, where)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _check_document(value, f"{path}.{index}")
    elif isinstance(data, str) and "\x00" in data:
        # A NUL cannot be part of a path, a command or a header, and would fail deep inside.
        raise ConfigError(f"{path}: contains a NUL character (\\u0000); remove it")


def _validate_front_ends(
    document: dict[str, Any], front_ends: Mapping[str, FrontEnd]
) -> tuple[dict[str, Any], dict[str, BaseModel], list[str]]:
    """Take the sections front ends claim out of ``document`` and validate each with its
    front end's model.  Returns the rest of the document, ``{front end name: settings}``
    and the problems found (``chat.approvals_required: ...``)."""
    claimed = sections_of(front_ends.values())
    rest: dict[str, Any] = {}
    validated: dict[str, BaseModel] = {}
    problems: list[str] = []
    for key, value in document.items():
        front_end = claimed.get(key) if key not in Settings.model_fields else None
        if front_end is None or front_end.settings is None:
            rest[key] = value
            continue
        if not isinstance(value, Mapping):
            problems.append(f"{key}: must be a table ([{key}]), not {type(value).__name__}")
            continue
        try:
            validated[front_end.name] = front_end.settings.model_validate(dict(value))
        except ValidationError as exc:
            problems.extend(_problems(exc, key))
    return rest, validated, problems


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "config",
    environ: Mapping[str, str] | None = None,
    backends: BackendTypes | None = None,
    front_ends: Mapping[str, FrontEnd] | None = None,
) -> Settings:
    """Validate a parsed TOML document; raise ConfigError naming the offending key.

    ``backends`` (the catalog's registry types) validates each ``[registry.NAME]``'s
    ``type`` and the keys only that type knows; without it they are validated when the
    engine first opens the registry.

    ``front_ends`` (``{name: FrontEnd}``, from ``regprune.frontends.collect_front_ends``)
    decide which other top-level sections are valid; by default the built-in front
    ends' (the CLI passes those of its plugin manager, installed plugins included).
    """
    expanded = expand_env(dict(data), os.environ if environ is None else environ)
    try:
        _check_document(expanded)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
    if front_ends is None:
        front_ends = default_front_ends()
    core, sections, problems = _validate_front_ends(expanded, front_ends)
    try:
        settings = Settings.model_validate(core)
    except ValidationError as exc:
        problems = [*_problems(exc), *problems]
    if problems:
        raise ConfigProblems(problems, source) from None
    settings = settings.with_front_ends(sections)
    # What needs a valid document (references, each registry type's keys), all at once.
    problems = settings.reference_problems()
    if backends is not None:
        from ..registry import backend_problems  # the registry package is heavier

        problems.extend(backend_problems(settings.registry, backends))
    if problems:
        raise ConfigProblems(problems, source)
    return settings


def default_config_paths() -> list[Path]:
    """Where a config file is looked for when neither --config nor $REGPRUNE_CONFIG names one."""
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path("regprune.toml"), xdg / "regprune" / "config.toml"]


def find_config(explicit: str | None) -> Path | None:
    """The config file to use: --config, then $REGPRUNE_CONFIG, then the defaults."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        given_by = "--config" if explicit else f"${CONFIG_ENV}"
        where = f"config file {shown_path(chosen)} (from {given_by})"
        try:
            kind = path_kind(path)
        except PathProblem as exc:
            raise ConfigError(
                f"{where} cannot be read: {exc}; point {given_by} at a file"
            ) from None
        if kind == "missing":
            raise ConfigError(f"{where} does not exist; point {given_by} at an existing file")
        if kind != "file":
            what = "a directory" if kind == "directory" else describe_other(path)
            raise ConfigError(
                f"{where} is not a regular file ({what}); point {given_by} at a TOML file"
            )
        return path
    for path in default_config_paths():
        try:
            kind = path_kind(path)
        except PathProblem as exc:
            raise ConfigError(f"config file {shown_path(path)} cannot be read: {exc}") from None
        if kind == "file":
            return path
    return None


def load_settings(
    path: Path,
    *,
    backends: BackendTypes | None = None,
    front_ends: Mapping[str, FrontEnd] | None = None,
) -> Settings:
    """Read and validate a config file (see ``parse_settings``)."""
    try:
        # utf-8-sig: an editor's byte-order mark is not part of the TOML (tomllib
        # would call it an invalid statement at line 1).
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start} is invalid); TOML files must be UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return parse_settings(data, source=str(path), backends=backends, front_ends=front_ends)


def default_state_path() -> Path:
    xdg = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return xdg / "regprune" / "state.db"


def find_state_path(explicit: str | None) -> Path:
    chosen = explicit or os.environ.get(STATE_ENV)
    return Path(chosen).expanduser() if chosen else default_state_path()
