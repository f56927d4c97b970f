"""The bot's log: stderr, secrets redacted, and slack_sdk's and slack_bolt's own lines
kept out of it unless ``regprune --verbose`` asks for them.

Those libraries log a failed start several times over (each retry, at ERROR) before
the error reaches regprune, which reports it in one line (see ``startup.py``).  So
without ``--verbose`` they say nothing while the bot starts; once it is serving,
their warnings and errors pass (a lost Socket Mode connection is reported only by
them).  With ``--verbose`` their info lines show from the start.
"""

from __future__ import annotations

import logging

from .redact import Redactor, install

BOLT_LOGGER = "regprune.bots.slack.bolt"
"""The logger bolt's ``App`` (and Socket Mode, through it) is given."""
LIBRARY_LOGGERS = ("slack_sdk", "slack_bolt", BOLT_LOGGER)
"""The loggers whose lines are the libraries' own, not regprune's."""
SILENT = logging.CRITICAL + 10


def configure_logging(
    redactor: Redactor, level: int = logging.INFO, *, verbose: bool = False
) -> None:
    """Log to stderr with every token and secret redacted; the libraries silent for now
    unless ``verbose`` (``libraries_running`` lets their warnings through once started)."""
    from regprune.cli import quiet_cli_warnings  # the bot's log lines carry them instead

    quiet_cli_warnings()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(min(root.level or level, level))
    install(redactor, root)
    set_library_level(logging.INFO if verbose else SILENT)


def libraries_running(verbose: bool) -> None:
    """The bot is serving: the libraries' warnings and errors are news now."""
    set_library_level(logging.INFO if verbose else logging.WARNING)


def set_library_level(level: int) -> None:
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
