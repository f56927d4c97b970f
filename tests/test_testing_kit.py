"""The test kit itself: a real registry on loopback and the synthetic image pusher."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from regprune.errors import ApprovalPending, ConfigError
from regprune.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    artifact_subject,
)
from regprune.testing import (
    APPROVE_ALL,
    DEFAULT_REGISTRY,
    CliRunner,
    ImagePusher,
    PolicyRunner,
    PushError,
    RegistryNotFoundError,
    RegistryServer,
    RegistryStartError,
    ScriptedApprover,
    apply_plan,
    days_ago,
    deleted_digests,
    find_registry_binary,
    kept_reasons,
    make_engine,
    make_self_signed_cert,
    make_settings,
    run_policy,
)
from regprune.testing import server as server_module
from regprune.testing.cli import CLI_ENV
from regprune.testing.pytest_plugin import RegistryFactory


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/v2/", timeout=1.0, trust_env=False)
    except httpx.TransportError:
        return False
    return True


def _config_blob(pusher: ImagePusher, repository: str, digest: str) -> dict:
    response = httpx.get(f"{pusher.url}/v2/{repository}/blobs/{digest}", trust_env=False)
    response.raise_for_status()
    return response.json()


def _process_gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaps counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


# -- finding the binary ------------------------------------------------------------


def test_find_registry_binary_prefers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_registry_binary()
    monkeypatch.setenv("REGPRUNE_REGISTRY_BIN", real)
    assert find_registry_binary() == real
    monkeypatch.setenv("REGPRUNE_REGISTRY_BIN", "/nonexistent/registry")
    with pytest.raises(RegistryNotFoundError, match="REGPRUNE_REGISTRY_BIN"):
        find_registry_binary()


def test_find_registry_binary_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REGPRUNE_REGISTRY_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RegistryNotFoundError, match="apt-get install docker-registry"):
        find_registry_binary()


# -- lifecycle ---------------------------------------------------------------------


def test_start_stop_kill_restart(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path / "reg")
    with server:
        assert server.running
        assert server.host == f"127.0.0.1:{server.port}"
        assert server.url == f"http://{server.host}"
        assert _answers(server.url)
        config = json.loads(server.config_path.read_text())
        assert config["storage"]["delete"]["enabled"] is True
        assert config["http"]["addr"] == server.host
        assert config["log"]["level"] == "error"
        port = server.port

        server.restart(delete_enabled=False)
        assert server.port == port
        assert json.loads(server.config_path.read_text())["storage"]["delete"]["enabled"] is False

        pid = server.pid
        assert pid is not None
        server.kill()
        assert not server.running
        assert not _answers(server.url)
        assert _process_gone(pid)

        server.start()
        assert server.port == port and _answers(server.url)
    assert not server.running
    assert not _answers(server.url)
    server.stop()  # idempotent


def test_restart_rejects_unknown_settings(registry_server: RegistryServer) -> None:
    with pytest.raises(TypeError, match="port"):
        registry_server.restart(port=1)


def test_start_failure_shows_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RegistryServer(tmp_path / "reg", port=taken.getsockname()[1])
        with pytest.raises(RegistryStartError, match="address already in use"):
            server.start()
    assert not server.running


def test_port_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        real_free_port = server_module._free_port
        ports = iter([busy])
        monkeypatch.setattr(
            server_module, "_free_port", lambda: next(ports, None) or real_free_port()
        )
        with RegistryServer(tmp_path / "reg") as server:
            assert server.port != busy
            assert _answers(server.url)


def test_registry_dies_with_its_parent(tmp_path: Path) -> None:
    """Neither a normal exit (atexit) nor a SIGKILL of the test process leaves it running."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from regprune.testing import RegistryServer
        server = RegistryServer(Path({str(tmp_path)!r}) / sys.argv[1]).start()
        print(server.pid, flush=True)
        if sys.argv[1] == "killed":
            time.sleep(60)
        """
    )
    for how in ("exits", "killed"):
        child = subprocess.Popen(
            [sys.executable, "-c", script, how], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        registry_pid = int(child.stdout.readline())
        if how == "killed":
            child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert _process_gone(registry_pid), f"registry outlived a parent that {how}"


# -- pushing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "manifest_type", "config_type"),
    [
        ("oci", OCI_MANIFEST, "application/vnd.oci.image.config.v1+json"),
        ("docker", DOCKER_MANIFEST, DOCKER_CONFIG),
    ],
)
def test_push_image_resolves(
    pusher: ImagePusher, media_type: str, manifest_type: str, config_type: str
) -> None:
    image = pusher.push_image(
        "team/app",
        ["v1", "latest"],
        media_type=media_type,  # type: ignore[arg-type]
        layers=2,
        labels={"org.opencontainers.image.source": "https://example.invalid/app"},
        created=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        platform="linux/arm/v7",
    )
    assert image.media_type == manifest_type
    assert image.tags == ("v1", "latest")
    assert pusher.resolve("team/app", "v1") == image.digest
    assert pusher.resolve("team/app", "latest") == image.digest
    assert sorted(pusher.tags("team/app")) == ["latest", "v1"]
    assert pusher.resolve("team/app", "nope") is None

    response = pusher.get_manifest("team/app", "v1")
    assert response.headers["Content-Type"] == manifest_type
    assert response.content == image.manifest
    manifest = response.json()
    assert manifest["config"]["mediaType"] == config_type
    assert [layer["digest"] for layer in manifest["layers"]] == list(image.layer_digests)
    assert image.size == len(image.manifest) + manifest["config"]["size"] + sum(
        layer["size"] for layer in manifest["layers"]
    )

    config = _config_blob(pusher, "team/app", image.config_digest or "")
    assert config["created"] == "2024-05-01T12:30:00Z"
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm", "v7")
    assert config["config"]["Labels"] == {
        "org.opencontainers.image.source": "https://example.invalid/app"
    }
    assert config["rootfs"]["diff_ids"] == list(image.layer_digests)


def test_created_verbatim_or_omitted(pusher: ImagePusher) -> None:
    epoch = pusher.push_image("repro", "v1", created="1970-01-01T00:00:00Z")
    assert _config_blob(pusher, "repro", epoch.config_digest or "")["created"] == (
        "1970-01-01T00:00:00Z"
    )
    undated = pusher.push_image("repro", "v2", created=None)
    assert undated.created is None
    assert "created" not in _config_blob(pusher, "repro", undated.config_digest or "")


def test_seed_is_deterministic_and_default_is_unique(pusher: ImagePusher) -> None:
    one = pusher.push_image("a", "x", seed="s", created="2020-01-01T00:00:00Z")
    two = pusher.push_image("b", "x", seed="s", created="2020-01-01T00:00:00Z")
    assert one.digest == two.digest and one.layer_digests == two.layer_digests
    three = pusher.push_image("a", "y")
    four = pusher.push_image("a", "z")
    assert len({one.digest, three.digest, four.digest}) == 3
    assert not set(three.layer_digests) & set(four.layer_digests)


@pytest.mark.parametrize(
    ("media_type", "index_type", "child_type"),
    [("oci", OCI_INDEX, OCI_MANIFEST), ("docker", DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)],
)
def test_push_index_children_exist_untagged(
    pusher: ImagePusher, media_type: str, index_type: str, child_type: str
) -> None:
    index = pusher.push_index(
        "multi",
        "v1",
        media_type=media_type,  # type: ignore[arg-type]
        platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
    )
    assert index.media_type == index_type
    assert pusher.resolve("multi", "v1") == index.digest
    assert pusher.tags("multi") == ["v1"]
    assert len(index.children) == 3
    for child in index.children:
        assert child.media_type == child_type
        assert child.tags == ()
        assert pusher.manifest_exists("multi", child.digest)
    listed = pusher.get_manifest("multi", "v1").json()["manifests"]
    assert [entry["digest"] for entry in listed] == [c.digest for c in index.children]
    assert listed[2]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert index.size == len(index.manifest) + sum(c.size for c in index.children)


def test_push_signature_tag_naming(pusher: ImagePusher) -> None:
    image = pusher.push_image("signed", "v1")
    for kind in ("sig", "att", "sbom"):
        artifact = pusher.push_signature("signed", image.digest, kind)  # type: ignore[arg-type]
        (tag,) = artifact.tags
        assert tag == f"sha256-{image.digest.removeprefix('sha256:')}.{kind}"
        assert artifact_subject(tag) == image.digest
        assert pusher.resolve("signed", tag) == artifact.digest
        assert artifact.media_type == OCI_MANIFEST
    assert len(pusher.tags("signed")) == 4


def test_referrer_with_subject(pusher: ImagePusher) -> None:
    image = pusher.push_image("ref", "v1")
    sbom = pusher.push_image("ref", subject=image.digest, artifact_type="application/spdx+json")
    manifest = pusher.get_manifest("ref", sbom.digest).json()
    assert manifest["subject"]["digest"] == image.digest
    assert manifest["subject"]["mediaType"] == OCI_MANIFEST
    assert manifest["artifactType"] == "application/spdx+json"
    assert pusher.tags("ref") == ["v1"]


def test_tag_existing_manifest(pusher: ImagePusher) -> None:
    index = pusher.push_index("retag", "v1")
    assert pusher.tag("retag", "v1", "stable") == index.digest
    assert pusher.resolve("retag", "stable") == index.digest


def test_push_many_shares_blobs_and_clone(
    pusher: ImagePusher, registry_server: RegistryServer
) -> None:
    images = pusher.push_many(
        [f"fleet/app-{i:02d}" for i in range(12)] + [("fleet/other", ["a", "b"])],
        seed="shared",
        created="2021-01-01T00:00:00Z",
        tags="latest",
    )
    assert len({image.digest for image in images}) == 1
    assert [image.repository for image in images][-1] == "fleet/other"
    assert images[-1].tags == ("a", "b")
    clones = registry_server.clone_repository(
        "fleet/app-00", [f"clone/r{i:04d}" for i in range(150)]
    )
    assert len(clones) == 150
    catalog = pusher.catalog(page_size=50)
    assert len(catalog) == 13 + 150
    assert pusher.resolve("clone/r0149", "latest") == images[0].digest


# -- registry modes ----------------------------------------------------------------


def test_htpasswd_auth(registry_factory: RegistryFactory) -> None:
    server = registry_factory(htpasswd={"alice": "s3cret", "bob": "hunter2"})
    assert httpx.get(f"{server.url}/v2/", trust_env=False).status_code == 401
    ok = httpx.get(f"{server.url}/v2/", auth=("alice", "s3cret"), trust_env=False)
    assert ok.status_code == 200
    wrong = httpx.get(f"{server.url}/v2/", auth=("alice", "nope"), trust_env=False)
    assert wrong.status_code == 401
    with ImagePusher(server.url, auth=("bob", "hunter2")) as pusher:
        image = pusher.push_image("private", "v1")
        assert pusher.resolve("private", "v1") == image.digest
    with ImagePusher(server.url) as anonymous, pytest.raises(PushError) as caught:
        anonymous.push_image("private", "v2")
    assert caught.value.status_code == 401


def test_readonly_refuses_pushes(registry_server: RegistryServer, pusher: ImagePusher) -> None:
    image = pusher.push_image("frozen", "v1")
    registry_server.restart(readonly=True)
    with pytest.raises(PushError) as caught:
        pusher.push_image("frozen", "v2")
    assert caught.value.status_code == 405
    assert pusher.resolve("frozen", "v1") == image.digest
    assert pusher.delete("frozen", image.digest) == 405
    registry_server.restart(readonly=False)
    assert pusher.push_image("frozen", "v2").tags == ("v2",)


def test_delete_disabled(registry_factory: RegistryFactory) -> None:
    server = registry_factory(delete_enabled=False)
    with ImagePusher(server.url) as pusher:
        image = pusher.push_image("keep", "v1")
        response = httpx.delete(f"{server.url}/v2/keep/manifests/{image.digest}", trust_env=False)
        assert response.status_code == 405
        assert response.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_gc_reclaims_space(registry_server: RegistryServer, pusher: ImagePusher) -> None:
    keep = pusher.push_image("gc", "keep", layer_size=4096)
    doomed = pusher.push_image("gc", "doomed", layers=3, layer_size=64 * 1024)
    response = httpx.delete(
        f"{registry_server.url}/v2/gc/manifests/{doomed.digest}",
        headers={"Accept": MANIFEST_ACCEPT},
        trust_env=False,
    )
    assert response.status_code == 202
    assert pusher.resolve("gc", "doomed") is None
    before = registry_server.disk_usage()

    command = registry_server.gc_command("--dry-run")
    assert command[1:] == ["garbage-collect", "--dry-run", str(registry_server.config_path)]
    subprocess.run(command, check=True, capture_output=True)
    assert registry_server.disk_usage() == before

    result = subprocess.run(registry_server.gc_command(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for digest in doomed.layer_digests:
        assert digest in result.stdout
    after = registry_server.disk_usage()
    assert after < before - 3 * 64 * 1024
    registry_server.restart()  # GC leaves the blob descriptor cache stale: restart, as in prod
    assert pusher.resolve("gc", "keep") == keep.digest
    assert not pusher.blob_exists("gc", doomed.layer_digests[0])


def test_tls(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    cert, key = make_self_signed_cert(tmp_path / "tls")
    server = registry_factory(tls=(cert, key))
    assert server.url.startswith("https://127.0.0.1:")
    with ImagePusher(server.url, verify=cert) as pusher:
        image = pusher.push_image("secure", "v1")
        assert pusher.resolve("secure", "v1") == image.digest


def test_registry_factory_roots_and_teardown(registry_factory: RegistryFactory) -> None:
    first = registry_factory()
    second = registry_factory(readonly=True)
    assert first.root != second.root and first.port != second.port
    assert json.loads(second.config_path.read_text())["storage"]["maintenance"]["readonly"] == {
        "enabled": True
    }


def test_proxy_variables_are_cleared() -> None:
    assert not {"HTTP_PROXY", "https_proxy", "ALL_PROXY", "NO_PROXY"} & set(os.environ)


# -- engine builders, plan readers, the approver and the CLI fixtures --------------------

AGE_POLICY = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}


def test_make_settings_names_the_kit_registry_and_defaults_repositories() -> None:
    settings = make_settings(
        "http://127.0.0.1:5000",
        {"selectors": [{"use": "count", "keep": 1}]},
        name="ci",
        other_policies={"releases": {**AGE_POLICY, "keep_tags": ["^v"]}},
        registry_options={"retries": 0},
    )

    assert list(settings.registry) == [DEFAULT_REGISTRY]
    assert settings.registry[DEFAULT_REGISTRY].retries == 0
    assert settings.policy["ci"].registry == DEFAULT_REGISTRY
    assert settings.policy["ci"].repositories == ["*"]
    assert settings.policy["releases"].repositories == ["ci/*"]
    assert make_settings("http://127.0.0.1:5000").policy == {}
    with pytest.raises(ConfigError, match=r"policy\.ci\.keep_tag: unknown key"):
        make_settings("http://127.0.0.1:5000", {**AGE_POLICY, "keep_tag": ["^v"]}, name="ci")


def test_days_ago_is_that_long_before_now() -> None:
    then = days_ago(2.5)

    assert then.tzinfo is UTC
    assert abs((datetime.now(UTC) - then) - timedelta(days=2.5)) < timedelta(seconds=5)


def test_engine_plan_readers_and_approve_all(
    registry_server: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    old = pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    latest = pusher.push_image("ci/app", ["latest"], created=days_ago(30))
    engine = make_engine(
        registry_server.url,
        {**AGE_POLICY, "keep_tags": ["^latest$"]},
        name="ci",
        state_dir=tmp_path,
    )
    try:
        plan = engine.plan("ci")

        assert deleted_digests(plan) == {old.digest}
        assert any("^latest$" in reason for reason in kept_reasons(plan, latest.digest))
        with pytest.raises(AssertionError, match="is not in the keep list"):
            kept_reasons(plan, old.digest)
        assert APPROVE_ALL.assume_yes and not APPROVE_ALL.interactive
        result = engine.apply(plan.id, context=APPROVE_ALL)
    finally:
        engine.close()
        engine.state.close()

    assert result.status == "done"
    assert [outcome.item.digest for outcome in result.of("deleted")] == [old.digest]
    assert pusher.resolve("ci/app", "b-1") is None
    assert pusher.resolve("ci/app", "latest") == latest.digest


def test_scripted_approver_answers_in_order_then_the_default(
    pusher: ImagePusher, regprune_plan: PolicyRunner, approver: ScriptedApprover
) -> None:
    pusher.push_image("app", ["v1"])
    policy = {"selectors": [{"use": "count", "keep": 0}], "approval": approver.name}
    approver.answer("rejected", by="alice", note="not today")
    approver.answer("pending")

    rejected = regprune_plan(policy)
    assert regprune_plan.apply(rejected).status == "rejected"
    assert pusher.resolve("app", "v1") is not None

    waiting = regprune_plan(policy)
    with pytest.raises(ApprovalPending):
        regprune_plan.apply(waiting)
    assert pusher.resolve("app", "v1") is not None

    # Nothing queued any more: the default answer, approved, for the plan that waited.
    assert regprune_plan.apply(waiting).status == "done"
    assert pusher.resolve("app", "v1") is None
    assert approver.asked == [rejected.id, waiting.id, waiting.id]
    assert all(context.assume_yes for context in approver.contexts)


def test_scripted_approver_without_the_fixture_is_a_plugin(
    pusher: ImagePusher, registry_server: RegistryServer, tmp_path: Path
) -> None:
    pusher.push_image("app", ["v1"])
    voter = ScriptedApprover("vote", decision="rejected")
    plan = run_policy(
        registry_server.url,
        {"selectors": [{"use": "count", "keep": 0}], "approval": "vote"},
        state_dir=tmp_path,
        extra_plugins=[voter],
    )

    result = apply_plan(registry_server.url, plan, state_dir=tmp_path, extra_plugins=[voter])

    assert result.status == "rejected" and voter.asked == [plan.id]
    assert pusher.resolve("app", "v1") is not None


def test_isolated_cli_leaves_nothing_of_this_machine(
    isolated_cli: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regprune.cli import apply_cmd

    assert Path.cwd() == tmp_path
    assert not any(os.environ.get(name) for name in CLI_ENV)
    assert os.environ["REGPRUNE_LOAD_PLUGINS"] == ""
    assert os.environ["XDG_CONFIG_HOME"].startswith(str(tmp_path))
    assert os.environ["XDG_STATE_HOME"].startswith(str(tmp_path))
    assert apply_cmd.is_interactive() is False


def test_regprune_cli_runs_end_to_end(
    regprune_cli: CliRunner, registry_server: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    quick = ["--registry", registry_server.url, "--repo", "ci/*", "--older-than", "7d"]

    planned = regprune_cli("plan", *quick, "--json")
    refused = regprune_cli("apply", planned.json()["plan_id"])
    code, out, err = regprune_cli("run", *quick, "--yes")

    assert planned.code == 0 and planned.err == ""
    assert refused.code == 2 and "no terminal" in refused.err  # isolated: nobody to ask
    assert code == 0 and "deleted" in out and err == ""
    assert pusher.resolve("ci/app", "b-1") is None
    assert (tmp_path / "xdg-state" / "regprune" / "state.db").exists()  # default state path


def test_push_index_of_lists_manifests_already_pushed(pusher: ImagePusher) -> None:
    amd = pusher.push_image("multi", [], platform="linux/amd64")
    plain = pusher.push_image("multi", ["plain"])

    digest = pusher.push_index_of("multi", [amd, plain], ["both"])

    assert pusher.resolve("multi", "both") == digest
    listed = pusher.get_manifest("multi", "both").json()
    assert listed["mediaType"] == OCI_INDEX
    assert [m["digest"] for m in listed["manifests"]] == [amd.digest, plain.digest]
    assert [m["size"] for m in listed["manifests"]] == [len(amd.manifest), len(plain.manifest)]
