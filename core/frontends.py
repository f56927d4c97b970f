"""Front ends as plugins: what a front end registers with core, and how core finds them.

A front end (a chat bot, a web page, anything that shows plans to people and brings
their decisions back) is a plugin implementing ``register_front_ends``::

    @hookimpl
    def register_front_ends(register):
        register(FrontEnd(name="chat", settings=ChatSettings, title="Chat"))

Core then

- validates the front end's top-level config section (``[chat]``, or ``section=``)
  with its pydantic ``settings`` model, naming the key path in errors
  (``chat.approvals_required: ...``); a section no front end claims is an error;
- hands the validated section back through ``Settings.front_end(name)``;
- stores the front end's message references (which message shows which plan) in the
  state DB, keyed by the front end's ``name``.

An approver whose decision is made in a front end (not at the terminal) says so
with ``decided_elsewhere = True``; ``front_end = "chat"`` names the front end that
decides, and ``waiting = "waits for approval in Chat; the bot applies it"`` is what
``regprune plan`` prints for such a plan.  Core never compares approver names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache

import pluggy
from pydantic import BaseModel

from .errors import UsageError
from .hookcalls import call_each
from .plugin_manager import BLOCK_ENV, get_plugin_manager

RESERVED_SECTIONS = frozenset({"registry", "policy", "state", "plugins", "notify"})
"""Top-level sections core owns; no front end may claim them."""

DEFAULT_WAITING = "waits for approval elsewhere; its front end applies it"


@dataclass(frozen=True)
class FrontEnd:
    """One front end, as it registers itself.

    ``name`` identifies it (message references are stored under it); ``settings``
    is the pydantic model of its config section (``section``, by default the name),
    or None when it takes no settings; ``title`` is how people call it ("Chat").
    """

    name: str
    settings: type[BaseModel] | None = None
    section: str | None = None
    title: str = ""
    description: str = ""

    @property
    def config_section(self) -> str | None:
        """The top-level config section this front end claims, if it has settings."""
        if self.settings is None:
            return None
        return self.section or self.name


def decided_elsewhere(approver: object) -> bool:
    """Whether an approver's decision is made in a front end, not by ``regprune apply``."""
    return getattr(approver, "decided_elsewhere", False) is True


def deciding_front_end(approver: object) -> str | None:
    """The name of the front end that decides for this approver (None: the CLI or a rule)."""
    if not decided_elsewhere(approver):
        return None
    name = getattr(approver, "front_end", None)
    return name if isinstance(name, str) and name else None


def waiting_text(approver: object) -> str:
    """What ``regprune plan`` says after a plan whose approval is decided elsewhere."""
    text = getattr(approver, "waiting", None)
    return text if isinstance(text, str) and text else DEFAULT_WAITING


def approvals_decided_by(approvers: Mapping[str, object], front_end: str) -> frozenset[str]:
    """The approval names (a policy's ``approval``) whose decisions ``front_end`` makes."""
    return frozenset(
        name for name, approver in approvers.items() if deciding_front_end(approver) == front_end
    )


def collect_front_ends(manager: pluggy.PluginManager) -> dict[str, FrontEnd]:
    """Ask every plugin for its front ends; a name or section claimed twice is an error."""

    found: dict[str, FrontEnd] = {}
    owners: dict[str, str] = {}
    sections: dict[str, str] = {}

    def bind(plugin: str) -> dict[str, Callable[[FrontEnd], None]]:
        def register(front_end: FrontEnd) -> None:
            if not isinstance(front_end, FrontEnd):
                raise UsageError(
                    f"plugin {plugin!r} registered {front_end!r} as a front end; pass a "
                    f"regprune.frontends.FrontEnd, or set {BLOCK_ENV}={plugin}"
                )
            _check_front_end(front_end, plugin)
            if front_end.name in found:
                raise UsageError(
                    f"plugins {owners[front_end.name]!r} and {plugin!r} both register the front "
                    f"end {front_end.name!r}; block one with {BLOCK_ENV}"
                )
            section = front_end.config_section
            if section is not None and section in sections:
                raise UsageError(
                    f"plugins {sections[section]!r} and {plugin!r} both claim the config "
                    f"section [{section}]; block one with {BLOCK_ENV}"
                )
            found[front_end.name] = front_end
            owners[front_end.name] = plugin
            if section is not None:
                sections[section] = plugin

        return {"register": register}

    call_each(manager, "register_front_ends", bind=bind)
    return found


def _check_front_end(front_end: FrontEnd, plugin: str) -> None:
    if not front_end.name or not front_end.name.replace("_", "").replace("-", "").isalnum():
        raise UsageError(
            f"plugin {plugin!r} registers a front end named {front_end.name!r}; use letters, "
            f"digits, '_' and '-' (or set {BLOCK_ENV}={plugin})"
        )
    if front_end.settings is not None and not (
        isinstance(front_end.settings, type) and issubclass(front_end.settings, BaseModel)
    ):
        raise UsageError(
            f"plugin {plugin!r}: the settings of front end {front_end.name!r} must be a "
            f"pydantic model class (or set {BLOCK_ENV}={plugin})"
        )
    section = front_end.config_section
    if section is not None and section in RESERVED_SECTIONS:
        raise UsageError(
            f"plugin {plugin!r}: front end {front_end.name!r} claims the config section "
            f"[{section}], which regprune itself uses; set {BLOCK_ENV}={plugin}"
        )


def sections_of(front_ends: Iterable[FrontEnd]) -> dict[str, FrontEnd]:
    """``{config section: front end}`` for the front ends that take settings."""
    return {
        section: front_end
        for front_end in front_ends
        if (section := front_end.config_section) is not None
    }


def default_front_ends() -> dict[str, FrontEnd]:
    """The built-in front ends (what ``parse_settings`` accepts when not told otherwise).

    Built-ins only, and cached per ``REGPRUNE_BLOCK_PLUGINS`` value: they cannot change
    while the process runs, and building a plugin manager for every parsed document
    would cost ~100 ms each.  The CLI passes the front ends of its own plugin manager
    (installed plugins included) instead.
    """
    return dict(_builtin_front_ends(os.environ.get(BLOCK_ENV)))


@cache
def _builtin_front_ends(blocked: str | None) -> tuple[tuple[str, FrontEnd], ...]:
    # ``blocked`` is the cache key; get_plugin_manager reads the same variable.
    return tuple(collect_front_ends(get_plugin_manager(load_entrypoints=False)).items())
