"""Options shared by several commands: choosing a registry, quick-mode policies."""

from __future__ import annotations

import os

from pydantic import ValidationError

from ..config import PluginSpec, PolicySettings, RegistrySettings, Settings
from ..durations import parse_duration
from ..errors import UsageError
from ..plugin_manager import build_catalog
from ..urls import registry_identity
from .context import CliContext
from .credentials import read_credentials, with_credentials
from .flags import QuickFlags

QUICK_POLICY = "quick"
URL_HINT = "http://host:port or https://host"
# Which quick-mode flag fills which PolicySettings field, to name the flag in errors.
QUICK_FLAGS = {
    "repositories": "--repo",
    "exclude": "--exclude",
    "tags": "--tags",
    "keep_tags": "--keep-tag",
    "approval": "--approval",
}


def is_url(value: str) -> bool:
    """Whether ``--registry`` was given a URL rather than a configured name."""
    return "://" in value or value.lower().startswith(("http:", "https:"))


def resolve_registry(
    cli: CliContext, registry: str | None, *, allow_url: bool = True
) -> tuple[Settings, str]:
    """Settings and the registry name to use: a configured name, a URL, or the only one configured."""
    if registry is not None and not registry.strip():
        raise UsageError(f"--registry {registry!r}: empty; give a registry name or URL")
    if registry and is_url(registry):
        if not allow_url:
            raise UsageError(
                f"--registry {registry}: give the name of a configured registry, not a URL "
                "(this command needs its [registry.NAME] settings)"
            )
        try:
            # Checked before the config is read: a URL with a password is refused
            # whatever else is wrong, and the message never shows the password.
            identity = registry_identity(registry)
        except ValueError as exc:
            raise UsageError(f"--registry: {exc}") from None
        settings = cli.settings(required=False)
        for name, defined in settings.registry.items():
            # The same registry by identity, however it is spelled: its name, so its
            # credentials, gc, lock and every policy's keep rules apply.
            if registry_identity(defined.url) == identity:
                return settings, name
        reg = RegistrySettings(url=registry)
        if reg.url not in settings.registry:
            settings = settings.with_registry(reg.url, reg)
        return settings, reg.url
    if registry:
        if not cli.has_config():
            raise UsageError(
                f"--registry {registry!r} is not a URL ({URL_HINT}) and there is no config "
                "file defining registry names"
            )
        settings = cli.settings()
        if registry not in settings.registry:
            known = ", ".join(sorted(settings.registry)) or "none"
            raise UsageError(
                f"--registry {registry!r} is neither a URL ({URL_HINT}) nor a configured "
                f"registry (defined: {known})"
            )
        return settings, registry
    settings = cli.settings()
    if len(settings.registry) == 1:
        return settings, next(iter(settings.registry))
    if not settings.registry:
        raise UsageError("the config defines no [registry.NAME]; add one or pass --registry URL")
    known = ", ".join(sorted(settings.registry))
    raise UsageError(f"several registries are configured ({known}); choose one with --registry")


def _quick_error(exc: ValidationError) -> UsageError:
    """A pydantic error about a quick-mode policy, naming the flag that caused it."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    flag = QUICK_FLAGS.get(field, field or "quick mode")
    message = first["msg"].removeprefix("Value error, ")
    return UsageError(f"{flag}: {message}")


def quick_policy(cli: CliContext, quick: QuickFlags) -> tuple[Settings, str]:
    """A policy built from flags (quick mode); the config's other policies still guard with their keep rules."""
    registry, repos, older_than, keep = quick.registry, quick.repo, quick.older_than, quick.keep
    if not registry:
        raise UsageError("quick mode needs --registry URL (or a registry name from the config)")
    if not repos:
        raise UsageError("quick mode needs at least one --repo GLOB, e.g. --repo 'ci/*'")
    if older_than is None and keep is None:
        # --keep-semver is a keep rule: alone it would plan nothing.
        hint = " (--keep-semver only keeps; these say what to delete)"
        raise UsageError(
            "quick mode needs --older-than DURATION and/or --keep N"
            + (hint if quick.keep_semver is not None else "")
        )
    selectors = []
    if older_than is not None:
        try:
            parse_duration(older_than)
        except ValueError as exc:
            raise UsageError(f"--older-than: {exc}") from None
        selectors.append(PluginSpec.model_validate({"use": "age", "older_than": older_than}))
    if keep is not None:
        if keep < 0:
            raise UsageError(f"--keep: must be 0 or more, not {keep}")
        selectors.append(PluginSpec.model_validate({"use": "count", "keep": keep}))
    protectors = []
    if quick.keep_semver is not None:
        if quick.keep_semver < 1:
            raise UsageError(f"--keep-semver: must be 1 or more, not {quick.keep_semver}")
        protectors.append(
            PluginSpec.model_validate({"use": "semver", "keep": quick.keep_semver, "per": "major"})
        )
    approvers = build_catalog(cli.manager).approvers
    if quick.approval not in approvers:
        raise UsageError(
            f"--approval: unknown approval {quick.approval!r} "
            f"(available: {', '.join(sorted(approvers))})"
        )
    try:
        policy = PolicySettings(
            registry="-",
            repositories=repos,
            exclude=quick.exclude,
            tags=quick.tags,
            keep_tags=quick.keep_tag,
            selectors=selectors,
            protectors=protectors,
            approval=quick.approval,
        )
    except ValidationError as exc:
        raise _quick_error(exc) from None
    # Only now look at the registry, so a bad flag is reported without any connection.
    settings, name = resolve_registry(cli, registry)
    credentials = read_credentials(quick.username, quick.password_stdin, registry, dict(os.environ))
    settings = with_credentials(settings, name, credentials)
    policy = policy.model_copy(update={"registry": name})
    return settings.with_policy(QUICK_POLICY, policy), QUICK_POLICY
