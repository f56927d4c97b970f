"""Flags used by several commands, declared once: spellings, metavars and help.

Two kinds:

- ``Annotated`` aliases for a flag whose help is the same wherever it is used
  (``--config``, ``--state``, the quick-mode flags)::

      def command(state: StatePath = None) -> None: ...

- factories for a flag spelled the same everywhere but explained per command
  (``--json``, ``--policy``, ``--registry``, ``--yes``): typer takes help from one
  place only, so the spelling lives here and each command passes its sentence::

      def command(as_json: bool = json_flag("Print the plan as JSON.")) -> None: ...

Quick mode is one bundle: :func:`with_quick_flags` adds its flags to a
command and hands them over as one :class:`QuickFlags`, which
``options.quick_policy`` turns into settings.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from ..errors import UsageError

ConfigPath = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Config file (default: $REGPRUNE_CONFIG, ./regprune.toml, then "
        "~/.config/regprune/config.toml).",
    ),
]
StatePath = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="FILE",
        help="State DB with plans, the audit log and the digest cache (default: "
        "$REGPRUNE_STATE, then ~/.local/state/regprune/state.db).",
    ),
]

MetricsFile = Annotated[
    str | None,
    typer.Option(
        "--metrics-file",
        metavar="PATH",
        help="Write the run's Prometheus metrics to PATH (atomically; for node_exporter's "
        "textfile collector, name it *.prom). plan, apply, run and gc.",
    ),
]
Pushgateway = Annotated[
    str | None,
    typer.Option(
        "--pushgateway",
        metavar="URL",
        help="Push the run's Prometheus metrics to this Pushgateway (job regprune, grouped "
        "by policy and registry). plan, apply, run and gc.",
    ),
]

# -- quick mode -------------------------------------------------------------------------

QuickRegistry = Annotated[
    str | None,
    typer.Option(
        "--registry",
        "-r",
        metavar="URL|NAME",
        help="Quick mode: registry URL (http://host:port) or a registry name from the config.",
    ),
]
QuickRepo = Annotated[
    list[str],
    typer.Option(
        "--repo", metavar="GLOB", help="Quick mode: repository glob, e.g. 'ci/*' (repeatable)."
    ),
]
QuickExclude = Annotated[
    list[str],
    typer.Option(
        "--exclude",
        metavar="GLOB",
        help="Quick mode: repository glob to leave out (repeatable).",
    ),
]
QuickTags = Annotated[
    str | None,
    typer.Option(
        "--tags", metavar="REGEX", help="Quick mode: only consider tags matching this regex."
    ),
]
QuickOlderThan = Annotated[
    str | None,
    typer.Option(
        "--older-than",
        metavar="DURATION",
        help="Quick mode: select images older than this (units s, m, h, d, w: 14d, 12h).",
    ),
]
QuickKeep = Annotated[
    int | None,
    typer.Option(
        "--keep",
        metavar="N",
        max=1_000_000,
        help="Quick mode: keep the newest N images per repository, select the rest.",
    ),
]
QuickKeepTag = Annotated[
    list[str],
    typer.Option(
        "--keep-tag",
        metavar="REGEX",
        help="Quick mode: never delete images with a tag matching this regex (repeatable).",
    ),
]
QuickKeepSemver = Annotated[
    int | None,
    typer.Option(
        "--keep-semver",
        metavar="N",
        max=1_000_000,
        help="Quick mode: never delete the newest N releases of each major version "
        "(tags like v1.4.2 or 1.4.2; the semver keep rule).",
    ),
]
QuickApproval = Annotated[
    str,
    typer.Option(
        "--approval",
        metavar="METHOD",
        help="Quick mode: who approves: cli (prompt or --yes), auto, or a method a front end "
        "registers (see `regprune plugins`).",
    ),
]

# Credentials, docker-login style: a user name, the password never a flag (see credentials.py).
Username = Annotated[
    str | None,
    typer.Option(
        "--username",
        "-u",
        metavar="USER",
        envvar="REGPRUNE_USERNAME",
        show_envvar=True,
        help="Log in to the registry as USER (replacing the config's credentials for it); "
        "the password comes from --password-stdin, $REGPRUNE_PASSWORD or a prompt.",
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password for --username from standard input: one line, its "
        "newline stripped (a prompt without echo when it is a terminal).",
    ),
]


@dataclass(frozen=True)
class QuickFlags:
    """The quick-mode flags of one command line; field order is their order in ``--help``.

    Each field's ``metadata["alias"]`` is its flag's ``Annotated`` alias, so the flags
    are declared here once for every command that takes them.
    """

    registry: str | None = field(default=None, metadata={"alias": QuickRegistry})
    repo: list[str] = field(default_factory=list, metadata={"alias": QuickRepo})
    exclude: list[str] = field(default_factory=list, metadata={"alias": QuickExclude})
    tags: str | None = field(default=None, metadata={"alias": QuickTags})
    older_than: str | None = field(default=None, metadata={"alias": QuickOlderThan})
    keep: int | None = field(default=None, metadata={"alias": QuickKeep})
    keep_tag: list[str] = field(default_factory=list, metadata={"alias": QuickKeepTag})
    keep_semver: int | None = field(default=None, metadata={"alias": QuickKeepSemver})
    approval: str = field(default="cli", metadata={"alias": QuickApproval})
    username: str | None = field(default=None, metadata={"alias": Username})
    password_stdin: bool = field(default=False, metadata={"alias": PasswordStdin})

    @property
    def selects(self) -> bool:
        """Whether any flag that shapes a policy was given (``--registry`` alone does not)."""
        return bool(
            self.repo
            or self.older_than is not None
            or self.keep is not None
            or self.keep_tag
            or self.keep_semver is not None
            or self.tags
            or self.exclude
        )


def _quick_parameters() -> list[inspect.Parameter]:
    """The bundle's fields as keyword parameters typer reads: alias and default."""
    defaults = QuickFlags()
    return [
        inspect.Parameter(
            item.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=getattr(defaults, item.name),
            annotation=item.metadata["alias"],
        )
        for item in fields(QuickFlags)
    ]


