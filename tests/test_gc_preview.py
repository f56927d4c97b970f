"""The GC preview is what the registry's own ``garbage-collect --dry-run`` says it sweeps.

Every test runs against Distribution 2.8.2 and 3.1.1 (``start_registry``): images whose
layers two repositories share, a multi-arch index and a Docker manifest list, an OCI
1.1 artifact and a cosign signature, untagged manifests, a blob no manifest names and
an image deleted earlier.  The registry's dry run lists each blob it would sweep as
``blob eligible for deletion: sha256:<hex>`` (the same line on both versions); the
preview must name exactly those blobs, and its bytes must be their files' sizes.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from regprune.cli.render import summary_line
from regprune.engine import scanned_storage
from regprune.storage import GcPreview, StorageLayout, facts_references, preview_gc
from regprune.storage._gc_preview import references
from regprune.testing import (
    DEFAULT_REGISTRY,
    ImagePusher,
    RegistryServer,
    apply_plan,
    days_ago,
    make_engine,
    run_cli,
    run_policy,
)
from tests.storage_helpers import storage_options

ELIGIBLE = re.compile(r"^blob eligible for deletion: (sha256:[0-9a-f]{64})$", re.MULTILINE)
SUMMARY = re.compile(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion")
CREATED = "2024-01-01T00:00:00Z"  # fixed, so one seed pushed twice gives the same manifest
SBOM = "application/spdx+json"


@pytest.fixture(params=[2, 3], ids=["2.8.2", "3.1.1"])
def major(request) -> int:
    return int(request.param)


@pytest.fixture
def server(major, start_registry) -> RegistryServer:
    return start_registry(major)


def registry_sweep(server: RegistryServer) -> set[str]:
    """The blobs the registry's own ``garbage-collect --dry-run`` would delete."""
    output = server.garbage_collect("--dry-run").stdout
    found = set(ELIGIBLE.findall(output))
    summary = SUMMARY.search(output)
    assert summary is not None, output[-2000:]
    # Without --delete-untagged GC deletes no manifests itself.
    assert (int(summary.group(2)), int(summary.group(3))) == (len(found), 0)
    return found


def file_sizes(server: RegistryServer, digests: set[str]) -> int:
    layout = StorageLayout(server.storage_path)
    return sum(os.stat(layout.blob_path(digest)).st_size for digest in digests)


def preview(server: RegistryServer, deleted: dict[str, set[str]] | None = None) -> GcPreview:
    return preview_gc(StorageLayout(server.storage_path), deleted)


def populate(server: RegistryServer) -> dict[str, Any]:
    """Every kind of manifest and sharing the model must get right; returns what to delete."""
    pusher = ImagePusher(server.url)
    pushed: dict[str, Any] = {}
    # Shared across repositories: the same image (same blobs) in app/web and app/api.
    for repository in ("app/web", "app/api"):
        pushed[f"pair {repository}"] = pusher.push_image(
            repository, ["pair"], created=CREATED, seed="pair", layers=2
        )
        pushed[f"kept {repository}"] = pusher.push_image(
            repository, ["kept"], created=CREATED, seed="kept", layer_size=3000
        )
    pushed["web only"] = pusher.push_image("app/web", ["v1"], seed="web1", layers=3)
    # Re-pushed tag: the first one stays, untagged (GC without -m keeps it).
    pushed["untagged"] = pusher.push_image("app/web", ["latest"], seed="old-latest")
    pusher.push_image("app/web", ["latest"], seed="new-latest")
    pushed["by digest"] = pusher.push_image("app/web", [], seed="never-tagged")
    # A multi-arch index, a Docker manifest list, and an index that stays while one of
    # its platform manifests is deleted through the API.
    pushed["index gone"] = pusher.push_index("app/multi", ["m1"], seed="m1")
    pushed["list gone"] = pusher.push_index("app/multi", ["m2"], seed="m2", media_type="docker")
    pushed["index stays"] = pusher.push_index("app/multi", ["m3"], seed="m3", layers=2)
    # An OCI 1.1 artifact whose subject is deleted, and a cosign signature that stays.
    subject = pusher.push_image("app/signed", ["s1"], seed="subject", layers=2)
    pushed["subject"] = subject
    pushed["sbom"] = pusher.push_image(
        "app/signed", [], subject=subject.digest, artifact_type=SBOM, seed="sbom"
    )
    signed = pusher.push_image("app/signed", ["s2"], seed="signed")
    pusher.push_signature("app/signed", signed.digest)
    # Garbage already: a blob no manifest names, and an image deleted before.
    pushed["orphan blob"] = pusher.push_blob("app/api", os.urandom(5000))
    earlier = pusher.push_image("app/api", ["old"], seed="deleted-earlier", layers=2)
    assert pusher.delete("app/api", earlier.digest) == 202
    pushed["deleted earlier"] = earlier
    pusher.close()
    return pushed


