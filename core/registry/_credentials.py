"""Credentials for a registry: from the config, or from Docker's config.json.

Docker looks credentials up in this order, and so do we: ``credHelpers[host]`` (an
external ``docker-credential-<name>`` program), then ``credsStore`` (the same kind of
program for every registry), then ``auths[host]`` in the file itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..bounded_read import DOCKER_CONFIG_LIMIT, Refused, capture, read_regular_file
from ..errors import ConfigError, UsageError

if TYPE_CHECKING:
    from ..config import RegistrySettings

__all__ = ["Credentials", "credentials_for", "docker_config_path", "from_docker_config"]

# Docker Hub's credentials are stored under its v1 index address.
_HUB_ALIASES = {"registry-1.docker.io": "index.docker.io", "docker.io": "index.docker.io"}
_HELPER_TIMEOUT = 60.0  # a helper may wait for a keychain to be unlocked


@dataclass(frozen=True)
class Credentials:
    """A username and password (or token) for basic auth and token servers."""

    username: str
    password: str = field(repr=False)  # never in logs or tracebacks


def credentials_for(settings: RegistrySettings) -> Credentials | None:
    """The credentials to use for a registry, or None for anonymous access.

    ``username``/``password`` from the settings win; otherwise the Docker config
    (``settings.docker_config``, ``$DOCKER_CONFIG/config.json`` or
    ``~/.docker/config.json``) is consulted.  A missing file means anonymous.
    """
    if settings.username:
        return Credentials(settings.username, settings.password or "")
    return from_docker_config(
        docker_config_path(settings.docker_config), registry_host(settings.url)
    )


def docker_config_path(explicit: str | None = None) -> Path:
    """The Docker config.json to read: explicit path (file or directory), $DOCKER_CONFIG, ~/.docker."""
    if explicit:
        path = Path(explicit).expanduser()
        return path / "config.json" if path.is_dir() else path
    directory = os.environ.get("DOCKER_CONFIG")
    base = Path(directory).expanduser() if directory else Path.home() / ".docker"
    return base / "config.json"


def registry_host(url: str) -> str:
    """``host[:port]`` of a registry URL, lower-cased, as Docker keys its credentials."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{host}:{parts.port}" if parts.port and parts.port != default else host


def _normalize_key(key: str) -> str:
    """A config.json key (``host:port``, ``https://host:port``, ``https://host/v1/``) as host[:port]."""
    return registry_host(key.strip())


def _find_key(mapping: dict[str, Any], host: str) -> str | None:
    wanted = {host, _HUB_ALIASES.get(host, host)}
    for key in mapping:
        if _normalize_key(key) in wanted:
            return key
    return None


def from_docker_config(path: Path, host: str) -> Credentials | None:
    """Credentials for ``host`` from a Docker config file; None if there are none."""
    try:
        data = read_regular_file(
            str(path),
            DOCKER_CONFIG_LIMIT,
            "point docker_config (or $DOCKER_CONFIG) at a Docker config.json",
        )
        text = data.decode("utf-8")
    except FileNotFoundError:
        return None
    except Refused as exc:
        raise ConfigError(f"docker config {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read docker config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"docker config {path} is not UTF-8 text; fix or remove it") from None
    try:
        config = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"docker config {path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix or remove it"
        ) from None
    if not isinstance(config, dict):
        raise UsageError(f"docker config {path} is not a JSON object; fix or remove it")

    auths: dict[str, Any] = config["auths"] if isinstance(config.get("auths"), dict) else {}
    helpers: dict[str, Any] = (
        config["credHelpers"] if isinstance(config.get("credHelpers"), dict) else {}
    )

    helper_key = _find_key(helpers, host)
    if helper_key is not None:
        return _run_helper(str(helpers[helper_key]), helper_key, path)

    auth_key = _find_key(auths, host)
    store = config.get("credsStore")
    if store:
        # docker login stores under the address it was given; pass that exact key.
        found = _run_helper(str(store), auth_key or host, path)
        if found is not None:
            return found

    if auth_key is None:
        return None
    return _from_auth_entry(auths[auth_key], auth_key, path)


def _from_auth_entry(entry: Any, key: str, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(encoded, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(
                f"docker config {path}: auths[{key!r}].auth is not base64 'user:password'; "
                f"run docker login {key} again"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise UsageError(
                f"docker config {path}: auths[{key!r}].auth has no ':'; run docker login {key} again"
            )
        return Credentials(username, password)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password") or ""))
    if entry.get("identitytoken"):
        raise UsageError(
            f"docker config {path}: {key} has only an identity token, which regprune does not "
            "support; set username and password for this registry in the regprune config"
        )
    return None


def _run_helper(name: str, server: str, path: Path) -> Credentials | None:
    """Ask ``docker-credential-<name> get`` for ``server``; None when it has nothing stored."""
    program = f"docker-credential-{name}"
    try:
        result = capture(
            [program, "get"],
            input=server.encode(),
            timeout=_HELPER_TIMEOUT,
            limit=DOCKER_CONFIG_LIMIT,
        )
    except FileNotFoundError:
        raise UsageError(
            f"docker credential helper {program} (named in {path}) is not installed; install it "
            "or set username and password for this registry in the regprune config"
        ) from None
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"docker credential helper {program} did not answer within {_HELPER_TIMEOUT:.0f}s "
            f"for {server}; check that it works with: echo {server} | {program} get"
        ) from None
    except Refused as exc:
        raise UsageError(f"docker credential helper {program} {exc} for {server}") from None
    except OSError as exc:
        raise UsageError(f"cannot run docker credential helper {program}: {exc.strerror}") from None

    output = (result.stdout or result.stderr).decode("utf-8", "replace").strip()
    if result.returncode != 0:
        # The protocol's answer for "nothing stored": not an error, just anonymous.
        if "credentials not found" in output.lower():
            return None
        first = output.splitlines()[0] if output else f"exit status {result.returncode}"
        raise UsageError(
            f"docker credential helper {program} failed for {server}: {first}; "
            f"run docker login {server} or set username and password in the regprune config"
        )
    try:
        data = json.loads(result.stdout)
        username, secret = str(data.get("Username") or ""), str(data.get("Secret") or "")
    except (json.JSONDecodeError, AttributeError):
        raise UsageError(
            f"docker credential helper {program} gave an answer that is not JSON for {server}"
        ) from None
    if not secret:
        return None
    if username == "<token>":
        raise UsageError(
            f"docker credential helper {program} holds an identity token for {server}, which "
            "regprune does not support; set username and password in the regprune config"
        )
    return Credentials(username, secret)
