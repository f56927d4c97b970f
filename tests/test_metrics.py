"""Run metrics through the real command line, read back with prometheus_client's parser.

``--metrics-file`` (the textfile collector's file, written atomically; the last
success of a policy survives a failed run) and ``--pushgateway`` (a stand-in
Pushgateway on loopback that records each PUT/POST and its grouping path).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from regprune import metrics
from regprune.testing import days_ago
from tests.receivers import HttpReceiver

pytestmark = pytest.mark.usefixtures("isolated_cli")

CONFIG = """\
[registry.local]
url = "{url}"

[registry.local.gc]
command = {gc}
storage_path = "{storage}"

[policy.ci]
registry = "local"
repositories = ["ci/*"]
keep_tags = ["^latest$"]
selectors = [{{ use = "age", older_than = "14d" }}]
approval = "auto"
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def config(tmp_path, registry_server) -> Path:
    path = tmp_path / "regprune.toml"
    path.write_text(
        CONFIG.format(
            url=registry_server.url,
            gc=json.dumps(registry_server.gc_command()),
            storage=registry_server.storage_path,
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def seeded(pusher):
    for n in range(3):
        pusher.push_image("ci/app", [f"build-{n}", f"b{n}"], created=days_ago(30 + n))
    pusher.push_image("ci/app", ["latest"], created=days_ago(40))
    return pusher


def requests_by_method(err: str) -> dict[str, int]:
    """What ``--verbose`` printed: ``local: N HTTP requests (DELETE 3, GET 12)``."""
    match = re.search(r"^local: (\d+) HTTP requests \((.*)\)$", err, re.M)
    assert match, err
    counts = {m: int(n) for m, n in (part.split() for part in match.group(2).split(", "))}
    assert sum(counts.values()) == int(match.group(1))
    return counts


def test_metrics_file_after_a_run(regprune_cli, config, seeded, tmp_path):
    path = tmp_path / "regprune.prom"
    result = regprune_cli("--verbose", "--metrics-file", str(path), "run", "--json")
    assert result.code == 0, result.err
    ran = result.json()["plans"][0]
    found = samples(path.read_text(encoding="utf-8"))
    labels = {"policy": "ci", "registry": "local"}
    assert value(found, "regprune_run_exit_code", command="run") == 0
    assert value(found, "regprune_run_success", command="run") == 1
    assert value(found, "regprune_run_outcome", command="run", outcome="deleted") == 1
    assert value(found, "regprune_run_outcome", command="run", outcome="failure") == 0
    assert value(found, "regprune_run_duration_seconds", command="run") > 0
    assert value(found, "regprune_plan_images", **labels) == ran["summary"]["images"] == 3
    assert value(found, "regprune_plan_tags", **labels) == ran["summary"]["tags"] == 6
    assert value(found, "regprune_plan_bytes", **labels) == ran["summary"]["bytes"]
    deleted = ran["apply"]["deleted"]
    assert value(found, "regprune_apply_images", **labels, status="deleted") == len(deleted)
    assert value(found, "regprune_apply_tags", **labels, status="deleted") == sum(
        len(item["tags"]) for item in deleted
    )
    assert value(found, "regprune_apply_bytes", **labels, status="deleted") == sum(
        item["size"] for item in deleted
    )
    assert value(found, "regprune_apply_images", **labels, status="failed") == 0
    assert value(found, "regprune_apply_images", **labels, status="skipped") == 0
    for method, count in requests_by_method(result.err).items():
        assert (
            value(found, "regprune_http_requests_total", registry="local", method=method) == count
        )
    finished = value(found, "regprune_run_timestamp_seconds", command="run")
    assert value(found, "regprune_last_success_timestamp_seconds", policy="ci") == finished
    assert not list(tmp_path.glob("regprune.prom.*")), "the temporary file was renamed"
    # Only the documented series: no `_created` twin of the request counter.
    assert not [name for name, _ in found if name.endswith("_created")]


def test_a_failed_run_keeps_the_last_success_time(regprune_cli, config, seeded, tmp_path):
    path = tmp_path / "regprune.prom"
    assert regprune_cli("--metrics-file", str(path), "plan").code == 0
    succeeded = value(
        samples(path.read_text()), "regprune_last_success_timestamp_seconds", policy="ci"
    )
    config.write_text(config.read_text().replace('use = "age"', 'use = "agee"'))
    failed = regprune_cli("--metrics-file", str(path), "run")
    assert failed.code == 2
    found = samples(path.read_text())
    assert value(found, "regprune_run_success", command="run") == 0
    assert value(found, "regprune_run_exit_code", command="run") == 2
    assert value(found, "regprune_run_outcome", command="run", outcome="failure") == 1
    assert value(found, "regprune_last_success_timestamp_seconds", policy="ci") == succeeded
    assert not any(name == "regprune_plan_images" for name, _ in found)


def test_gc_metrics(regprune_cli, config, seeded, tmp_path):
    assert regprune_cli("run").code == 0
    path = tmp_path / "gc.prom"
    result = regprune_cli("--metrics-file", str(path), "gc", "--json")
    assert result.code == 0, result.err
    collected = result.json()
    found = samples(path.read_text())
    assert value(found, "regprune_gc_success", registry="local") == 1
    assert collected["bytes_freed"] > 0
    assert value(found, "regprune_gc_bytes_freed", registry="local") == collected["bytes_freed"]
    assert value(found, "regprune_gc_duration_seconds", registry="local") > 0
    assert value(found, "regprune_run_success", command="gc") == 1


def test_pushgateway_gets_the_run_grouped_by_policy_and_registry(
    regprune_cli, config, seeded, tmp_path
):
    with HttpReceiver() as gateway:
        result = regprune_cli("--pushgateway", gateway.url, "run")
        assert result.code == 0, result.err
        broken = config.read_text().replace('use = "age"', 'use = "agee"')
        config.write_text(broken)
        failed = regprune_cli("--pushgateway", gateway.url, "run")
    assert failed.code == 2
    pushed, then = gateway.requests
    assert (pushed.method, pushed.path) == ("PUT", "/metrics/job/regprune/policy/ci/registry/local")
    found = samples(pushed.body.decode())
    assert (
        value(found, "regprune_apply_images", policy="ci", registry="local", status="deleted") == 3
    )
    assert ("regprune_last_success_timestamp_seconds", (("policy", "ci"),)) in found
    # The failure adds to the gateway (POST) and carries no success time to overwrite it.
    assert (then.method, then.path) == ("POST", "/metrics/job/regprune")
    failure = samples(then.body.decode())
    assert value(failure, "regprune_run_success", command="run") == 0
    assert not any(name.startswith("regprune_last_success") for name, _ in failure)


def test_an_unreachable_pushgateway_is_one_warning(regprune_cli, config, seeded, tmp_path):
    with HttpReceiver(statuses=[500]) as gateway:
        result = regprune_cli("--pushgateway", gateway.url, "plan")
    assert result.code == 0
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: --pushgateway {gateway.url}"), (
        result.err
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--pushgateway", "gateway:9091"],
            "--pushgateway gateway:9091: not an http:// or https:// URL",
        ),
        (["--metrics-file", "missing/dir/x.prom"], "directory missing/dir does not exist"),
        (["--metrics-file", "."], "is a directory"),
        (["--metrics-file", ""], "--metrics-file '': empty"),
        # Renamed over, a device would be replaced (as root); read, it never ends.
        (["--metrics-file", "/dev/full"], "/dev/full: not a regular file"),
        (["--metrics-file", "/dev/zero"], "/dev/zero: not a regular file"),
        (["--metrics-file", "FIFO"], "fifo.prom: not a regular file"),
        (["--metrics-file", "LINK"], "a symbolic link"),
        (["--metrics-file", "x" * 300], "the name is too long"),
        (["--pushgateway", "http://ci:s3cret@gateway:9091"], "contains a user name or password"),
    ],
)
def test_bad_metrics_options_are_one_line_exit_2(regprune_cli, tmp_path, argv, expected):
    if argv[1] == "FIFO":
        os.mkfifo(tmp_path / "fifo.prom")
        argv = [argv[0], str(tmp_path / "fifo.prom")]
    if argv[1] == "LINK":
        (tmp_path / "real.prom").write_text("")
        (tmp_path / "link.prom").symlink_to(tmp_path / "real.prom")
        argv = [argv[0], str(tmp_path / "link.prom")]
    result = regprune_cli(
        *argv, "plan", "--registry", "http://127.0.0.1:1", "--repo", "x", "--keep", "1"
    )
    assert result.code == 2
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.err
    assert "s3cret" not in result.err


def test_an_earlier_metrics_file_too_large_to_be_ours_is_not_read(tmp_path):
    big = tmp_path / "big.prom"
    line = 'regprune_last_success_timestamp_seconds{policy="ci"} 1.0\n'
    big.write_text(line * (metrics.MAX_METRICS_FILE // len(line) + 1))
    assert metrics.read_last_success(big) == {}
    small = tmp_path / "small.prom"
    small.write_text(line)
    assert metrics.read_last_success(small) == {"ci": 1.0}
