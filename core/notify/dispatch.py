"""Building the configured notifiers and handing them a report, never failing the run.

``build_notifiers`` runs when the config is loaded, so a bad ``[notify.NAME]`` is a
config error (exit 2) before anything is done.  ``dispatch`` sends one report to
every notifier that wants it, each in a thread of its own, and waits at most
``DEADLINE`` seconds in all: a receiver that hangs costs the run that much, once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..hookcalls import describe_exception, plugin_error
from . import Notifier
from .http import DeliveryError
from .report import RunReport

if TYPE_CHECKING:
    from ..config import NotifySettings
    from ..plugin_manager import Catalog

DEADLINE = 30.0  # seconds all notifiers together may take after a command ends
log = logging.getLogger("regprune.notify")


@dataclass(frozen=True)
class ConfiguredNotifier:
    """One ``[notify.NAME]``: its table and the notifier built from it."""

    name: str
    settings: NotifySettings
    notifier: Notifier

    def wants(self, report: RunReport) -> RunReport | None:
        """The report as this notifier gets it (its policies only), or None."""
        if report.event not in self.settings.commands:
            return None
        scoped = report.for_policies(list(self.settings.policies))
        if scoped is None or not scoped.matches(list(self.settings.on)):
            return None
        return scoped


def build_notifiers(
    sections: Mapping[str, NotifySettings], catalog: Catalog
) -> list[ConfiguredNotifier]:
    """A notifier for each ``[notify.NAME]``; a bad ``use`` or option is a ConfigError."""
    built = []
    for name, section in sections.items():
        where = f"notify.{name}"
        notifier = catalog.build(
            "notifier", section.use, section.options, where, name_key=f"{where}.use"
        )
        if not isinstance(notifier, Notifier):
            raise plugin_error(
                catalog.owner("notifier", section.use),
                f"its notifier factory {section.use!r}",
                f"it returned {type(notifier).__name__}, which has no send(report)",
            )
        built.append(ConfiguredNotifier(name, section, notifier))
    return built


def dispatch(
    report: RunReport, notifiers: list[ConfiguredNotifier], *, deadline: float = DEADLINE
) -> dict[str, str | None]:
    """Send ``report`` to each notifier that wants it; ``{name: None or the problem}``.

    Every problem is logged as one warning line; nothing raises.
    """
    outcomes: dict[str, str | None] = {}
    threads: list[tuple[ConfiguredNotifier, threading.Thread]] = []
    for configured in notifiers:
        scoped = configured.wants(report)
        if scoped is None:
            continue

        def send(configured: ConfiguredNotifier = configured, scoped: RunReport = scoped) -> None:
            try:
                configured.notifier.send(scoped)
                outcomes[configured.name] = None
            except DeliveryError as exc:
                outcomes[configured.name] = " ".join(str(exc).split())
            except BaseException as exc:  # a notifier must never end the run
                outcomes[configured.name] = describe_exception(exc)

        # Daemon: a notifier stuck past the deadline does not keep the process alive.
        thread = threading.Thread(target=send, name=f"notify-{configured.name}", daemon=True)
        thread.start()
        threads.append((configured, thread))
    end = time.monotonic() + deadline  # shared: the notifiers run at once
    for configured, thread in threads:
        thread.join(timeout=max(0.0, end - time.monotonic()))
        if thread.is_alive():
            outcomes[configured.name] = f"no answer within {deadline:g}s"
    for configured, _ in threads:
        problem = outcomes.get(configured.name)
        if problem is not None:
            log.warning(
                "notify.%s (%s): the report was not delivered: %s; the outcome of the run "
                "is unchanged",
                configured.name,
                configured.settings.use,
                problem,
            )
    return outcomes
