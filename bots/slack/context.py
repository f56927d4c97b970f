"""How listeners reach the service: ``create_app`` puts it into every request's context."""

from __future__ import annotations

from slack_bolt import BoltContext

from .service import SlackService

SERVICE_KEY = "regprune_service"


def service_from(context: BoltContext) -> SlackService:
    """The ``SlackService`` of the app that received this request."""
    service = context.get(SERVICE_KEY)
    if not isinstance(service, SlackService):
        raise RuntimeError(
            "no regprune service in the request context; build the app with create_app"
        )
    return service
