"""The environment the GC commands run in: minimal unless configured otherwise.

regprune's own environment holds its secrets (registry passwords referenced as
``${REGPRUNE_...}``, Slack tokens), and Distribution reads every ``REGISTRY_*``
variable as an override of its config file: a ``registry garbage-collect`` that
inherited ``REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`` would sweep another
storage than its config names.  So the ``before``, GC and ``after`` commands get
only what a command needs to find programs, files and a locale, plus what
``[registry.NAME.gc]`` passes or sets (``pass_env``, ``env``), unless
``inherit_env = true``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .config import GcSettings

BASE_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ"})
"""Inherited by every GC command when set, besides the ``LC_*`` locale variables."""


def _minimal(name: str) -> bool:
    return name in BASE_NAMES or name.startswith("LC_")


def gc_environment(gc: GcSettings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables for the GC commands of ``gc``, taken from ``environ`` (default
    ``os.environ``): the minimal set and ``pass_env`` (or everything, with
    ``inherit_env``), then ``env`` on top."""
    source = os.environ if environ is None else environ
    passed = set(gc.pass_env)
    env = {
        name: value
        for name, value in source.items()
        if gc.inherit_env or _minimal(name) or name in passed
    }
    env.update(gc.env)
    return env