QUICK_NAMES = tuple(item.name for item in fields(QuickFlags))

_R = TypeVar("_R")


def with_quick_flags(command: Callable[..., _R]) -> Callable[..., _R]:
    """Give ``command`` the quick-mode flags, after its own, as one ``quick`` argument.

    ``command`` declares ``quick: QuickFlags``; typer sees the bundle's flags in its
    place (so ``--help`` lists them, in the bundle's order) and the wrapper folds the
    parsed values into a ``QuickFlags``.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for name, p in signature.parameters.items() if name != "quick"]
    if len(own) == len(signature.parameters):
        raise TypeError(f"{command.__name__} must take a 'quick: QuickFlags' parameter")

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> _R:  # typer passes every flag by name
        quick = QuickFlags(**{name: kwargs.pop(name) for name in QUICK_NAMES})
        return command(*args, quick=quick, **kwargs)

    parameters = [*own, *_quick_parameters()]
    # typer reads both: the signature for names and defaults, the annotations for types.
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]  # read by inspect.signature
    wrapper.__annotations__ = {
        **{p.name: p.annotation for p in parameters},
        "return": signature.return_annotation,
    }
    return wrapper


# -- one spelling, help per command -------------------------------------------------------
# typer.Option returns its OptionInfo typed as Any, for use as a parameter default.


def json_flag(help: str) -> Any:
    """``--json``: print the command's result as JSON."""
    return typer.Option(False, "--json", help=help)


def policy_flag(help: str) -> Any:
    """``--policy NAME`` / ``-p``: one policy of the config."""
    return typer.Option(None, "--policy", "-p", metavar="NAME", help=help)


def registry_flag(help: str, *, metavar: str = "NAME") -> Any:
    """``--registry NAME`` / ``-r``: a configured registry (``metavar="URL|NAME"`` for a URL too)."""
    return typer.Option(None, "--registry", "-r", metavar=metavar, help=help)


def yes_flag(help: str) -> Any:
    """``--yes`` / ``-y``: approve ``cli`` plans without asking."""
    return typer.Option(False, "--yes", "-y", help=help)


class OutputFormat(StrEnum):
    """What ``--format`` accepts: tables for people, tab-separated rows or JSON for scripts."""

    TABLE = "table"
    TSV = "tsv"
    JSON = "json"


def format_flag(help: str) -> Any:
    """``--format table|tsv|json`` (``--json`` stays a short way to say ``--format json``)."""
    return typer.Option(None, "--format", metavar="table|tsv|json", help=help)


def output_format(chosen: str | None, as_json: bool) -> OutputFormat:
    """The format a command prints in, from ``--format`` and ``--json``: an unknown
    format, or both flags disagreeing, is a usage error."""
    try:
        picked = OutputFormat((chosen if chosen is not None else "table").lower())
    except ValueError:
        names = ", ".join(f.value for f in OutputFormat)
        raise UsageError(f"--format {chosen!r} is not one of {names}") from None
    if as_json and chosen is not None and picked is not OutputFormat.JSON:
        raise UsageError(f"--json and --format {picked.value} disagree: pass one of them")
    return OutputFormat.JSON if as_json else picked
