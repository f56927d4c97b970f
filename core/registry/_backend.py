"""Registry back ends: what scan, apply and gc need from a registry, as a protocol.

A ``[registry.NAME]`` section picks its back end with ``type`` (``"distribution"``,
the built-in ``RegistryClient``, by default).  A plugin adds a type through the
``register_registry_backends`` hook::

    @hookimpl
    def register_registry_backends(register):
        register("vendor", BackendType(create=VendorBackend.open, options=VendorOptions))

``options`` is a pydantic model for the keys of ``[registry.NAME]`` that only this
type knows (unknown keys are errors when the model forbids extras, as it should);
``create(name, settings, options)`` builds the back end for one registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError, ConfigProblems

if TYPE_CHECKING:
    from ..config import RegistrySettings
    from ._answers import Descriptor
    from ._client import Manifest

__all__ = [
    "DEFAULT_TYPE",
    "BackendType",
    "BackendTypes",
    "NoOptions",
    "RegistryBackend",
    "SupportsReferrers",
    "backend_options",
    "backend_problems",
    "check_backend_options",
    "referrers_of",
]

DEFAULT_TYPE = "distribution"

T = TypeVar("T")
R = TypeVar("R")
OptionsT = TypeVar("OptionsT", bound=BaseModel)  # a back end type's options model


@runtime_checkable
class RegistryBackend(Protocol):
    """One registry, as scan, apply and gc use it.  Implementations are thread-safe:
    ``map`` calls the reading methods from several threads at once.

    Reading (scan, and apply's re-checks) goes through ``catalog``, ``tags``,
    ``get_manifest``, ``head_manifest`` and ``get_blob``, and ``referrers`` when the
    back end has it (optional, see `SupportsReferrers`: without it a registry is
    treated as not serving the referrers API); an apply calls ``preflight``
    once before anything is deleted and ``delete_manifest`` once per item (through
    the ``delete_manifest`` hook, whose built-in calls it).  Errors are
    ``regprune.errors.RegpruneError`` subclasses with a one-line message.

    Optional, and so not part of the protocol (back ends written before them still
    meet it): ``detect_version()``, ``delete_tag(repository, tag)`` and
    ``untag_by_overwrite(repository, tag, *, started=None)``; see ``_version.py`` and
    ``_tag_removal.py``.  Without them the version is unknown and untag is refused.

    Optional, not part of the protocol: ``get_manifests(references)`` and
    ``get_blobs(references)`` (lists of ``(repository, reference)``; results in order,
    ``None`` for one that does not exist).  A back end that has them gets the scan's
    tags and config blobs in one call each (``RegistryClient`` pipelines them);
    without them the scan calls ``get_manifest`` / ``get_blob`` through ``map``.
    """

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (shown by ``--verbose``)."""
        ...

    @property
    def requests_by_method(self) -> Mapping[str, int]:
        """``request_count`` by HTTP method."""
        ...

    def catalog(self) -> list[str]:
        """Every repository name."""
        ...

    def tags(self, repository: str) -> list[str]:
        """Every tag of a repository; ``[]`` when the repository does not exist."""
        ...

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """A manifest by tag or digest, its digest verified against its bytes; raises
        ``ManifestNotFound`` when there is none."""
        ...

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest resolves to now, or None when it does not exist."""
        ...

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A blob (an image config), its digest verified."""
        ...

    def delete_manifest(self, repository: str, digest: str) -> str:
        """Delete a manifest by digest (and every tag on it): ``"deleted"``, or
        ``"absent"`` when it was already gone."""
        ...

    def preflight(self, repositories: Iterable[str]) -> None:
        """Prove, deleting nothing, that deletes in these repositories would be accepted;
        raise (``DeletesDisabled``, ``MissingScope``, ...) when they would not."""
        ...

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, overlapped as the registry allows, in order."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class SupportsReferrers(Protocol):
    """The optional part of a back end: the OCI 1.1 referrers API."""

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """Descriptors of the manifests whose ``subject`` is ``digest`` (filtered by
        ``artifact_type`` when given), or None when the registry does not serve the
        API.  Once a registry answered "not served", it is not asked again."""
        ...


def referrers_of(
    backend: RegistryBackend, repository: str, digest: str
) -> list[Descriptor] | None:
    """``backend.referrers(repository, digest)``; None (not served) for a back end without it."""
    method = getattr(backend, "referrers", None)
    if method is None:
        return None
    answer = method(repository, digest)
    return None if answer is None else list(answer)


class NoOptions(BaseModel):
    """The options of a back end type that has none: every extra key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class BackendType(Generic[OptionsT]):
    """A registered kind of registry: how to build one, and the model of its own keys."""

    create: Callable[[str, RegistrySettings, OptionsT], RegistryBackend]
    """``create(name, settings, options)``: the back end for ``[registry.NAME]``."""
    options: type[OptionsT]
    """Pydantic model validating the keys of ``[registry.NAME]`` only this type knows."""
    description: str = ""


# Any: the catalog holds types whose options models differ; each is used with its own.
BackendTypes = Mapping[str, BackendType[Any]]


def _where(name: str, loc: Sequence[int | str]) -> str:
    return ".".join(["registry", name, *(str(part) for part in loc)])


def backend_options(name: str, settings: RegistrySettings, backends: BackendTypes) -> BaseModel:
    """Validate the type-specific keys of ``[registry.NAME]``; ConfigError naming the key.

    Errors read ``registry.NAME.KEY: what is wrong``; an unknown ``type`` lists the
    types installed plugins provide.
    """
    kind = settings.type
    if kind not in backends:
        known = ", ".join(sorted(backends)) or "none installed"
        raise ConfigError(
            f"registry.{name}.type: unknown registry type {kind!r} (known types: {known}); "
            "install the plugin that provides it or fix the spelling"
        )
    model = backends[kind].options
    try:
        return model.model_validate(settings.options)
    except ValidationError as exc:
        raise ConfigProblems(_problems(name, kind, exc)) from None
    except ValueError as exc:  # a model validator that raised outside pydantic's wrapping
        raise ConfigError(f"registry.{name}: {' '.join(str(exc).split())}") from None


def _problems(name: str, kind: str, exc: ValidationError) -> list[str]:
    """Each problem of a registry's options, ``registry.NAME.key: message``, once each."""
    parts: list[str] = []
    for error in exc.errors():
        where = _where(name, error["loc"])
        if error["type"] == "extra_forbidden":
            message = (
                f"unknown key for a registry of type {kind!r} (check the spelling; "
                "see docs/configuration.md)"
            )
        elif error["type"] == "missing":
            message = f"required key is missing (registry type {kind!r} needs it)"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(" ".join(f"{where}: {message}".split()))  # one line, whatever plugins say
    return list(dict.fromkeys(parts))


def check_backend_options(
    registries: Mapping[str, RegistrySettings], backends: BackendTypes
) -> None:
    """Validate every registry's ``type`` and its options (no request is made)."""
    problems = backend_problems(registries, backends)
    if problems:
        raise ConfigError("; ".join(problems))


def backend_problems(
    registries: Mapping[str, RegistrySettings], backends: BackendTypes
) -> list[str]:
    """Every problem of every registry's ``type`` and options, one line each."""
    problems: list[str] = []
    for name, settings in registries.items():
        try:
            backend_options(name, settings, backends)
        except ConfigProblems as exc:
            problems.extend(exc.problems)
        except ConfigError as exc:
            problems.append(exc.message)
    return problems
