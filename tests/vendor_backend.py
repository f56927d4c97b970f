"""A registry back end for the tests, written as a third-party plugin would write it.

Type ``"vendor"``: it reads through the Distribution API (it is a ``RegistryClient``)
but deletes, and proves deletes are allowed, through a vendor's own HTTP API, like
Harbor or GitLab would have it:

- ``POST {vendor_url}/api/delete`` with ``{"repository": ..., "digest": ...}``:
  202 deleted, 404 already gone;
- ``POST {vendor_url}/api/check`` with ``{"repository": ...}``: 204 when deletes in
  that repository would be accepted, 403 when not.

It uses only what core offers every back end (``regprune.registry``,
``regprune.config.RegistrySettings``, ``regprune.errors``, ``hookimpl``); core does
not know it.  Tests register it with ``get_plugin_manager(extra_plugins=[module])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from regprune import hookimpl
from regprune.config import RegistrySettings
from regprune.errors import DeletesDisabled, RegistryError
from regprune.registry import BackendType, Credentials, RegistryClient, credentials_for

TYPE = "vendor"


class VendorOptions(BaseModel):
    """The keys of ``[registry.NAME]`` only the vendor type knows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor_url: str = Field(description="Base URL of the vendor's API.")
    vendor_timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds per call.")

    @field_validator("vendor_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value.rstrip("/")


class VendorBackend(RegistryClient):
    """Distribution API reads; deletes and the preflight through the vendor API."""

    def __init__(
        self,
        url: str,
        options: VendorOptions,
        *,
        credentials: Credentials | None = None,
        timeout: float = 30.0,
        concurrency: int = 8,
        retries: int = 3,
    ) -> None:
        super().__init__(
            url, credentials=credentials, timeout=timeout, concurrency=concurrency, retries=retries
        )
        self.vendor_url = options.vendor_url
        self._vendor = httpx.Client(base_url=options.vendor_url, timeout=options.vendor_timeout)

    def delete_manifest(self, repository: str, digest: str) -> str:
        answer = self._call("/api/delete", {"repository": repository, "digest": digest})
        if answer.status_code == 404:
            return "absent"
        if answer.status_code in (200, 202, 204):
            return "deleted"
        raise RegistryError(
            f"vendor API {self.vendor_url} answered {answer.status_code} to the delete of "
            f"{repository}@{digest}",
            status=answer.status_code,
        )

    def preflight(self, repositories: Iterable[str]) -> None:
        for repository in sorted(set(repositories)):
            answer = self._call("/api/check", {"repository": repository})
            if answer.status_code == 403:
                raise DeletesDisabled(
                    f"vendor API {self.vendor_url} refuses deletes in {repository}; "
                    "grant the robot account delete rights"
                )
            if answer.status_code != 204:
                raise RegistryError(
                    f"vendor API {self.vendor_url} answered {answer.status_code} to the "
                    f"delete check of {repository}",
                    status=answer.status_code,
                )

    def close(self) -> None:
        self._vendor.close()
        super().close()

    def _call(self, path: str, body: dict[str, str]) -> httpx.Response:
        try:
            return self._vendor.post(path, json=body)
        except httpx.HTTPError as exc:
            raise RegistryError(f"vendor API {self.vendor_url} failed: {exc}") from None


def open_vendor(name: str, settings: RegistrySettings, options: VendorOptions) -> VendorBackend:
    return VendorBackend(
        settings.url,
        options,
        credentials=credentials_for(settings),
        timeout=settings.timeout,
        concurrency=settings.concurrency,
        retries=settings.retries,
    )


@hookimpl
def register_registry_backends(register: Callable[[str, BackendType[Any]], None]) -> None:
    register(TYPE, BackendType(create=open_vendor, options=VendorOptions))