def deletions(pushed: dict[str, Any]) -> dict[str, set[str]]:
    stays = pushed["index stays"]
    return {
        "app/web": {pushed["pair app/web"].digest},
        "app/api": {pushed["pair app/api"].digest},
        "app/multi": {
            pushed["index gone"].digest,
            *(child.digest for child in pushed["index gone"].children),
            pushed["list gone"].digest,
            *(child.digest for child in pushed["list gone"].children),
            stays.children[0].digest,  # its index stays and still lists it
        },
        "app/signed": {pushed["subject"].digest},
    }


def test_the_preview_names_the_blobs_the_registrys_gc_would_sweep(server):
    pushed = populate(server)

    swept = registry_sweep(server)
    found = preview(server)

    assert found.digests == swept
    assert found.blobs == len(swept)
    assert found.bytes == file_sizes(server, swept)
    earlier = pushed["deleted earlier"]
    assert {pushed["orphan blob"], earlier.digest, *earlier.blob_digests} == swept
    # Nothing references them any more: garbage already.  app/api's ``_layers`` still
    # link the blobs it held; the deleted manifest's revision link is gone.
    assert found.unreferenced == found.bytes and found.unreferenced_blobs == found.blobs
    assert found.manifests == 1  # the manifest deleted earlier, found by its content
    api = found.by_repository["app/api"]
    assert set(found.by_repository) == {"app/api"} and found.shared == 0
    assert api.blobs == len(swept) - 1
    assert api.bytes == file_sizes(server, swept - {earlier.digest})
    assert found.unattributed == file_sizes(server, {earlier.digest})


def test_a_preview_of_deletions_is_the_registrys_sweep_after_deleting_them(server):
    pushed = populate(server)
    before = preview(server)
    deleted = deletions(pushed)

    predicted = preview(server, deleted)
    pusher = ImagePusher(server.url)
    for repository, digests in deleted.items():
        for digest in sorted(digests):
            assert pusher.delete(repository, digest) == 202, (repository, digest)
    pusher.close()
    swept = registry_sweep(server)

    assert predicted.digests == swept
    assert predicted.bytes == file_sizes(server, swept)
    after = preview(server)
    assert (after.digests, after.bytes) == (predicted.digests, predicted.bytes)
    assert predicted.added == predicted.bytes - before.bytes > 0
    # The index that stays still lists its deleted platform manifest: GC keeps that
    # manifest's blob, not the config and layers only that manifest referenced.
    gone_child = pushed["index stays"].children[0]
    assert gone_child.digest not in swept
    assert set(gone_child.blob_digests) <= swept
    # The artifact does not keep its deleted subject; the signature keeps its own blobs.
    assert {pushed["subject"].digest, *pushed["subject"].blob_digests} <= swept
    assert pushed["sbom"].digest not in swept
    # Untagged manifests stay with their blobs (only --delete-untagged would take them).
    for name in ("untagged", "by digest"):
        assert not {pushed[name].digest, *pushed[name].blob_digests} & swept
    # Blobs both app/web and app/api referenced: counted once, as shared.
    pair = {pushed["pair app/web"].digest, *pushed["pair app/web"].blob_digests}
    assert pair <= swept
    pair_bytes = file_sizes(server, pair)
    assert predicted.shared == pair_bytes and predicted.shared_blobs == len(pair)
    web, api = predicted.by_repository["app/web"], predicted.by_repository["app/api"]
    assert (web.shared_bytes, api.shared_bytes) == (pair_bytes, pair_bytes)
    # Nothing else of app/web's goes; app/api's garbage from before goes by its links.
    garbage = {pushed["orphan blob"], *pushed["deleted earlier"].blob_digests}
    assert (web.blobs, api.blobs) == (0, len(garbage))
    assert api.bytes == file_sizes(server, garbage)
    # Every freed byte is counted once: shared, one repository's own, or unattributed.
    own = sum(usage.bytes for usage in predicted.by_repository.values())
    assert predicted.shared + own + predicted.unattributed == predicted.bytes
    multi = predicted.by_repository["app/multi"]
    assert predicted.unattributed_blobs == 1  # the manifest deleted earlier
    assert multi.bytes == file_sizes(
        server,
        swept
        & {
            d
            for key in ("index gone", "list gone", "index stays")
            for d in _all_digests(pushed[key])
        },
    )
    deleted_manifests = {d for digests in deleted.values() for d in digests}
    assert predicted.manifests == 1 + len(deleted_manifests & swept)  # + the earlier one


