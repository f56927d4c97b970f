"""The plugin manager factory and the catalog of what plugins registered.

Built-in behaviour ships as plugins: the modules listed in ``DEFAULT_PLUGINS``, and
the entry points of the ``regprune`` group that the regprune distribution itself
declares (the front ends under ``bots/`` register that way, so core names none of
them).  Both are built-ins: they load unless
blocked, are registered under their module name, and ``REGPRUNE_LOAD_PLUGINS``
does not restrict them.  Every other entry point of the group is third-party.

Environment variables:
- ``REGPRUNE_BLOCK_PLUGINS=name,name``: never load these plugins (built-in or not);
  the way out when a broken plugin stops regprune from starting.  A name may be a
  plugin's (``semver_releases``, ``regprune.plugins.age`` or ``age``) or an installed
  distribution's (``regprune-semver``: every entry-point plugin it ships).  A name
  that matches nothing is a ``warning:`` line, so a misspelling is not silent.
- ``REGPRUNE_LOAD_PLUGINS=name,name``: load only these third-party plugins
  (empty string: none).  Built-ins load unless blocked.
- ``REGPRUNE_TRACE_HOOKS=1``: one ``trace:`` line per hook call (see ``hookcalls``).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import ConfigError, UsageError
from .hookcalls import call_each, check_no_wrappers, plugin_error
from .registry import BackendType, RegistryBackend, backend_options

if TYPE_CHECKING:
    from .config import RegistrySettings

ENTRY_POINT_GROUP = "regprune"
BLOCK_ENV = "REGPRUNE_BLOCK_PLUGINS"
LOAD_ENV = "REGPRUNE_LOAD_PLUGINS"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "regprune.plugins.age",
    "regprune.plugins.count",
    "regprune.plugins.branch",
    "regprune.plugins.untagged",
    "regprune.plugins.unused",
    "regprune.plugins.keep_tags",
    "regprune.plugins.semver",
    "regprune.plugins.in_use",
    "regprune.plugins.time_sources",
    "regprune.plugins.approvers",
    "regprune.plugins.deleter",
    "regprune.plugins.distribution",
    "regprune.plugins.gc_command",
    "regprune.plugins.audit",
    "regprune.plugins.listen",
)
DISTRIBUTION = "regprune"
"""Entry points declared by this distribution are built-ins (see the module docstring)."""


log = logging.getLogger("regprune.plugins")


def _names(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def _is_own(entry_point: EntryPoint) -> bool:
    dist = entry_point.dist
    return dist is not None and (dist.metadata["Name"] or "").lower() == DISTRIBUTION


@cache
def builtin_entry_points() -> tuple[EntryPoint, ...]:
    """The ``regprune`` entry points regprune itself declares (built-in plugins).

    Cached: the installed metadata does not change while the process runs.
    """
    return tuple(ep for ep in entry_points(group=ENTRY_POINT_GROUP) if _is_own(ep))


def builtin_plugins() -> tuple[str, ...]:
    """Module names of every built-in plugin: ``DEFAULT_PLUGINS`` and regprune's own entry points."""
    own = tuple(ep.module for ep in builtin_entry_points() if ep.module not in DEFAULT_PLUGINS)
    return DEFAULT_PLUGINS + own


def is_builtin(name: str | None) -> bool:
    """Whether a registered plugin name is a built-in's."""
    return name is not None and name in builtin_plugins()


def _is_blocked(blocked: set[str], module_name: str, *aliases: str) -> bool:
    """A built-in is blocked by its module name, the module's last part, or an alias."""
    return bool({module_name, module_name.rsplit(".", 1)[-1], *aliases} & blocked)


def _canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``Regprune_Semver`` = ``regprune-semver``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution(entry_point: EntryPoint) -> str | None:
    dist = entry_point.dist
    return None if dist is None else str(dist.metadata["Name"])


def _blocked_by_distribution(entry_point: EntryPoint, blocked: set[str]) -> bool:
    dist = _distribution(entry_point)
    return dist is not None and _canonical(dist) in {_canonical(name) for name in blocked}


def _warn_unmatched(blocked: set[str], extra_names: Iterable[str]) -> None:
    """One ``warning:`` line naming the blocked names that match no plugin or distribution."""
    if not blocked:
        return
    installed = list(entry_points(group=ENTRY_POINT_GROUP))
    plugins = {
        *builtin_plugins(),
        *(name.rsplit(".", 1)[-1] for name in builtin_plugins()),
        *(entry_point.name for entry_point in installed),
        *extra_names,
    }
    dists = {_canonical(d) for d in map(_distribution, installed) if d is not None}
    unmatched = sorted(
        name for name in blocked if name not in plugins and _canonical(name) not in dists
    )
    if unmatched:
        third_party = sorted({entry_point.name for entry_point in installed})
        log.warning(
            "%s: %s matches no plugin or distribution, so nothing was blocked for it "
            "(installed plugins: %s; see `regprune plugins`)",
            BLOCK_ENV,
            ", ".join(repr(name) for name in unmatched),
            ", ".join(third_party) or "only the built-ins",
        )


