"""The built-in keep rules: tags (keep_tags) and in_use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

import regprune.hookspecs
from regprune.models import Protector
from regprune.plugins import in_use, keep_tags

from .plugin_units import CONTEXT, digest, error_of, make_image


def test_modules_register_their_protectors() -> None:
    manager = pluggy.PluginManager("regprune")
    manager.add_hookspecs(regprune.hookspecs)
    manager.register(keep_tags)
    manager.register(in_use)
    registered: dict[str, Any] = {}
    manager.hook.register_protectors(register=registered.__setitem__)
    assert set(registered) == {"tags", "in_use"}
    assert isinstance(registered["tags"]({"patterns": []}), Protector)
    assert isinstance(registered["in_use"]({"file": "x"}), Protector)


# --- keep_tags -------------------------------------------------------------------------


def test_keep_tags_protects_images_with_a_matching_tag() -> None:
    latest = make_image("latest", ["latest", "main-abc1234"])
    release = make_image("release", ["v1.2.3"])
    other = make_image("other", ["feature-x-abc1234"])
    untagged = make_image("untagged")
    protector = keep_tags.KeepTagsProtector.from_options({"patterns": ["^latest$", r"^v\d+"]})
    kept = protector.protect([latest, release, other, untagged], CONTEXT)
    assert kept == {
        latest.digest: "keep_tags: tag 'latest' matches ^latest$",
        release.digest: r"keep_tags: tag 'v1.2.3' matches ^v\d+",
    }


def test_keep_tags_uses_search_and_reports_the_first_sorted_tag() -> None:
    image = make_image("x", ["prod-b", "prod-a"])
    kept = keep_tags.KeepTagsProtector.from_options({"patterns": ["prod"]}).protect(
        [image], CONTEXT
    )
    assert kept == {image.digest: "keep_tags: tag 'prod-a' matches prod"}


def test_keep_tags_with_no_patterns_keeps_nothing() -> None:
    protector = keep_tags.KeepTagsProtector.from_options({"patterns": []})
    assert protector.protect([make_image("a", ["latest"])], CONTEXT) == {}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "patterns: required option missing"),
        ({"patterns": "^latest$"}, "patterns: input should be a valid list"),
        ({"patterns": ["ok", "("]}, "patterns.1: invalid regular expression '('"),
        ({"patterns": [], "tags": []}, "unknown option 'tags' (valid options: patterns)"),
    ],
)
def test_keep_tags_option_errors(options: dict[str, Any], expected: str) -> None:
    assert error_of(keep_tags.KeepTagsProtector.from_options, options).startswith(expected)


# --- in_use: parsing references ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "repository", "tag", "ref_digest"),
    [
        ("ci/app:v1", None, "ci/app", "v1", None),
        ("ci/app", None, "ci/app", "latest", None),
        ("app", None, "app", "latest", None),
        ("registry.example.org/ci/app:v1", "registry.example.org", "ci/app", "v1", None),
        ("localhost:5000/ci/app:v1", "localhost:5000", "ci/app", "v1", None),
        ("localhost/ci/app", "localhost", "ci/app", "latest", None),
        ("Registry.Example.org:443/ci/app", "registry.example.org:443", "ci/app", "latest", None),
        ("ci/app@sha256:abc", None, "ci/app", None, "sha256:abc"),
        (
            "reg.example.org:5000/ci/app:v2@sha256:abc",
            "reg.example.org:5000",
            "ci/app",
            "v2",
            "sha256:abc",
        ),
        (
            "docker-pullable://reg.example.org/ci/app@sha256:abc",
            "reg.example.org",
            "ci/app",
            None,
            "sha256:abc",
        ),
        ("'ci/app:v1',", None, "ci/app", "v1", None),
        ("team/ci/app:v1", None, "team/ci/app", "v1", None),  # 'team' has no '.' or ':'
    ],
)
def test_parse_reference(
    text: str, host: str | None, repository: str, tag: str | None, ref_digest: str | None
) -> None:
    reference = in_use.parse_reference(text)
    assert reference is not None
    assert (reference.host, reference.repository, reference.tag, reference.digest) == (
        host,
        repository,
        tag,
        ref_digest,
    )


@pytest.mark.parametrize("text", ["", "@sha256:abc", "ci/app@nodigest"])
def test_parse_reference_rejects_non_references(text: str) -> None:
    assert in_use.parse_reference(text) is None


# --- in_use: protecting ------------------------------------------------------------------


def test_in_use_from_file_matches_tags_digests_and_hosts(tmp_path: Path) -> None:
    v1 = make_image("v1", ["v1", "v1-extra"])
    pinned = make_image("pinned", ["old"])
    ported = make_image("ported", ["v2"])
    hostless = make_image("hostless", ["v3"])
    foreign = make_image("foreign", ["v4"])
    other_repo_tag = make_image("otherrepo", ["v5"])
    latest = make_image("latest", ["latest"])
    unused = make_image("unused", ["v9"])
    listing = tmp_path / "in-use.txt"
    listing.write_text(
        "registry.example.org/ci/app:v1\n"
        f"localhost:5000/ci/app@{pinned.digest}\n"
        f"registry.example.org:5000/ci/app:v2\n"
        "ci/app:v3 other.example.com/ci/app:v4\n"
        "\tci/other:v5   registry.example.org/ci/app\n"
    )
    protector = in_use.InUseProtector.from_options(
        {
            "file": str(listing),
            "registry_hosts": [
                "registry.example.org",
                "Registry.Example.org:5000",
                "localhost:5000",
            ],
        }
    )
    kept = protector.protect(
        [v1, pinned, ported, hostless, foreign, other_repo_tag, latest, unused], CONTEXT
    )
    source = f"file {listing}"
    assert kept == {
        v1.digest: f"in_use: tag 'v1' referenced as registry.example.org/ci/app:v1 ({source})",
        pinned.digest: f"in_use: referenced as localhost:5000/ci/app@{pinned.digest} ({source})",
        ported.digest: (
            f"in_use: tag 'v2' referenced as registry.example.org:5000/ci/app:v2 ({source})"
        ),
        hostless.digest: f"in_use: tag 'v3' referenced as ci/app:v3 ({source})",
        latest.digest: f"in_use: tag 'latest' referenced as registry.example.org/ci/app ({source})",
    }


def test_in_use_without_registry_hosts_considers_every_host(tmp_path: Path) -> None:
    image = make_image("a", ["v4"])
    listing = tmp_path / "refs"
    listing.write_text("other.example.com/ci/app:v4")
    protector = in_use.InUseProtector.from_options({"file": str(listing)})
    assert image.digest in protector.protect([image], CONTEXT)


def test_in_use_tag_must_be_in_the_same_repository(tmp_path: Path) -> None:
    here = make_image("here", ["v1"], repository="ci/app")
    there = make_image("there", ["v1"], repository="ci/other")
    listing = tmp_path / "refs"
    listing.write_text("ci/other:v1")
    protector = in_use.InUseProtector.from_options({"file": str(listing)})
    assert set(protector.protect([here, there], CONTEXT)) == {there.digest}


def test_in_use_digest_matches_in_any_repository_and_platform_children(tmp_path: Path) -> None:
    # A digest is a digest: deleting it anywhere it is referenced is not worth the risk.
    moved = make_image("moved", ["x"], repository="ci/app")
    index = make_image("index", ["multi"], children=["amd64", "arm64"])
    listing = tmp_path / "refs"
    listing.write_text(f"elsewhere/app@{moved.digest}\nci/app@{digest('arm64')}\n")
    kept = in_use.InUseProtector.from_options({"file": str(listing)}).protect(
        [moved, index], CONTEXT
    )
    assert set(kept) == {moved.digest, index.digest}
    assert kept[index.digest].startswith(
        f"in_use: platform manifest {digest('arm64')[:19]} referenced as"
    )


def test_in_use_command_output_is_read_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    image = make_image("a", ["v1"])
    # What `kubectl get pods -A -o jsonpath={..image}` prints: space-separated references.
    command = ["sh", "-c", f"echo run >> '{runs}'; printf 'ci/app:v1 nginx:1.25 ci/app:v1'"]
    protector = in_use.InUseProtector.from_options({"command": command})
    for _ in range(3):
        kept = protector.protect([image], CONTEXT)
    assert kept[image.digest] == "in_use: tag 'v1' referenced as ci/app:v1 (command sh -c ...)"
    assert runs.read_text().count("run") == 1


def test_in_use_reason_shortens_long_commands() -> None:
    protector = in_use.InUseProtector.from_options(
        {"command": ["kubectl", "get", "pods", "-A", "-o", "jsonpath={..image}"]}
    )
    assert protector.source == "command kubectl get pods -A -o ..."


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"command": ["sh", "-c", "echo boom >&2; exit 3"]},
            r"^command: `sh -c .*` exited with status 3: boom$",
        ),
        (
            {"command": ["/nonexistent/kubectl"]},
            r"^command: command not found: '/nonexistent/kubectl'$",
        ),
        (
            {"file": "/nonexistent/in-use.txt"},
            r"^file: cannot read '/nonexistent/in-use.txt': No such file",
        ),
    ],
)
def test_in_use_read_failures_raise(options: dict[str, Any], expected: str) -> None:
    protector = in_use.InUseProtector.from_options(options)
    for _ in range(2):  # the failure is remembered, never turned into "nothing in use"
        with pytest.raises(ValueError, match=expected):
            protector.protect([make_image("a", ["v1"])], CONTEXT)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "file, command: give one of file or command"),
        ({"file": "a", "command": ["b"]}, "file, command: give only one of file or command"),
        ({"command": "kubectl get pods"}, "command: input should be a valid list"),
        ({"command": []}, "command: must not be empty"),
        (
            {"file": "a", "registry_hosts": "reg.example.org"},
            "registry_hosts: input should be a valid list",
        ),
        (
            {"file": "a", "hosts": []},
            "unknown option 'hosts' (valid options: file, command, registry_hosts)",
        ),
    ],
)
def test_in_use_option_errors(options: dict[str, Any], expected: str) -> None:
    assert error_of(in_use.InUseProtector.from_options, options).startswith(expected)