def _all_digests(image) -> set[str]:
    return {image.digest, *image.blob_digests, *(child.digest for child in image.children)}


POLICY = {
    "repositories": ["ci/app"],
    "selectors": [{"use": "age", "older_than": "7d"}],
}


def test_a_storage_plans_bytes_are_what_gc_then_frees(server, tmp_path):
    pusher = ImagePusher(server.url)
    pusher.push_image("ci/app", ["old-1"], created=days_ago(30), seed="old-1", layers=2)
    pusher.push_index("ci/app", ["old-multi"], created=days_ago(20), seed="old-multi")
    # The same image in a repository the policy does not cover: its blobs stay.
    pusher.push_image("ci/app", ["old-shared"], created=days_ago(25), seed="shared", layers=2)
    pusher.push_image("ci/other", ["shared"], created=days_ago(25), seed="shared", layers=2)
    pusher.push_image("ci/app", ["new"], seed="new")
    pusher.close()
    options = storage_options(server)
    already = registry_sweep(server)

    plan = run_policy(server.url, POLICY, state_dir=tmp_path, registry_options=options)
    (tmp_path / "api").mkdir()
    api_plan = run_policy(server.url, POLICY, state_dir=tmp_path / "api")
    result = apply_plan(server.url, plan, state_dir=tmp_path, registry_options=options)
    assert len(result.of("deleted")) == len(plan.delete) > 0
    freed = registry_sweep(server) - already

    assert plan.summary.bytes_exact and plan.to_json_dict()["summary"]["bytes_exact"] is True
    assert plan.summary.bytes == file_sizes(server, freed)
    # The API's estimate cannot see ci/other, so it counts the shared blobs as freed.
    assert not api_plan.summary.bytes_exact
    assert "bytes_exact" not in api_plan.to_json_dict()["summary"]
    assert api_plan.summary.bytes > plan.summary.bytes
    assert "to free after gc (exact, from the storage)" in summary_line(plan)
    assert "about " in summary_line(api_plan)


CONFIG = """\
[registry.local]
url = "{url}"
{storage}
[registry.local.gc]
command = {command}
"""


def test_gc_dry_run_shows_the_preview_per_repository(server, tmp_path, capsys, isolated_cli):
    pushed = populate(server)
    pusher = ImagePusher(server.url)
    for repository, digests in deletions(pushed).items():
        for digest in sorted(digests):
            assert pusher.delete(repository, digest) == 202
    pusher.close()
    swept = registry_sweep(server)
    command = json.dumps(server.gc_command())
    with_storage = tmp_path / "storage.toml"
    with_storage.write_text(
        CONFIG.format(url=server.url, storage=f'storage = "{server.storage_path}"', command=command)
    )
    without = tmp_path / "api.toml"
    without.write_text(CONFIG.format(url=server.url, storage="", command=command))
    state = ["--state", str(tmp_path / "state.db")]

    shown = run_cli(capsys, "--config", str(with_storage), *state, "gc", "--dry-run", "--json")
    text = run_cli(capsys, "--config", str(with_storage), *state, "gc", "--dry-run")
    plain = run_cli(capsys, "--config", str(without), *state, "gc", "--dry-run", "--json")

    assert shown.code == 0, shown.err
    report = shown.json()
    assert report["ok"] and report["dry_run"]
    found = report["preview"]
    assert found["models"] == "garbage-collect without --delete-untagged"
    assert (found["blobs"], found["bytes"]) == (len(swept), file_sizes(server, swept))
    # Deleted before the preview: nothing references the blobs any more, and each
    # goes to the repositories whose ``_layers`` link it.
    assert found["unreferenced"] == found["bytes"]
    repositories = found["by_repository"]
    assert set(repositories) == {"app/web", "app/api", "app/multi", "app/signed"}
    signed = repositories["app/signed"]
    assert signed["blobs"] == len(pushed["subject"].blob_digests)
    assert signed["bytes"] == file_sizes(server, set(pushed["subject"].blob_digests))
    assert repositories["app/web"]["shared_bytes"] == found["shared"] > 0
    own = sum(usage["bytes"] for usage in repositories.values())
    assert own + found["shared"] + found["unattributed"] == found["bytes"]
    assert text.code == 0 and "GC preview" in text.out
    for name in repositories:
        assert re.search(
            rf"^\s*{re.escape(name)}\s+{repositories[name]['blobs']}\s", text.out, re.M
        )
    assert f"GC would free {len(swept)} blob(s)" in text.out
    assert plain.code == 0 and "preview" not in plain.json()


