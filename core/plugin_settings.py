"""Plugin configuration: ``[plugins.NAME]`` tables and the options of a chosen approver.

A plugin declares the settings it takes as a whole with the ``register_settings``
hook: ``register(Model, configure)``, where ``Model`` is a subclass of
``regprune.Options``.  When regprune loads a configuration it validates the
plugin's ``[plugins.NAME]`` table (an empty one when there is none) with ``Model``
and calls ``configure(settings)`` with the result, before any other hook runs.
Errors name the key path (``plugins.NAME.KEY: ...``); a table for a plugin that is
not loaded is one error naming the loaded ones.

An approver takes options where it is chosen (``approval = { use = "NAME", ... }``)
by declaring an ``options_model`` attribute (an ``Options`` subclass); the engine
validates the policy's options with it and hands them to ``approve`` in
``context.options``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from .errors import ConfigError, UsageError
from .hookcalls import call_each, plugin_error
from .options import Options, parse_options

Configure = Callable[[Any], None]


@dataclass(frozen=True)
class SettingsModel:
    """What a plugin registered: its settings model and where the validated settings go."""

    model: type[Options]
    configure: Configure


def collect_settings_models(manager: pluggy.PluginManager) -> dict[str, SettingsModel]:
    """Plugin name -> its registered settings model (plugins that take none are absent)."""
    found: dict[str, SettingsModel] = {}

    def bind(plugin: str) -> dict[str, Callable[[type[Options], Configure], None]]:
        def register(model: type[Options], configure: Configure) -> None:
            if plugin in found:
                raise UsageError(f"plugin {plugin!r} registers its settings twice; register once")
            if not (isinstance(model, type) and issubclass(model, Options)):
                raise UsageError(
                    f"plugin {plugin!r} registers settings {model!r}, which is not a subclass "
                    "of regprune.Options"
                )
            found[plugin] = SettingsModel(model, configure)

        return {"register": register}

    call_each(manager, "register_settings", bind=bind)
    return found


def table_names(manager: pluggy.PluginManager) -> dict[str, str]:
    """Every name a ``[plugins.NAME]`` table may use -> the plugin it means.

    A plugin's name as ``regprune plugins`` shows it; a built-in also by its last
    part (``age`` for ``regprune.plugins.age``), as ``REGPRUNE_BLOCK_PLUGINS`` allows.
    """
    from .plugin_manager import DEFAULT_PLUGINS  # import cycle: the manager builds on us

    names: dict[str, str] = {}
    for name, plugin in manager.list_name_plugin():
        if plugin is None or name is None:
            continue
        names[name] = name
        if name in DEFAULT_PLUGINS:
            names.setdefault(name.rsplit(".", 1)[-1], name)
    return names


def configure_plugins(
    manager: pluggy.PluginManager, tables: Mapping[str, Mapping[str, Any]]
) -> dict[str, Options]:
    """Validate every ``[plugins.NAME]`` table and hand each plugin its settings.

    Returns plugin name -> validated settings.  Raises ConfigError naming the key.
    """
    names = table_names(manager)
    models = collect_settings_models(manager)
    chosen: dict[str, tuple[str, Mapping[str, Any]]] = {}  # plugin -> (table name, table)
    for table, values in tables.items():
        plugin = names.get(table)
        if plugin is None:
            loaded = ", ".join(sorted(name for name in names if name in names.values()))
            raise ConfigError(
                f"plugins.{table}: no loaded plugin is named {table!r} (loaded: {loaded}); "
                "check the name with `regprune plugins`, or remove the table"
            )
        if plugin not in models:
            raise ConfigError(
                f"plugins.{table}: plugin {plugin!r} takes no settings (it does not "
                "implement register_settings); remove the table"
            )
        if plugin in chosen:
            raise ConfigError(
                f"plugins.{table}: plugin {plugin!r} is configured twice (also as "
                f"plugins.{chosen[plugin][0]}); keep one table"
            )
        chosen[plugin] = (table, values)
    configured: dict[str, Options] = {}
    for plugin, registered in models.items():
        table, values = chosen.get(plugin, (_short(plugin, names), {}))
        try:
            settings = parse_options(registered.model, values, where=f"plugins.{table}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            registered.configure(settings)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"plugins.{table}: {exc}") from None
        except UsageError:
            raise
        except Exception as exc:
            raise plugin_error(plugin, "configure (register_settings)", exc) from exc
        configured[plugin] = settings
    return configured


def _short(plugin: str, names: Mapping[str, str]) -> str:
    """The shortest table name for ``plugin`` (``age``, not ``regprune.plugins.age``)."""
    return min((name for name, target in names.items() if target == plugin), key=len)


def approver_options(approver: object, options: Mapping[str, Any], where: str) -> Options | None:
    """Validate the options given with an approver (``approval = { use = ..., KEY = ... }``).

    None when the approver declares no ``options_model`` and none were given.
    """
    model = getattr(approver, "options_model", None)
    if model is None:
        if options:
            given = ", ".join(repr(key) for key in sorted(options))
            raise ConfigError(
                f"{where}: this approver takes no options (got {given}); "
                'write approval = "NAME", or see the approver\'s documentation'
            )
        return None
    if not (isinstance(model, type) and issubclass(model, Options)):
        raise UsageError(f"{where}: the approver's options_model is not a regprune.Options")
    try:
        return parse_options(model, options, where=where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
