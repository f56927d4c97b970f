"""``regprune gc --dry-run`` says what the collector found, in words, through the real CLI.

Never "freed 0 B" for a dry run: the text names the blobs and manifests the
registry's own ``garbage-collect --dry-run`` found eligible for deletion, and
``--json`` carries the same counts in ``eligible`` even when ``output`` keeps only
the tail of a long run (the collector prints its counts before the list of blobs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from regprune.cli import run
from regprune.formatting import human_bytes
from regprune.models import GcEligible
from regprune.state import State
from regprune.testing import days_ago

SUMMARY = re.compile(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion")
CONFIG = """\
[registry.local]
url = "{url}"

[registry.local.gc]
command = {command}
storage_path = "{storage}"

[policy.ci]
registry = "local"
repositories = ["ci/*"]
selectors = [{{ use = "age", older_than = "7d" }}]
"""


@pytest.fixture(autouse=True)
def _isolated(isolated_cli: None) -> None:
    """No config or state from the environment."""


@pytest.fixture
def regprune(capsys, tmp_path, registry_server):
    config = tmp_path / "regprune.toml"
    config.write_text(
        CONFIG.format(
            url=registry_server.url,
            command=json.dumps(registry_server.gc_command()),
            storage=registry_server.storage_path,
        )
    )

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(["--config", str(config), "--state", str(tmp_path / "state.db"), *argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return call


def _registry_counts(server) -> tuple[int, int, int]:
    """The counts of the registry's own dry run, run directly."""
    marked, blobs, manifests, _ = _registry_dry_run(server)
    return marked, blobs, manifests


def _registry_dry_run(server) -> tuple[int, int, int, int]:
    """The registry's own dry run: its counts, and the bytes of the blob files it lists."""
    completed = server.garbage_collect("--dry-run")
    output = completed.stdout + completed.stderr
    found = SUMMARY.findall(output)
    assert found, output
    marked, blobs, manifests = (int(n) for n in found[-1])
    listed = set(re.findall(r"blob eligible for deletion: sha256:([0-9a-f]{64})", output))
    assert len(listed) == blobs
    blob_root = Path(server.storage_path) / "docker/registry/v2/blobs/sha256"
    size = sum((blob_root / hex_[:2] / hex_ / "data").stat().st_size for hex_ in listed)
    return marked, blobs, manifests, size


def test_a_dry_run_reports_what_is_eligible_never_freed(
    regprune, registry_server, pusher, tmp_path
):
    for n in range(40):
        pusher.push_image("ci/app", [f"old-{n}"], created=days_ago(30), layers=2)
    pusher.push_image("ci/app", ["new"], layers=2)
    code, _, err = regprune("run", "--yes")
    assert code == 0, err
    marked, blobs, manifests, size = _registry_dry_run(registry_server)
    assert blobs >= 40 * 3  # two layers and a config blob per deleted image

    code, out, err = regprune("gc", "--dry-run")

    assert code == 0, err
    assert "freed" not in out
    assert (
        f"local: dry run ok; {blobs:,} blobs and {manifests:,} manifest"
        f"{'' if manifests == 1 else 's'} eligible for deletion ({marked:,} blob"
        f"{'' if marked == 1 else 's'} still in use); a real run frees about "
        f"{human_bytes(size)}"
    ) in out

    code, out, _ = regprune("gc", "--dry-run", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["eligible"] == {
        "blobs": blobs,
        "manifests": manifests,
        "blobs_marked": marked,
        "bytes": size,
    }
    with State(tmp_path / "state.db") as state:  # recorded with the run
        recorded = state.gc_runs.recent(limit=1)[0].eligible
        assert recorded == GcEligible(blobs, manifests, marked, size)
    # What the real run then frees on disk is at least that (the blob files' sizes).
    code, out, err = regprune("gc", "--json")
    assert code == 0, err
    assert json.loads(out)["bytes_freed"] >= size
    # The kept output is the tail: the summary line is gone from it, the counts are not.
    assert not SUMMARY.search(document["output"])
    assert document["output"].rstrip().endswith(tuple("0123456789abcdef"))


def test_a_dry_run_with_nothing_to_collect_says_so(regprune, registry_server, pusher):
    pusher.push_image("ci/app", ["new"])
    marked, blobs, manifests = _registry_counts(registry_server)
    assert (blobs, manifests) == (0, 0)

    code, out, err = regprune("gc", "--dry-run")

    assert code == 0, err
    assert "nothing eligible for deletion: a real run would free nothing" in out
    assert f"({marked:,} blob" in out
    assert "freed" not in out

    # A real run still reports what it freed.
    code, out, err = regprune("gc")
    assert code == 0, err
    assert re.search(r"local: garbage collection ok; freed \d", out)


def test_eligible_counts_survive_into_gc_json_of_run(regprune, registry_server, pusher, tmp_path):
    """`run --gc --json` carries a real run's counts too (nothing to hide for a dry run)."""
    pusher.push_image("ci/app", ["old"], created=days_ago(30))
    pusher.push_image("ci/app", ["new"])

    code, out, err = regprune("run", "--yes", "--gc", "--json")

    assert code == 0, err
    collected = json.loads(out)["gc"]
    assert len(collected) == 1
    eligible = collected[0]["eligible"]
    assert eligible is not None
    assert eligible["blobs"] >= 2  # the deleted image's layer and config
    assert Path(registry_server.storage_path).is_dir()
