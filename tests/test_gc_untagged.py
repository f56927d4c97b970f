"""What ``garbage-collect --delete-untagged`` deletes on Distribution 2.8.2 and 3.1.1,
measured on the real binaries, and regprune's judgement for each version.

Each test starts both binaries itself (``start_registry``, tests/distributions.py),
so it holds for both in one pass; a missing binary is a failure, never a skip.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from regprune.cli import run
from regprune.testing import ImagePusher, RegistryServer
from tests.referrers_proxy import ReferrersProxy

SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(params=[2, 3], ids=["2.8.2", "3.1.1"])
def major(request) -> int:
    return int(request.param)


@pytest.fixture
def server(major, start_registry) -> RegistryServer:
    return start_registry(major)


@pytest.fixture
def held(server) -> dict[str, str]:
    """A tagged multi-arch image, a tagged image with an untagged signature (which has
    one of its own), and an untagged image."""
    pusher = ImagePusher(server.url)
    index = pusher.push_index("r/multi", ["v1"])
    image = pusher.push_image("r/app", ["v1"], seed="app")
    signature = pusher.push_image("r/app", [], subject=image.digest, artifact_type=SIGNATURE)
    countersigned = pusher.push_image(
        "r/app", [], subject=signature.digest, artifact_type=SIGNATURE
    )
    loose = pusher.push_image("r/app", [], seed="loose")
    # The referrers tag schema: an SBOM listed in an index tagged sha256-<hex>.
    sbom = pusher.push_image("r/app", [], subject=image.digest, artifact_type=SBOM)
    schema = pusher.push_manifest(
        "r/app",
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": sbom.media_type,
                        "digest": sbom.digest,
                        "size": len(sbom.manifest),
                    }
                ],
            }
        ).encode(),
        OCI_INDEX,
        [image.digest.replace(":", "-")],
    )
    return {
        "schema index": schema,
        "schema referrer": sbom.digest,
        "index": index.digest,
        "platform": index.children[0].digest,
        "image": image.digest,
        "referrer": signature.digest,
        "referrer of referrer": countersigned.digest,
        "untagged": loose.digest,
    }


def survivors(server: RegistryServer, held: dict[str, str]) -> set[str]:
    pusher = ImagePusher(server.url)
    return {
        name
        for name, digest in held.items()
        if pusher.resolve("r/multi" if name in ("index", "platform") else "r/app", digest)
    }


def test_what_delete_untagged_deletes(server, major, held):
    server.garbage_collect("--delete-untagged")
    server.restart()
    kept = survivors(server, held)
    # (c) untagged manifests go on both; (b) so do untagged referrers of a tagged image,
    # and theirs; (a) platform manifests of a tagged index go on 2.x only (fixed in 3.0).
    # The tag schema's index is tagged: its listed referrer fares as a platform does.
    expected = {"index", "image", "schema index"}
    if major == 3:
        expected |= {"platform", "schema referrer"}
    assert kept == expected


def write_config(tmp_path: Path, url: str, command: list[str], major: int) -> Path:
    """A config for ``gc``; ``version = 3`` on 3.x, none on 2.x (a configured 2 would
    never ask about referrers, as no 2.x serves the API: here a proxy does)."""
    path = tmp_path / "regprune.toml"
    marker = tmp_path / "before-ran"
    before = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    path.write_text(
        "\n".join(
            [
                "[registry.local]",
                f"url = {json.dumps(url)}",
                *([f"version = {major}"] if major == 3 else []),
                "[registry.local.gc]",
                f"command = {json.dumps(command)}",
                f"before = [{json.dumps(before)}]",
            ]
        )
        + "\n"
    )
    return path


def gc(capsys, tmp_path: Path, config: Path, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = run(["--config", str(config), "--state", str(tmp_path / "state.db"), "gc", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err  # one line: `error: ...`
    return code, " ".join(err.split())  # warnings are wrapped to the terminal's width


def test_untagged_referrers_of_kept_images_refuse_delete_untagged(
    server, major, held, tmp_path, capsys
):
    # Where the referrers API is served, an untagged signature of a tagged image is
    # found, and --delete-untagged (which would sweep it on either version) is refused.
    # The multi-arch image is no reason on 3.x, so the referrer alone refuses there.
    with ReferrersProxy(server) as proxy:
        config = write_config(tmp_path, proxy.url, server.gc_command("-m"), major)
        code, err = gc(capsys, tmp_path, config)
        assert code == 2, err
        line = err
        assert line.startswith("error: ") and line.count("error: ") == 1
        assert f"r/app@{held['referrer'][:19]}, a referrer of r/app:v1" in line
        assert ("multi-arch" in line) is (major == 2)
        assert not (tmp_path / "before-ran").exists()
        assert {"referrer", "referrer of referrer"} <= survivors(server, held)

        # What the refusal protects: run anyway, and the signature is gone.
        code, err = gc(capsys, tmp_path, config, "--allow-delete-untagged")
        assert code == 0, err
        server.restart()
        assert "referrer" not in survivors(server, held)


def test_a_dry_run_only_warns_about_referrers(server, major, held, tmp_path, capsys):
    with ReferrersProxy(server) as proxy:
        config = write_config(tmp_path, proxy.url, server.gc_command("-m", "--dry-run"), major)
        code, err = gc(capsys, tmp_path, config, "--dry-run")
    assert code == 0, err
    assert "a referrer of r/app:v1" in err and "a real run is refused" in err


def test_without_the_api_version_3_runs_it(server, major, held, tmp_path, capsys):
    # Not served: untagged referrers cannot be listed, and OCI 1.1 clients then use the
    # tag schema (a tagged index, which 3.x keeps with its children).  So 3.x runs.
    config = write_config(tmp_path, server.url, server.gc_command("-m", "--dry-run"), 3)
    code, err = gc(capsys, tmp_path, config)
    assert code == 0, err
    assert (tmp_path / "before-ran").exists()
