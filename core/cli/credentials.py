"""Credentials from the command line, in the style of ``docker login``.

``--username USER`` names the user; the password never comes from a flag (it would
sit in the shell history and in ``ps``).  It comes from, in this order:

1. ``--password-stdin``: one line of standard input, its newline stripped; when
   standard input is a terminal, a prompt that does not echo instead;
2. ``$REGPRUNE_PASSWORD``;
3. a prompt that does not echo, when standard input is a terminal.

Otherwise, or when the password is empty, it is a usage error (exit 2).  The
credentials go to the one registry the command talks to, replacing what its
config section says; the registry client's origin rules then decide where they
may be sent (the registry itself, and a token realm only as the config would).
"""

from __future__ import annotations

import getpass
import sys

from ..config import Settings
from ..errors import UsageError
from ..registry import Credentials

PASSWORD_ENV = "REGPRUNE_PASSWORD"
USERNAME_ENV = "REGPRUNE_USERNAME"

__all__ = ["PASSWORD_ENV", "USERNAME_ENV", "read_credentials", "with_credentials"]


def _prompt(username: str, where: str) -> str:
    # getpass reads the terminal itself and writes the prompt to stderr: stdout stays data.
    return getpass.getpass(f"Password for {username} at {where}: ", stream=sys.stderr)


def read_credentials(
    username: str | None, password_stdin: bool, where: str, environ: dict[str, str]
) -> Credentials | None:
    """The credentials the flags ask for, or None when ``--username`` is not given."""
    if not username:
        if password_stdin:
            raise UsageError("--password-stdin needs --username USER")
        return None
    if password_stdin:
        if sys.stdin is None:
            raise UsageError("--password-stdin: there is no standard input to read")
        if sys.stdin.isatty():
            password = _prompt(username, where)
        else:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        source = "--password-stdin read an empty password"
    elif PASSWORD_ENV in environ:
        password = environ[PASSWORD_ENV]
        source = f"${PASSWORD_ENV} is empty"
    elif sys.stdin is not None and sys.stdin.isatty():
        password = _prompt(username, where)
        source = "the password entered is empty"
    else:
        raise UsageError(
            f"--username {username}: no password; pipe it with --password-stdin or set "
            f"{PASSWORD_ENV} (never a flag)"
        )
    if not password:
        raise UsageError(f"{source}; give the password for --username {username}")
    return Credentials(username, password)


def with_credentials(
    settings: Settings, registry: str, credentials: Credentials | None
) -> Settings:
    """``settings`` with ``[registry.NAME]``'s username and password replaced."""
    if credentials is None:
        return settings
    section = settings.get_registry(registry).model_copy(
        update={"username": credentials.username, "password": credentials.password}
    )
    return settings.with_registry(registry, section)
