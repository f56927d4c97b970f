"""``regprune listen`` and its ``[listen]`` section: image use from the registry's
notifications.

The section registers the way a front end's does (core validates it and names key
paths in errors); the command starts `regprune.usage.server.Listener`.  Light at
import: the HTTP server is imported only when the command runs.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import typer

from regprune import hookimpl
from regprune.errors import UsageError
from regprune.frontends import FrontEnd
from regprune.usage.settings import NAME, ListenSettings, listen_settings

FRONT_END = FrontEnd(
    name=NAME,
    settings=ListenSettings,
    title="Listener",
    description="Records pulls and pushes from the registry's notifications.",
)


@hookimpl
def register_front_ends(register: Callable[[FrontEnd], None]) -> None:
    """Register the ``[listen]`` settings."""
    register(FRONT_END)


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    """Register ``regprune listen``."""

    @cli.command("listen", short_help="Record pulls and pushes from registry notifications.")
    def listen(
        ctx: typer.Context,
        host: str | None = typer.Option(
            None, "--host", help="Address to bind (default: [listen] host, else 127.0.0.1)."
        ),
        port: int | None = typer.Option(
            None,
            "--port",
            min=0,
            max=65535,
            help="Port to bind (default: [listen] port, else 5002; 0 picks a free one).",
        ),
    ) -> None:
        """Receive the registry's notifications on POST /events and record image use.

        The registry sends them with 'Authorization: Bearer TOKEN' ([listen] token);
        events on POST /events belong to [listen] registry, those on
        POST /events/NAME to [registry.NAME].  Runs until SIGTERM or Ctrl-C.
        """
        from regprune.cli.context import get_context
        from regprune.usage.server import Listener

        if host is not None and not host.strip():
            raise UsageError(
                "--host: empty address; leave --host out for [listen] host (else "
                "127.0.0.1), or give one, e.g. 0.0.0.0 for every interface"
            )
        cli_context = get_context(ctx)
        settings = cli_context.settings()
        section = listen_settings(settings)
        if not section.token or not section.token.strip():
            what = "is not set" if not section.token else "is only whitespace"
            raise UsageError(
                f'[listen] token {what}: add token = "${{REGPRUNE_LISTEN_TOKEN}}" to the '
                "[listen] section and send the same value from the registry"
            )
        names = list(settings.registry)
        if section.registry is not None and section.registry not in settings.registry:
            raise UsageError(
                f"[listen] registry {section.registry!r} is not a configured registry "
                f"(configured: {', '.join(names) or 'none'})"
            )
        state = cli_context.state()
        bind_host = section.host if host is None else host
        bind_port = section.port if port is None else port
        try:
            listener = Listener(state, section, names, host=bind_host, port=bind_port)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise UsageError(f"cannot listen on {bind_host}:{bind_port}: {reason or exc}") from None
        listener.run_until_signalled()
