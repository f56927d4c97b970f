"""Errors regprune reports to people: one clear line each, with an exit code.

`UsageError` (exit 2) is for anything the user can fix in their input or
environment: a bad flag, a malformed config, an unreachable registry, wrong
credentials, a registry that refuses deletes.  Nothing has changed when it is
raised.  `RegpruneError` (exit 1) is for a failure while doing the work.
"""

from __future__ import annotations


class RegpruneError(Exception):
    """A failure while doing the work (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def lines(self) -> list[str]:
        """The error as the CLI prints it, one ``error:`` line each (one, but see
        ``ConfigProblems``)."""
        return [self.message]


class UsageError(RegpruneError):
    """Bad input or environment the user can fix; nothing was changed (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration file or a plugin's options are invalid."""


class ConfigProblems(ConfigError):
    """Every problem found in one config file: ``message`` holds them on one line
    (separated by "; ", for front ends that show one line), ``lines()`` one per line."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.source = source
        self.problems = tuple(problems)
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.problems))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [prefix + problem for problem in self.problems]


class RegistryError(RegpruneError):
    """The registry answered with an error we cannot work around."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryUnreachable(UsageError):
    """No connection to the registry could be made (DNS, refused, timeout, TLS)."""


class AuthenticationFailed(UsageError):
    """The registry rejected the credentials."""


class DeletesDisabled(UsageError):
    """The registry answers DELETE with 405 UNSUPPORTED."""


class MissingScope(UsageError):
    """The credentials are valid but lack a scope the operation needs (e.g. delete)."""


class ManifestNotFound(RegistryError):
    """The manifest (by tag or digest) does not exist in the repository."""


class ApprovalPending(UsageError):
    """The plan's approver decides elsewhere (in a front end) and has not decided yet."""


class ApplyStopped(RegpruneError):
    """An apply stopped part-way after deleting something (exit code 1); ``cause`` is why."""

    def __init__(self, message: str, cause: RegpruneError | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class Interrupted(RegpruneError):
    """Ctrl-C or SIGTERM stopped the work; the message says what was done and how to resume."""

    exit_code = 130


class LockHeld(RegpruneError):
    """Another apply or gc holds the registry's lock."""


class GcInterrupted(Interrupted):
    """Ctrl-C or SIGTERM stopped a garbage collection; ``result`` is what ran until then."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result