def test_a_preview_of_deletions_says_whose_blobs_go(server):
    """Before the deletions, a blob freed is attributed to the repositories whose
    manifests referenced it: one alone, or shared (counted once)."""
    pushed = populate(server)
    deleted = deletions(pushed)
    predicted = preview(server, deleted).to_json_dict()

    assert set(predicted["by_repository"]) == {"app/web", "app/api", "app/multi", "app/signed"}
    signed = predicted["by_repository"]["app/signed"]
    subject = pushed["subject"]
    assert signed["blobs"] == 1 + len(subject.blob_digests)
    assert signed["bytes"] == file_sizes(server, {subject.digest, *subject.blob_digests})
    assert signed["shared_blobs"] == 0
    web = predicted["by_repository"]["app/web"]
    assert web["shared_bytes"] == predicted["shared"] > 0


def test_references_follow_distributions_decoding():
    """What ``References()`` lists, per kind (the registry tests above cover the rest)."""
    from regprune.storage._gc_preview import references

    d = ["sha256:" + c * 64 for c in "abcd"]
    oci = {"schemaVersion": 2, "config": {"digest": d[0]}, "layers": [{"digest": d[1]}]}
    index = {"schemaVersion": 2, "manifests": [{"digest": d[2]}, {"digest": d[3]}]}
    typed_index = {**index, "mediaType": "application/vnd.oci.image.index.v1+json"}
    schema1 = {"schemaVersion": 1, "fsLayers": [{"blobSum": d[1]}, {"blobSum": d[1]}]}
    subject = {**oci, "subject": {"digest": d[3]}}

    assert references(json.dumps(oci).encode()) == (d[0], d[1])
    assert references(json.dumps(index).encode()) == (d[2], d[3])
    assert references(json.dumps(typed_index).encode()) == (d[2], d[3])
    assert references(json.dumps(schema1).encode()) == (d[1], d[1])
    assert references(json.dumps(subject).encode()) == (d[0], d[1])
    assert references(b"not json") == ()
    assert references(b"[1, 2]") == ()


def test_what_a_scan_knows_gives_the_references_the_gc_reads(server, tmp_path):
    """A plan hands the preview the references of what its scan read (no second read
    of those manifests): they must be what the GC itself decodes, for every kind."""
    populate(server)
    engine = make_engine(
        server.url, POLICY, state_dir=tmp_path, registry_options=storage_options(server)
    )
    try:
        scans = engine.list_images(DEFAULT_REGISTRY, ["*"])
    finally:
        engine.close()
        engine.state.close()
    layout = StorageLayout(server.storage_path)
    compared = 0
    for scan in scans:
        assert scan.revisions is not None
        for digest, facts in scan.manifests.items():
            refs = facts_references(facts)
            if refs is None:
                continue
            body = layout.read_blob(digest)
            assert body is not None
            assert refs == references(body), digest
            compared += 1
    assert compared >= 10
    # And the preview given them is the preview that reads everything itself.
    known = scanned_storage(scans)
    assert known["known_references"]
    assert preview_gc(layout, **known) == preview_gc(layout)
