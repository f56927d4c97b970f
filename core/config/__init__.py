"""The TOML configuration: registries, policies, the state DB, and the sections of
front ends (``[NAME]``, one per front end that claims it), validated with pydantic.

Core owns ``[registry.NAME]``, ``[policy.NAME]`` and ``[state]``; any other
top-level section is valid only when a registered front end claims it
(``regprune.frontends``), and is then validated with that front end's model.

Every string may use ``${ENV_VAR}`` (``$$`` for a literal ``$``); a variable that is
not set, or a ``${`` that starts no valid reference, is an error naming the key.  Errors name the offending key, e.g.
``policy.ci.keep_tags.0: invalid regular expression '(': missing ), ...``.

The package: ``models`` (the settings models) and ``loading`` (reading a file into
them).  Every name is importable from ``regprune.config`` as before.
"""

from .loading import (
    default_config_paths,
    default_state_path,
    expand_env,
    find_config,
    find_state_path,
    is_section_name,
    load_settings,
    parse_settings,
)
from .models import (
    CONFIG_ENV,
    DEFAULT_TIME_SOURCES,
    NEVER,
    STATE_ENV,
    GcSettings,
    NotifySettings,
    PluginSpec,
    PolicySettings,
    ReadOnly,
    Regex,
    RegistrySettings,
    Settings,
    StateSettings,
    check_regex,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_TIME_SOURCES",
    "NEVER",
    "STATE_ENV",
    "GcSettings",
    "NotifySettings",
    "PluginSpec",
    "PolicySettings",
    "ReadOnly",
    "Regex",
    "RegistrySettings",
    "Settings",
    "StateSettings",
    "check_regex",
    "default_config_paths",
    "default_state_path",
    "expand_env",
    "find_config",
    "find_state_path",
    "is_section_name",
    "load_settings",
    "parse_settings",
]
