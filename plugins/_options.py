"""The plugin helpers, for the built-ins' relative imports: they live in ``regprune.options``.

Third-party plugins import them from the top-level package (``from regprune import Options``).
"""

from regprune.options import (
    COMMAND_TIMEOUT,
    Argv,
    Duration,
    M,
    Options,
    Regex,
    describe_command,
    newest_first,
    parse_options,
    read_text,
    run_command,
    untimed,
)
from regprune.timing import aware

__all__ = [
    "COMMAND_TIMEOUT",
    "Argv",
    "Duration",
    "M",
    "Options",
    "Regex",
    "aware",
    "describe_command",
    "newest_first",
    "parse_options",
    "read_text",
    "run_command",
    "untimed",
]
