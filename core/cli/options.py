"""Options shared by several commands: choosing a registry, quick-mode policies."""

from __future__ import annotations

from ..config import PluginSpec, PolicySettings, RegistrySettings, Settings
from ..durations import parse_duration
from ..errors import ConfigError, UsageError
from .context import CliContext

QUICK_POLICY = "quick"


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def resolve_registry(cli: CliContext, registry: str | None) -> tuple[Settings, str]:
    """Settings and the registry name to use: a configured name, a URL, or the only one configured."""
    if registry and is_url(registry):
        settings = cli.settings(required=False)
        try:
            reg = RegistrySettings(url=registry)
        except ValueError:
            raise UsageError(
                f"invalid registry url {registry!r}: use http://host:port or https://host"
            ) from None
        settings.registry.setdefault(reg.url, reg)
        return settings, reg.url
    settings = cli.settings()
    if registry:
        settings.get_registry(registry)
        return settings, registry
    if len(settings.registry) == 1:
        return settings, next(iter(settings.registry))
    known = ", ".join(sorted(settings.registry)) or "none"
    raise UsageError(f"several registries are configured ({known}); choose one with --registry")


def quick_policy(
    cli: CliContext,
    *,
    registry: str | None,
    repos: list[str],
    exclude: list[str],
    tags: str | None,
    older_than: str | None,
    keep: int | None,
    keep_tags: list[str],
    approval: str,
) -> tuple[Settings, str]:
    """A policy built from flags (quick mode); the config's other policies still guard with their keep rules."""
    if not registry:
        raise UsageError("quick mode needs --registry URL (or a registry name from the config)")
    if not repos:
        raise UsageError("quick mode needs at least one --repo GLOB, e.g. --repo 'ci/*'")
    if older_than is None and keep is None:
        raise UsageError("quick mode needs --older-than DURATION and/or --keep N")
    selectors = []
    if older_than is not None:
        try:
            parse_duration(older_than)
        except ValueError as exc:
            raise UsageError(f"--older-than: {exc}") from None
        selectors.append(PluginSpec(use="age", older_than=older_than))
    if keep is not None:
        if keep < 0:
            raise UsageError("--keep: must be 0 or more")
        selectors.append(PluginSpec(use="count", keep=keep))
    settings, name = resolve_registry(cli, registry)
    try:
        policy = PolicySettings(
            registry=name,
            repositories=repos,
            exclude=exclude,
            tags=tags,
            keep_tags=keep_tags,
            selectors=selectors,
            approval=approval,
        )
    except ValueError as exc:
        message = str(exc).splitlines()
        detail = message[-1].strip() if message else str(exc)
        raise ConfigError(f"quick mode: {detail.removeprefix('Value error, ')}") from None
    settings.policy[QUICK_POLICY] = policy
    return settings, QUICK_POLICY
