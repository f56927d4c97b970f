"""Calling plugin hooks so that one plugin's fault never corrupts the record.

pluggy calls a hook's implementations in one loop: the first exception stops the
loop, skips every implementation after it and names no plugin.  For a deletion
tool that is wrong twice over: a third-party ``item_deleted`` that raises would skip
the built-in audit log, and a traceback from deep inside a plugin tells nobody
which plugin to block.  So regprune calls its hooks one implementation at a time:

- :func:`notify` (event hooks): every implementation runs, built-ins first; a
  third-party failure is logged, naming the plugin and the hook, and never stops
  the work or the other listeners.  A built-in failure (the audit log cannot be
  written) is raised once all listeners ran.
- :func:`first_result` (``firstresult`` hooks such as ``delete_manifest``): the
  implementations are asked in pluggy's order until one answers; an exception
  becomes a :class:`PluginError` naming the plugin and the hook.
- :func:`call_each` (registration hooks): each implementation runs; a failure is a
  :class:`PluginError` naming the plugin, or with ``tolerate`` a logged warning.

Wrappers (``hookwrapper=True`` / ``wrapper=True``) are not supported on these hooks:
:func:`check_no_wrappers` refuses such a plugin when it is registered.

``REGPRUNE_TRACE_HOOKS=1`` writes one ``trace:`` line to stderr per implementation
called: the hook, the plugin, a short summary of its arguments, how long it took
and what it answered.  It lives here and not in pluggy's ``add_hookcall_monitoring``
because regprune calls implementations one at a time, past pluggy's hook caller.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from .errors import RegpruneError, UsageError

if TYPE_CHECKING:
    from .state import State

__all__ = [
    "PluginError",
    "call_each",
    "check_no_wrappers",
    "describe_exception",
    "first_result",
    "notify",
    "plugin_error",
]

log = logging.getLogger("regprune.plugins")

TRACE_ENV = "REGPRUNE_TRACE_HOOKS"


class PluginError(RegpruneError):
    """A plugin raised or answered something regprune cannot use (exit code 1)."""


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` on one line (the message alone for regprune's own errors)."""
    if isinstance(exc, RegpruneError):
        return exc.message
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def plugin_error(plugin: str, hook: str, exc: BaseException | str) -> PluginError:
    """The one-line error for a plugin that failed in a hook (or a selector's method)."""
    detail = exc if isinstance(exc, str) else describe_exception(exc)
    return PluginError(
        f"plugin {plugin} failed in {hook}: {detail} (set REGPRUNE_BLOCK_PLUGINS={plugin} "
        "to run without it)"
    )


def _impls(manager: pluggy.PluginManager, hook: str) -> list[pluggy.HookImpl]:
    """A hook's implementations in the order pluggy would call them."""
    return list(reversed(getattr(manager.hook, hook).get_hookimpls()))


