"""Registry bytes made safe to use: JSON decoding that fails only with ValueError, and
registry-supplied text made fit for a one-line message."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["load_json", "one_line"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def load_json(content: bytes | str) -> Any:
    """Decode JSON; ValueError for anything that is not JSON.

    Deeply nested input makes the decoder raise RecursionError, which becomes
    ValueError too: nesting is one more way an answer can be malformed.
    """
    try:
        return json.loads(content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def one_line(text: str, limit: int = 200) -> str:
    """Text from a registry made safe for a one-line message: no control characters
    (newlines, terminal escapes), whitespace runs collapsed, at most ``limit`` characters."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
