"""Usage lines as people read them: ``regprune apply [OPTIONS] PLAN_ID``.

Typer writes a required argument as ``{PLAN_ID}`` on the usage line, which reads
like a choice or a template to fill in; click, the help texts and the docs write
``PLAN_ID``.  ``plain_usage`` gives every argument of a built command tree the
plain spelling (optional ones keep their ``[...]``).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument


class PlainArgument(TyperArgument):
    """A Typer argument whose usage-line name is ``NAME`` (required) or ``[NAME]``."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return [f"{name}..." if self.nargs != 1 else name]


def plain_usage(command: Any) -> Any:
    """Give every Typer argument under ``command`` (a click command or group, plugin
    commands included) the plain usage spelling; returns ``command``."""
    for param in getattr(command, "params", []):
        if type(param) is TyperArgument:
            # Same fields, only the usage spelling differs: re-class rather than rebuild.
            param.__class__ = PlainArgument
    for sub in (getattr(command, "commands", None) or {}).values():
        plain_usage(sub)
    return command