def tracing() -> bool:
    """Whether ``REGPRUNE_TRACE_HOOKS`` asks for a trace line per hook call."""
    return os.environ.get(TRACE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def summarize(value: object, limit: int = 40) -> str:
    """A short, one-line picture of a hook argument or answer for a trace line."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 4] + "...'"
    kind = type(value).__name__
    ident = getattr(value, "id", None)
    if isinstance(ident, str):  # a plan
        return f"{kind}({ident})"
    digest = getattr(value, "digest", None)
    if isinstance(digest, str):  # an image or a plan item
        return f"{kind}({getattr(value, 'repository', '')}@{digest[:19]})"
    if isinstance(value, list | tuple | set | frozenset | dict):
        return f"{kind}[{len(value)}]"
    name = getattr(value, "__name__", None)
    if callable(value) and isinstance(name, str):
        return f"{name}()"
    return kind


def _trace(
    hook: str, impl: pluggy.HookImpl, arguments: dict[str, Any], seconds: float, outcome: str
) -> None:
    shown = ", ".join(f"{name}={summarize(value)}" for name, value in arguments.items())
    sys.stderr.write(
        f"trace: {hook} {impl.plugin_name}({shown}) {seconds * 1000:.1f} ms {outcome}\n"
    )


def _call(hook: str, impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
    # Like pluggy: each implementation receives only the arguments it declares,
    # including those it gives a default.
    extra = {name: kwargs[name] for name in impl.kwargnames if name in kwargs}
    if not tracing():
        return impl.function(*(kwargs[name] for name in impl.argnames), **extra)
    arguments = {name: kwargs[name] for name in impl.argnames} | extra
    started = time.perf_counter()
    try:
        answer = impl.function(*(kwargs[name] for name in impl.argnames), **extra)
    except BaseException as exc:
        _trace(hook, impl, arguments, time.perf_counter() - started, f"raised {type(exc).__name__}")
        raise
    _trace(hook, impl, arguments, time.perf_counter() - started, f"-> {summarize(answer)}")
    return answer


def _is_builtin(impl: pluggy.HookImpl) -> bool:
    from .plugin_manager import is_builtin  # import cycle: the manager imports us

    return is_builtin(impl.plugin_name)


def notify(manager: pluggy.PluginManager, hook: str, **kwargs: Any) -> None:
    """Call every implementation of an event hook, built-ins (the audit log) first.

    A third-party plugin's exception is logged as one warning naming the plugin and
    the hook; the others still run and the caller carries on.  The first built-in
    failure is raised after every implementation ran.
    """
    impls = _impls(manager, hook)
    ordered = [impl for impl in impls if _is_builtin(impl)] + [
        impl for impl in impls if not _is_builtin(impl)
    ]
    builtin_failure: BaseException | None = None
    for impl in ordered:
        try:
            _call(hook, impl, kwargs)
        except Exception as exc:
            if _is_builtin(impl):
                builtin_failure = builtin_failure or exc
                continue
            log.warning(
                "plugin %s failed in %s: %s; regprune carried on without it",
                impl.plugin_name,
                hook,
                describe_exception(exc),
            )
    if builtin_failure is not None:
        raise builtin_failure


def notify_event(manager: pluggy.PluginManager, hook: str, state: State, **kwargs: Any) -> None:
    """``notify`` for an event hook that takes the state DB and its audit log (``state``
    and ``audit``), after ``kwargs``."""
    notify(manager, hook, **kwargs, state=state, audit=state.audit_log)


def first_result(manager: pluggy.PluginManager, hook: str, **kwargs: Any) -> tuple[str | None, Any]:
    """``(plugin name, answer)`` of the first implementation that answers non-None.

    Exceptions become ``PluginError`` naming the plugin and the hook, except
    regprune's own errors (a registry refusing a delete), which pass through as they
    are: they already say what is wrong.  ``(None, None)`` when nobody answered.
    """
    for impl in _impls(manager, hook):
        try:
            answer = _call(hook, impl, kwargs)
        except RegpruneError:
            raise
        except Exception as exc:
            raise plugin_error(impl.plugin_name, hook, exc) from exc
        if answer is not None:
            return impl.plugin_name, answer
    return None, None


def call_each(
    manager: pluggy.PluginManager,
    hook: str,
    *,
    tolerate: bool = False,
    bind: Callable[[str], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> None:
    """Call every implementation; ``bind(plugin_name)`` may add per-plugin arguments.

    A failure is a ``PluginError`` naming the plugin (``UsageError`` passes through),
    or with ``tolerate`` a logged warning after which the other plugins still run.
    """
    for impl in _impls(manager, hook):
        arguments = {**kwargs, **(bind(impl.plugin_name) if bind else {})}
        try:
            _call(hook, impl, arguments)
        except UsageError:
            if not tolerate:
                raise
            log.warning("plugin %s failed in %s", impl.plugin_name, hook)
        except Exception as exc:
            if not tolerate:
                raise plugin_error(impl.plugin_name, hook, exc) from exc
            log.warning(
                "plugin %s failed in %s: %s; the rest of regprune works without it",
                impl.plugin_name,
                hook,
                describe_exception(exc),
            )


def check_no_wrappers(manager: pluggy.PluginManager, plugin: object) -> None:
    """Refuse a plugin that wraps one of regprune's hooks (they are called one by one)."""
    name = manager.get_name(plugin) or repr(plugin)
    for caller in manager.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                raise UsageError(
                    f"plugin {name!r} wraps the hook {caller.name!r}; regprune calls each "
                    "implementation on its own, so wrappers are not supported (implement the "
                    "hook directly)"
                )
