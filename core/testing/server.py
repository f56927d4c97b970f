"""A real CNCF Distribution registry on loopback, started and stopped by tests.

The registry binary is looked up with :func:`find_registry_binary` (in
``prerequisites``, with the htpasswd and certificate helpers); each
:class:`RegistryServer` owns one directory (``root``) holding its config, storage,
htpasswd file and log, and one process that is killed at the latest when the Python
process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from ..repository_names import REPOSITORY_NAME
from .prerequisites import (
    BINARY_ENV,
    BINARY_NAMES,
    RegistryNotFoundError,
    find_registry_binary,
    hash_htpasswd,
    make_self_signed_cert,
)

__all__ = [
    "BINARY_ENV",
    "BINARY_NAMES",
    "RegistryNotFoundError",
    "RegistryServer",
    "RegistryStartError",
    "find_registry_binary",
    "hash_htpasswd",
    "make_self_signed_cert",
    "notification_endpoint",
]

HTTP_SECRET = "regprune-testing-secret-not-for-production"
START_TIMEOUT = 10.0
_PORT_RETRIES = 5
_REPOSITORY_NAME = REPOSITORY_NAME  # Distribution's grammar (path components joined by "/")
_RESTARTABLE = frozenset(
    {"delete_enabled", "htpasswd", "token_auth", "readonly", "tls", "extra_config", "notify"}
)


class RegistryStartError(RuntimeError):
    """The registry process exited or did not answer in time; the message has its log tail."""


def _free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into a copy of ``base``, recursing into nested mappings."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def notification_endpoint(
    url: str,
    token: str | None = None,
    *,
    name: str = "regprune",
    timeout: str = "2s",
    threshold: int = 3,
    backoff: str = "200ms",
) -> dict[str, Any]:
    """One entry of the registry's ``notifications.endpoints`` (2.8 and 3.x alike):
    POST every event to ``url``, with ``Authorization: Bearer TOKEN`` when given.

    Distribution retries a failed delivery forever, in order; after ``threshold``
    failures in a row it waits ``backoff`` between attempts.  No media type or
    action is ignored, so blob events arrive too (the listener must skip them).
    """
    endpoint: dict[str, Any] = {
        "name": name,
        "url": url,
        "timeout": timeout,
        "threshold": threshold,
        "backoff": backoff,
    }
    if token is not None:
        endpoint["headers"] = {"Authorization": [f"Bearer {token}"]}
    return endpoint


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGKILL the child when its parent thread dies.

    libc is loaded here, in the parent, so the child only makes one system call
    between fork and exec. None where prctl is unavailable.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigkill = int(signal.SIGKILL)

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)

    return set_pdeathsig


_live: set[RegistryServer] = set()
_live_lock = threading.Lock()


@atexit.register
def _kill_all() -> None:
    """Kill every registry this process started and did not stop (atexit safety net)."""
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()


class RegistryServer:
    """A Distribution registry process serving ``root/storage`` on ``127.0.0.1``.

    Files under ``root``: ``config.yml`` (written as JSON, which is valid YAML),
    ``storage/``, ``htpasswd`` when basic auth is on, and ``registry.log`` (the
    process's stdout and stderr, appended across restarts).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        root: Path,
        *,
        delete_enabled: bool = True,
        htpasswd: dict[str, str] | None = None,
        token_auth: dict[str, Any] | None = None,
        readonly: bool = False,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        extra_config: dict[str, Any] | None = None,
        binary: str | None = None,
        notify: list[dict[str, Any]] | None = None,
    ) -> None:
        """Describe a registry; nothing is written or started until :meth:`start`.

        ``htpasswd`` maps user names to clear-text passwords (hashed with bcrypt on
        start). ``token_auth`` is the registry's ``auth.token`` section. ``tls`` is
        ``(certificate, key)``. ``notify`` is the registry's
        ``notifications.endpoints`` (see :func:`notification_endpoint`). ``extra_config`` is deep-merged into the generated
        config last, so it can override anything. ``port=None`` picks a free port on
        the first start and keeps it across restarts.
        """
        self.root = Path(root)
        self.delete_enabled = delete_enabled
        self.htpasswd = dict(htpasswd) if htpasswd is not None else None
        self.token_auth = dict(token_auth) if token_auth is not None else None
        self.readonly = readonly
        self.tls = tls
        self.extra_config = dict(extra_config) if extra_config else {}
        self.notify = [dict(e) for e in notify] if notify else []
        self._fixed_port = port is not None
        self.port: int = port or 0
        self.binary = binary or find_registry_binary()
        self.config_path = self.root / "config.yml"
        self.storage_path = self.root / "storage"
        self.log_path = self.root / "registry.log"
        self.htpasswd_path = self.root / "htpasswd"
        self._process: subprocess.Popen[bytes] | None = None
        self._check_auth()

    # -- addresses ---------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as it appears in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        """``https`` when TLS is configured, else ``http``."""
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:5000``."""
        return f"{self.scheme}://{self.host}"

    @property
    def pid(self) -> int | None:
        """The process id while running, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the registry process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- config --------------------------------------------------------------------

    def _check_auth(self) -> None:
        if self.htpasswd is not None and self.token_auth is not None:
            raise ValueError("a registry takes one auth method: htpasswd or token_auth, not both")

    def config(self) -> dict[str, Any]:
        """The registry configuration as a dict (what :meth:`start` writes)."""
        storage: dict[str, Any] = {
            "filesystem": {"rootdirectory": str(self.storage_path)},
            "delete": {"enabled": self.delete_enabled},
            "maintenance": {
                "uploadpurging": {"enabled": False},
                "readonly": {"enabled": self.readonly},
            },
        }
        http: dict[str, Any] = {"addr": self.host, "secret": HTTP_SECRET}
        if self.tls:
            cert, key = self.tls
            http["tls"] = {"certificate": str(cert), "key": str(key)}
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": storage,
            "http": http,
        }
        if self.htpasswd is not None:
            config["auth"] = {
                "htpasswd": {"realm": "regprune-test", "path": str(self.htpasswd_path)}
            }
        elif self.token_auth is not None:
            config["auth"] = {"token": copy.deepcopy(self.token_auth)}
        if self.notify:
            config["notifications"] = {"endpoints": copy.deepcopy(self.notify)}
        return _deep_merge(config, self.extra_config)

    def write_config(self) -> Path:
        """Write ``config.yml`` (and the htpasswd file) for the current settings."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage_path.mkdir(parents=True, exist_ok=True)
        if self.htpasswd is not None:
            lines = [f"{user}:{hash_htpasswd(pw)}\n" for user, pw in self.htpasswd.items()]
            self.htpasswd_path.write_text("".join(lines))
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")
        return self.config_path

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> RegistryServer:
        """Write the config, start the process and wait until ``/v2/`` answers.

        Any HTTP answer (401 included) counts as up. A port taken between choosing
        and binding is retried on another free port, unless the port was given.
        Raises :class:`RegistryStartError` with the tail of the log on failure.
        """
        if self.running:
            return self
        last_error: RegistryStartError | None = None
        # A port we chose can be retried on another one; a given (or kept) port only
        # gets a second chance, in case its previous owner is still letting go.
        attempts = 2 if self._fixed_port else _PORT_RETRIES
        for _attempt in range(attempts):
            if not self.port:
                self.port = _free_port()
            self.write_config()
            try:
                self._spawn_and_wait()
                return self
            except RegistryStartError as exc:
                last_error = exc
                if "address already in use" not in str(exc):
                    raise
                if self._fixed_port:
                    # Our own previous process may still be releasing it: wait a little.
                    time.sleep(0.2)
                else:
                    self.port = 0
        assert last_error is not None
        raise last_error

    def _spawn_and_wait(self) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            in_main_thread = threading.current_thread() is threading.main_thread()
            preexec = _pdeathsig_setter() if in_main_thread else None
            self._process = subprocess.Popen(
                [self.binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                # Dies with us even on SIGKILL; only from the main thread, since the
                # signal fires when the starting *thread* exits.
                preexec_fn=preexec,
            )
        with _live_lock:
            _live.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        verify: bool | ssl.SSLContext = True
        if self.tls:
            verify = ssl.create_default_context(cafile=str(self.tls[0]))
        with httpx.Client(trust_env=False, verify=verify, timeout=1.0) as client:
            while True:
                if self._process.poll() is not None:
                    self._forget()
                    raise RegistryStartError(
                        f"registry exited with code {self._process.returncode} on start\n"
                        + self.log_tail(since=log_offset)
                    )
                try:
                    client.get(f"{self.url}/v2/")
                    return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RegistryStartError(
                        f"registry did not answer on {self.url} within {START_TIMEOUT:.0f} s\n"
                        + self.log_tail(since=log_offset)
                    )
                time.sleep(0.02)

    def log_tail(self, lines: int = 30, *, since: int = 0) -> str:
        """The last ``lines`` lines of the registry log (from byte offset ``since``)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL the process, as if the registry died mid-operation; idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._forget()

    def restart(self, **changes: Any) -> RegistryServer:
        """Stop, apply ``changes`` to the settings, and start on the same port and storage.

        Accepts ``delete_enabled``, ``htpasswd``, ``token_auth``, ``readonly``, ``tls``,
        ``notify`` and ``extra_config`` (which replaces the previous extra config).
        """
        unknown = set(changes) - _RESTARTABLE
        if unknown:
            raise TypeError(f"restart() cannot change: {', '.join(sorted(unknown))}")
        self.stop()
        for key, value in changes.items():
            setattr(self, key, value)
        self._check_auth()
        # Keep the address: clients and image references already use it.
        self._fixed_port = bool(self.port) or self._fixed_port
        return self.start()

    # -- maintenance -------------------------------------------------------------------

    def gc_command(self, *flags: str) -> list[str]:
        """The ``garbage-collect`` command line for this registry's config."""
        return [self.binary, "garbage-collect", *flags, str(self.config_path)]

    def garbage_collect(self, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run :meth:`gc_command` and return its result (text output)."""
        return subprocess.run(
            self.gc_command(*flags),
            capture_output=True,
            text=True,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    @property
    def repositories_path(self) -> Path:
        """Where the filesystem driver keeps repositories (tags and links, not blobs)."""
        return self.storage_path / "docker" / "registry" / "v2" / "repositories"

    def clone_repository(self, source: str, targets: Iterable[str]) -> list[str]:
        """Copy a pushed repository on disk under other names, with no HTTP at all.

        Each target gets the same tags, manifests and layer links as ``source`` (the
        blobs themselves are shared storage), which makes a catalog of thousands of
        repositories in well under a second. Works with the registry running when no
        blob descriptor cache is configured (the default here); otherwise restart it.
        Returns the target names.
        """
        src = self.repositories_path / source
        if not src.is_dir():
            raise FileNotFoundError(f"no repository {source!r} in {self.repositories_path}")
        # Read the (tiny) link files once, then write them under every target.
        files: list[tuple[str, bytes]] = []
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = [d for d in dirnames if d != "_uploads"]
            relative = os.path.relpath(dirpath, src)
            files.extend(
                (os.path.join(relative, f), Path(dirpath, f).read_bytes()) for f in filenames
            )
        directories = sorted({os.path.dirname(path) for path, _ in files})
        created: list[str] = []
        for name in targets:
            if not _REPOSITORY_NAME.fullmatch(name):
                raise ValueError(f"invalid repository name {name!r}")
            target = self.repositories_path / name
            if target.exists():
                raise FileExistsError(f"repository {name!r} already exists")
            for directory in directories:
                os.makedirs(target / directory, exist_ok=True)
            for path, content in files:
                (target / path).write_bytes(content)
            created.append(name)
        return created

    def disk_usage(self) -> int:
        """Bytes used by the storage directory (sum of regular file sizes)."""
        total = 0
        for dirpath, _dirnames, filenames in os.walk(self.storage_path):
            for name in filenames:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RegistryServer {self.url} {state} root={str(self.root)!r}>"
