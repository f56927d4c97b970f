"""An independent check that a registry still serves every image it lists.

After a garbage collection (or any deletion) the question is not what regprune
thinks it kept but whether a client can still pull it. :func:`assert_all_pull`
lists every repository and tag through the registry's API and copies each tag
with `skopeo` (a client that shares no code with regprune) to a scratch
directory: ``skopeo copy --all`` fetches the manifest, every platform manifest of
an index and every blob of each, and checks every digest. A deleted platform
manifest, layer or config blob makes that tag fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

__all__ = ["PulledImage", "SkopeoNotFoundError", "assert_all_pull", "find_skopeo", "pull_all"]

SKOPEO_ENV = "REGPRUNE_SKOPEO_BIN"
_PROXY = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class SkopeoNotFoundError(RuntimeError):
    """No ``skopeo`` binary could be found; the message says how to install one."""


@dataclass
class PulledImage:
    """One tag as skopeo copied it (or failed to)."""

    reference: str
    """``repository:tag``."""
    ok: bool
    manifests: int = 0
    """Manifests fetched: 1 for an image, 1 + its platforms for an index."""
    blobs: int = 0
    """Config and layer blobs fetched (digest-checked)."""
    error: str = ""


def find_skopeo() -> str:
    """The ``skopeo`` binary: ``$REGPRUNE_SKOPEO_BIN``, else ``skopeo`` on PATH."""
    configured = os.environ.get(SKOPEO_ENV)
    found = shutil.which(configured or "skopeo")
    if found is None:
        raise SkopeoNotFoundError(
            f"skopeo not found ({'$' + SKOPEO_ENV + '=' + configured if configured else 'PATH'});"
            " the pull check needs it: `bash scripts/ensure-skopeo.sh` as root, or"
            " `apt-get install skopeo` (Debian/Ubuntu)"
        )
    return found


def _pages(client: httpx.Client, url: str, key: str) -> list[str]:
    """Every entry of a paginated list endpoint (``_catalog`` or ``tags/list``)."""
    items: list[str] = []
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        response.raise_for_status()
        items.extend(response.json().get(key) or [])
        link = response.links.get("next", {}).get("url")
        next_url = str(response.url.join(link)) if link else None
    return items


def list_tags(
    registry_url: str,
    *,
    auth: tuple[str, str] | None = None,
    repositories: Iterable[str] | None = None,
) -> list[str]:
    """``repository:tag`` of every tag (of ``repositories``, default all), through the API."""
    base = registry_url.rstrip("/")
    with httpx.Client(auth=auth, trust_env=False, verify=False, timeout=30.0) as client:
        names = (
            list(repositories)
            if repositories is not None
            else _pages(client, f"{base}/v2/_catalog?n=1000", "repositories")
        )
        return [
            f"{name}:{tag}"
            for name in sorted(names)
            for tag in sorted(_pages(client, f"{base}/v2/{name}/tags/list?n=1000", "tags"))
        ]


def _copy(
    skopeo: str, host: str, reference: str, scratch: Path, creds: Sequence[str]
) -> PulledImage:
    target = Path(tempfile.mkdtemp(dir=scratch))
    env = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY}
    try:
        completed = subprocess.run(
            [
                skopeo,
                "--insecure-policy",  # no signature policy file needed
                "copy",
                "--all",  # every platform of an index, not only this machine's
                "--src-tls-verify=false",  # loopback registries: plain HTTP or self-signed
                *creds,
                f"docker://{host}/{reference}",
                f"dir:{target}",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=300,
            check=False,
        )
        files = [path.name for path in target.iterdir()]
    finally:
        shutil.rmtree(target, ignore_errors=True)
    if completed.returncode != 0:
        detail = " ".join((completed.stderr or completed.stdout).split())
        return PulledImage(reference, False, error=detail[-500:])
    manifests = sum(1 for name in files if name.endswith("manifest.json"))
    blobs = sum(1 for name in files if "." not in name and name != "version")
    return PulledImage(reference, True, manifests=manifests, blobs=blobs)


def pull_all(
    registry_url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    repositories: Iterable[str] | None = None,
    workers: int = 2,
) -> list[PulledImage]:
    """Copy every tag of the registry with skopeo; one :class:`PulledImage` per tag."""
    skopeo = find_skopeo()
    auth = (username, password or "") if username else None
    creds = ["--src-creds", f"{username}:{password or ''}"] if username else []
    references = list_tags(registry_url, auth=auth, repositories=repositories)
    host = urlsplit(registry_url).netloc
    with (
        tempfile.TemporaryDirectory(prefix="regprune-pull-") as scratch,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        return list(
            pool.map(lambda ref: _copy(skopeo, host, ref, Path(scratch), creds), references)
        )


def assert_all_pull(
    registry_url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    repositories: Iterable[str] | None = None,
    expect: Iterable[str] | None = None,
) -> list[PulledImage]:
    """Fail (AssertionError) unless every tag pulls completely with skopeo.

    ``expect`` names ``repository:tag`` references that must be among those listed
    (a tag that vanished is a failure too, not a pass).  Returns the pulled images,
    e.g. to check that an index brought its platforms (``manifests``).
    """
    pulled = pull_all(registry_url, username=username, password=password, repositories=repositories)
    listed = {image.reference for image in pulled}
    missing = sorted(set(expect or ()) - listed)
    failed = [image for image in pulled if not image.ok]
    problems = [f"{ref}: tag not listed" for ref in missing]
    problems += [f"{image.reference}: {image.error}" for image in failed]
    if problems:
        raise AssertionError(
            f"{len(problems)} of {len(pulled) + len(missing)} image(s) do not pull from"
            f" {registry_url}:\n" + "\n".join(problems)
        )
    return pulled
