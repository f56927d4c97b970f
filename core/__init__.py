"""regprune: plan, approve, delete and garbage-collect images in a private registry, safely.

This module is the public plugin API: everything a plugin needs is importable from
here (``from regprune import hookimpl, Options, parse_options``), documented in
docs/plugins/writing-plugins.md, and kept stable.  Anything else (``regprune.engine``,
``regprune.state``, ...) is internal and may change.

Only ``hookimpl`` is imported eagerly; the rest is loaded on first access through a
module ``__getattr__``, so ``import regprune`` stays cheap for the command line.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .hookspecs import hookimpl

if TYPE_CHECKING:  # the names below, for type checkers and editors
    from .cli.context import CliContext, get_context
    from .config import RegistrySettings
    from .errors import (
        ConfigError,
        DeletesDisabled,
        MissingScope,
        RegistryError,
        RegpruneError,
        UsageError,
    )
    from .frontends import FrontEnd, approvals_decided_by, decided_elsewhere
    from .models import (
        ApplyResult,
        Approval,
        ApprovalContext,
        Approver,
        GcResult,
        Image,
        ManifestFacts,
        Plan,
        PlanItem,
        Protector,
        SelectionContext,
        Selector,
        TimeReading,
        Verdict,
    )
    from .notify import Notifier, RunReport, post_json
    from .options import (
        Argv,
        Duration,
        Options,
        Regex,
        describe_command,
        newest_first,
        parse_options,
        read_text,
        run_command,
        untimed,
    )
    from .patterns import Pattern, PatternError, compile_pattern
    from .registry import (
        BackendType,
        NoOptions,
        RegistryBackend,
        RegistryClient,
        credentials_for,
    )
    from .timing import parse_rfc3339

__version__ = "0.1.0"

# Public name -> the internal module that defines it.
_LAZY: dict[str, str] = {
    # Options: the base class, parsing and the option types.
    "Options": ".options",
    "parse_options": ".options",
    "Regex": ".options",
    "Argv": ".options",
    "Duration": ".options",
    # Helpers for selectors and keep rules.
    "newest_first": ".options",
    "untimed": ".options",
    "run_command": ".options",
    "describe_command": ".options",
    "read_text": ".options",
    # Regular expressions on tags (RE2: linear time, whatever a pusher chooses).
    "compile_pattern": ".patterns",
    "Pattern": ".patterns",
    "PatternError": ".patterns",
    "parse_rfc3339": ".timing",
    # Commands added with register_commands reach the configuration, state and engine.
    "get_context": ".cli.context",
    "CliContext": ".cli.context",
    # What hooks receive and return.
    "Image": ".models",
    "ManifestFacts": ".models",
    "Verdict": ".models",
    "SelectionContext": ".models",
    "Selector": ".models",
    "Protector": ".models",
    "TimeReading": ".models",
    "Plan": ".models",
    "PlanItem": ".models",
    "Approval": ".models",
    "ApprovalContext": ".models",
    "Approver": ".models",
    "ApplyResult": ".models",
    "GcResult": ".models",
    # Errors a plugin raises.
    "UsageError": ".errors",
    "ConfigError": ".errors",
    "RegpruneError": ".errors",
    "RegistryError": ".errors",
    "DeletesDisabled": ".errors",
    "MissingScope": ".errors",
    # Registry back ends (register_registry_backends).
    "RegistrySettings": ".config",
    "BackendType": ".registry",
    "RegistryBackend": ".registry",
    "RegistryClient": ".registry",
    "NoOptions": ".registry",
    "credentials_for": ".registry",
    # Notifiers (register_notifiers).
    "RunReport": ".notify",
    "Notifier": ".notify",
    "post_json": ".notify",
    # Front ends (register_front_ends).
    "FrontEnd": ".frontends",
    "approvals_decided_by": ".frontends",
    "decided_elsewhere": ".frontends",
}

__all__ = [
    "ApplyResult",
    "Approval",
    "ApprovalContext",
    "Approver",
    "Argv",
    "BackendType",
    "CliContext",
    "ConfigError",
    "DeletesDisabled",
    "Duration",
    "FrontEnd",
    "GcResult",
    "Image",
    "ManifestFacts",
    "MissingScope",
    "NoOptions",
    "Notifier",
    "Options",
    "Pattern",
    "PatternError",
    "Plan",
    "PlanItem",
    "Protector",
    "Regex",
    "RegistryBackend",
    "RegistryClient",
    "RegistryError",
    "RegistrySettings",
    "RegpruneError",
    "RunReport",
    "SelectionContext",
    "Selector",
    "TimeReading",
    "UsageError",
    "Verdict",
    "__version__",
    "approvals_decided_by",
    "compile_pattern",
    "credentials_for",
    "decided_elsewhere",
    "describe_command",
    "get_context",
    "hookimpl",
    "newest_first",
    "parse_options",
    "parse_rfc3339",
    "post_json",
    "read_text",
    "run_command",
    "untimed",
]
# (a test checks that __all__ and _LAZY name the same things)


def __getattr__(name: str) -> object:
    """Import a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'regprune' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
