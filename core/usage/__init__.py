"""Image use from the registry's notifications: ``regprune listen``.

- ``events``   (`parse_envelope`): Distribution's envelopes into `UsageEvent`s
- ``writer``   (`GroupWriter`): group commit, one transaction for concurrent deliveries
- ``server``   (`Listener`): the HTTP endpoint, sessions, heartbeat, log lines
- ``settings`` (`ListenSettings`): the ``[listen]`` config section

The events are stored by ``state.usage``; what selects by them reads it from there.
"""

from __future__ import annotations

from .events import ENVELOPE_TYPE, EnvelopeError, Parsed, parse_envelope
from .settings import NAME, ListenSettings, listen_settings

__all__ = [
    "ENVELOPE_TYPE",
    "NAME",
    "EnvelopeError",
    "ListenSettings",
    "Parsed",
    "listen_settings",
    "parse_envelope",
]