def _warn_unknown_wanted(wanted: set[str], found: Iterable[EntryPoint]) -> None:
    """One ``warning:`` line naming the ``REGPRUNE_LOAD_PLUGINS`` names that none of
    the installed plugins (entry points ``found``) has: a misspelling would otherwise
    load nothing, silently."""
    installed = sorted({ep.name for ep in found if not _is_own(ep)})
    unknown = sorted(wanted - set(installed))
    if unknown:
        log.warning(
            "%s: %s matches no installed plugin, so nothing was loaded for it "
            "(installed plugins: %s; see `regprune plugins`)",
            LOAD_ENV,
            ", ".join(repr(name) for name in unknown),
            ", ".join(installed) or "none besides the built-ins",
        )


def get_plugin_manager(
    *, load_entrypoints: bool = True, extra_plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the built-ins, installed plugins and ``extra_plugins``."""
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    blocked = _names(os.environ.get(BLOCK_ENV))
    extra_plugins = list(extra_plugins)
    _warn_unmatched(
        blocked, (getattr(p, "__name__", None) or type(p).__name__ for p in extra_plugins)
    )
    for name in blocked:
        manager.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        if _is_blocked(blocked, module_name):
            continue
        manager.register(importlib.import_module(module_name), name=module_name)
    _load_builtin_entrypoints(manager, blocked)
    if load_entrypoints:
        _load_entrypoints(manager, blocked)
    for plugin in extra_plugins:
        # Named after the module (or class), so errors can say which plugin failed.
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        manager.register(plugin, name=None if manager.has_plugin(name) else name)
    _check_pending(manager)
    for _, plugin in manager.list_name_plugin():
        if plugin is not None:
            check_no_wrappers(manager, plugin)
    return manager


def _check_pending(manager: pluggy.PluginManager) -> None:
    """``check_pending()``, with a misspelled hook reported as one line naming the way out."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = manager.get_name(exc.plugin) or repr(exc.plugin)
        unknown = sorted(
            caller.name
            for caller in manager.get_hookcallers(exc.plugin) or []
            if not caller.has_spec()
        )
        hooks = ", ".join(repr(hook) for hook in unknown) or "an unknown hook"
        raise UsageError(
            f"plugin {name!r} implements {hooks}, which regprune does not define "
            f"(see docs/plugins/hooks.md); set {BLOCK_ENV}={name} to run without it"
        ) from None


def _load_builtin_entrypoints(manager: pluggy.PluginManager, blocked: set[str]) -> None:
    """regprune's own entry points: named after their module like the other built-ins,
    blocked by that name, its last part or the entry point's name."""
    for entry_point in builtin_entry_points():
        module_name = entry_point.module
        if _is_blocked(blocked, module_name, entry_point.name) or manager.has_plugin(module_name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken built-in must not hide how to get past it
            raise UsageError(
                f"plugin {module_name!r} failed to load ({type(exc).__name__}: {exc}); "
                f"set {BLOCK_ENV}={entry_point.name} to run without it"
            ) from None
        manager.register(plugin, name=module_name)


def _load_entrypoints(manager: pluggy.PluginManager, blocked: set[str]) -> None:
    only = os.environ.get(LOAD_ENV)
    wanted = None if only is None else _names(only)
    found = list(entry_points(group=ENTRY_POINT_GROUP))  # read once: it scans every dist
    if wanted:
        _warn_unknown_wanted(wanted, found)
    for entry_point in found:
        if _is_own(entry_point):
            continue  # a built-in, loaded by _load_builtin_entrypoints
        if entry_point.name in blocked or (wanted is not None and entry_point.name not in wanted):
            continue
        if _blocked_by_distribution(entry_point, blocked):
            manager.set_blocked(entry_point.name)  # shown as blocked, like a name
            continue
        if manager.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken plugin must not hide how to get past it
            raise UsageError(
                f"plugin {entry_point.name!r} failed to load ({type(exc).__name__}: {exc}); "
                f"set {BLOCK_ENV}={entry_point.name} to run without it"
            ) from None
        try:
            manager.register(plugin, name=entry_point.name)
        except pluggy.PluginValidationError as exc:  # a hookimpl whose arguments the hook lacks
            raise UsageError(
                f"plugin {entry_point.name!r} is invalid ({' '.join(str(exc).split())}); "
                f"set {BLOCK_ENV}={entry_point.name} to run without it"
            ) from None


@dataclass
class Catalog:
    """Everything plugins registered by name: selectors, protectors, approvers, time
    sources and registry types."""

    selectors: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    protectors: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    approvers: dict[str, Any] = field(default_factory=dict)
    time_sources: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    # Any: each registry type has its own options model.
    registry_backends: dict[str, BackendType[Any]] = field(default_factory=dict)
    # [notify.NAME] use -> factory(options) -> a notifier with send(report).
    notifiers: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    # (kind, name) -> the plugin that registered it, so a failure can name the plugin.
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered ``name`` as a ``kind`` ("selector", "protector", ...)."""
        return self.owners.get((kind, name), "unknown")

    def build(
        self,
        kind: str,
        name: str,
        options: dict[str, Any],
        where: str,
        *,
        name_key: str | None = None,
    ) -> Any:
        """Create a selector, protector or notifier from its config table.

        Errors name the config key: ``where`` for a bad option (a factory's
        ValueError or TypeError), ``name_key`` (default ``where``) for an unknown
        name; any other failure of the factory is the plugin's error.
        """
        factories = {
            "selector": self.selectors,
            "protector": self.protectors,
            "notifier": self.notifiers,
        }[kind]
        if name not in factories:
            known = ", ".join(sorted(factories)) or "none installed"
            raise ConfigError(f"{name_key or where}: unknown {kind} {name!r} (available: {known})")
        try:
            return factories[name](options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {' '.join(str(exc).split())}") from None
        except UsageError:
            raise
        except Exception as exc:
            raise plugin_error(self.owner(kind, name), f"its {kind} factory {name!r}", exc) from exc

    def open_registry(self, name: str, settings: RegistrySettings) -> RegistryBackend:
        """The back end for ``[registry.NAME]``: its ``type``'s, with its options validated.

        A bad ``type`` or option is a ConfigError naming the key (``registry.NAME.KEY``);
        a type's ``create`` that fails or returns no back end is a plugin error.
        """
        options = backend_options(name, settings, self.registry_backends)
        kind = settings.type
        owner = self.owner("registry type", kind)
        try:
            backend = self.registry_backends[kind].create(name, settings, options)
        except (ConfigError, UsageError):
            raise
        except ValueError as exc:  # like a selector factory: a problem the user can fix
            raise ConfigError(f"registry.{name}: {' '.join(str(exc).split())}") from None
        except Exception as exc:
            raise plugin_error(owner, f"its registry type {kind!r}", exc) from exc
        if not isinstance(backend, RegistryBackend):
            raise plugin_error(
                owner,
                f"its registry type {kind!r}",
                f"create() returned {type(backend).__name__}, not a RegistryBackend",
            )
        return backend


def build_catalog(manager: pluggy.PluginManager) -> Catalog:
    """Ask every plugin to register its named things; a name registered twice is an error."""
    catalog = Catalog()

    def registrar(
        target: dict[str, Any], kind: str
    ) -> Callable[[str], dict[str, Callable[[str, Any], None]]]:
        def bind(plugin: str) -> dict[str, Callable[[str, Any], None]]:
            def register(name: str, value: Any) -> None:
                if kind == "registry type" and not isinstance(value, BackendType):
                    # Caught by call_each: a plugin error naming the plugin.
                    raise TypeError(
                        f"register({name!r}, ...) needs a regprune.registry.BackendType, "
                        f"not {type(value).__name__}"
                    )
                if name in target:
                    first = catalog.owner(kind, name)
                    raise UsageError(
                        f"plugins {first!r} and {plugin!r} both register the {kind} {name!r}; "
                        f"block one with {BLOCK_ENV}"
                    )
                target[name] = value
                catalog.owners[(kind, name)] = plugin

            return {"register": register}

        return bind

    for hook, target, kind in (
        ("register_selectors", catalog.selectors, "selector"),
        ("register_protectors", catalog.protectors, "protector"),
        ("register_approvers", catalog.approvers, "approver"),
        ("register_time_sources", catalog.time_sources, "time source"),
        ("register_registry_backends", catalog.registry_backends, "registry type"),
        ("register_notifiers", catalog.notifiers, "notifier"),
    ):
        call_each(manager, hook, bind=registrar(target, kind))
    return catalog


def _entry_point_distributions() -> dict[str, tuple[str, str]]:
    """Entry-point name -> (module, "distribution version") for the ``regprune`` group.

    Entry points are loaded by ``_load_entrypoints``, not by pluggy's
    ``load_setuptools_entrypoints``, so pluggy's distinfo list does not know them.
    """
    found: dict[str, tuple[str, str]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is not None and entry_point.name not in found:
            found[entry_point.name] = (
                entry_point.module,
                f"{dist.metadata['Name']} {dist.version}",
            )
    return found


def plugin_rows(manager: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Installed plugins and the hooks each implements, for ``regprune plugins``.

    ``distribution`` is ``"name version"`` of the package an entry-point plugin came
    from (None for built-ins and plugins registered in code).
    """
    builtin = set(builtin_plugins())
    installed = _entry_point_distributions()
    rows = []
    for name, plugin in sorted(manager.list_name_plugin(), key=lambda pair: pair[0] or ""):
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])
        dist = None
        for plugin_obj, distribution in manager.list_plugin_distinfo():
            if plugin_obj is plugin:
                dist = f"{distribution.project_name} {distribution.version}"
        if dist is None and name in installed and name not in builtin:
            module, described = installed[name]
            # The name alone could be reused by a plugin registered in code; check the module.
            if getattr(plugin, "__name__", module) == module:
                dist = described
        rows.append(
            {"name": name, "builtin": name in builtin, "hooks": hooks, "distribution": dist}
        )
    return rows
