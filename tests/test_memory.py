"""Memory of a large plan (docs/performance.md#memory), held without timing anything.

- The plan's stored text and hash are encoded item by item (``canonical_pieces``), and
  ``plan --json`` is written item by item (``write_plans_json``): both must give exactly
  the bytes of the whole-plan encodings they replace, or approvals would bind to
  another hash and scripts would read other JSON.
- Planning allocates at most a fixed number of bytes per tag, measured with
  ``tracemalloc`` as the difference between two sizes (fixed costs cancel out), in
  this process, for a registry held in memory: the numbers are regprune's own
  structures, not the HTTP client's or the registry's.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import random
import tracemalloc
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from regprune.cli.render import _json_default, write_plans_json
from regprune.config import parse_settings
from regprune.engine import Engine
from regprune.errors import ManifestNotFound
from regprune.mediatypes import OCI_CONFIG, OCI_MANIFEST
from regprune.models import KeepItem, Plan, PlanItem, PlanSummary
from regprune.plugin_manager import get_plugin_manager
from regprune.registry import Manifest
from regprune.state import State
from regprune.state._codec import canonical, canonical_pieces, content_hash

T = TypeVar("T")
R = TypeVar("R")
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# -- the streamed encodings are the whole-plan encodings, byte for byte ----------------

texts = st.text(max_size=12)  # any code point: ensure_ascii differs between the two
maybe = st.none() | texts
digests = st.from_regex(r"sha256:[0-9a-f]{8}", fullmatch=True)


def plan_items() -> st.SearchStrategy[PlanItem]:
    return st.builds(
        PlanItem,
        seq=st.integers(0, 10**6),
        repository=texts,
        digest=digests,
        tags=st.tuples(texts) | st.just(()),
        role=st.sampled_from(["image", "child", "artifact"]),
        parent=st.none() | digests,
        media_type=texts,
        created=maybe,
        size=st.integers(0, 2**40),
        reasons=st.lists(texts, max_size=3).map(tuple),
    )


def keep_items() -> st.SearchStrategy[KeepItem]:
    return st.builds(
        KeepItem,
        repository=texts,
        digest=digests,
        tags=st.lists(texts, max_size=3).map(tuple),
        created=maybe,
        reasons=st.lists(texts, max_size=3).map(tuple),
    )


plans = st.builds(
    Plan,
    id=st.from_regex(r"[0-9a-f]{8}", fullmatch=True),
    registry=texts,
    registry_url=texts,
    policy=texts,
    created_at=st.datetimes(timezones=st.just(UTC)),
    delete=st.lists(plan_items(), max_size=6),
    keep=st.lists(keep_items(), max_size=6),
    summary=st.builds(
        PlanSummary,
        images=st.integers(0, 9),
        manifests=st.integers(0, 9),
        tags=st.integers(0, 9),
        bytes=st.integers(0, 2**40),
        kept_images=st.integers(0, 9),
        repositories=st.dictionaries(texts, st.integers(0, 9), max_size=3),
    ),
    approval=texts,
    gc=st.booleans(),
    content_hash=st.just(""),
    requested_by=texts,
    expires_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    warnings=st.lists(texts, max_size=2),
    keep_rules=st.none() | st.just({"keep_tags": ["^latest$"], "protectors": []}),
)


@settings(max_examples=150, deadline=None)
@given(plan=plans, batch=st.integers(1, 4))
def test_the_stored_text_and_hash_are_those_of_the_whole_content(plan: Plan, batch: int) -> None:
    text = "".join(canonical_pieces(*plan.content_parts(), batch=batch))
    assert text == canonical(plan.content())
    assert hashlib.sha256(text.encode()).hexdigest() == content_hash(plan.content())
    assert json.loads(text) == plan.content()


@settings(max_examples=150, deadline=None)
@given(group=st.lists(plans, max_size=3))
def test_plan_json_is_the_whole_plan_dumped_at_once(group: list[Plan]) -> None:
    out = io.StringIO()
    write_plans_json(group, out)
    data = [plan.to_json_dict() for plan in group]
    whole = data[0] if len(data) == 1 else data
    # What `plan --json` printed before it streamed (render.print_json).
    assert out.getvalue() == json.dumps(whole, indent=2, default=_json_default) + "\n"


def test_a_stored_plan_reads_back_with_its_hash(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    try:
        engine = _engine(state, _MemoryRegistry(repos=2, per_repo=30))
        plan = engine.plan("ci", requested_by="test")
        assert plan.delete and plan.keep  # both lists go through the streamed encoding
        loaded = state.plans.get(plan.id)  # get() refuses a text whose hash differs
        assert loaded.content() == plan.content()
        assert loaded.content_hash == content_hash(plan.content())
    finally:
        state.close()


# -- bytes per tag ------------------------------------------------------------------

POLICY = {
    "registry": "local",
    "repositories": ["bench/*"],
    "keep_tags": ["^latest$"],
    "selectors": [{"use": "age", "older_than": "30d"}, {"use": "count", "keep": 10}],
}
BASE_LAYER = "sha256:" + "b" * 64


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _MemoryRegistry:
    """A registry held in this process: CI-shaped repositories (one image per build and
    ``latest`` on the newest), answered the way a Distribution registry answers."""

    def __init__(self, repos: int, per_repo: int) -> None:
        rng = random.Random(7)
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.tag_lists: dict[str, list[str]] = {}
        for r in range(repos):
            repo = f"bench/app-{r:03d}"
            tags: list[str] = []
            for b in range(per_repo - 1):
                created = NOW - timedelta(seconds=rng.randrange(90 * 86400))
                config = _dumps(
                    {
                        "architecture": "amd64",
                        "os": "linux",
                        "created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        "config": {"Labels": {"org.opencontainers.image.source": repo}},
                    }
                )
                own = _sha(f"{repo}/{b}".encode())
                manifest = _dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": 9},
                        "layers": [
                            {"mediaType": OCI_CONFIG, "digest": layer, "size": 4096}
                            for layer in (BASE_LAYER, own)
                        ],
                    }
                )
                digest = _sha(manifest)
                self.blobs[_sha(config)] = config
                names = [f"main-{b:05d}-{digest[7:14]}"] + (["latest"] if b == per_repo - 2 else [])
                for tag in names:
                    self.manifests[(repo, tag)] = (digest, manifest)
                self.manifests[(repo, digest)] = (digest, manifest)
                tags += names
            self.tag_lists[repo] = tags

    # The RegistryBackend protocol (a plan reads only).
    @property
    def request_count(self) -> int:
        return 0

    @property
    def requests_by_method(self) -> Mapping[str, int]:
        return {}

    def catalog(self) -> list[str]:
        return sorted(self.tag_lists)

    def tags(self, repository: str) -> list[str]:
        return list(self.tag_lists[repository])

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        found = self.manifests.get((repository, reference))
        if found is None:
            raise ManifestNotFound(f"{repository}:{reference} not found")
        digest, content = found
        return Manifest(digest, OCI_MANIFEST, content, json.loads(content))

    def head_manifest(self, repository: str, reference: str) -> str | None:
        found = self.manifests.get((repository, reference))
        return found[0] if found else None

    def get_blob(self, repository: str, digest: str) -> bytes:
        return self.blobs[digest]

    def delete_manifest(self, repository: str, digest: str) -> str:
        raise AssertionError("a plan deletes nothing")

    def preflight(self, repositories: Iterable[str]) -> None:
        pass

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return [fn(item) for item in items]

    def close(self) -> None:
        pass


def _engine(state: State, registry: _MemoryRegistry) -> Engine:
    config = parse_settings(
        {
            "registry": {"local": {"url": "http://127.0.0.1:1", "version": 3}},
            "policy": {"ci": POLICY},
        }
    )
    return Engine(
        config,
        state,
        manager=get_plugin_manager(load_entrypoints=False),
        client_factory=lambda name, settings: registry,
        now=lambda: NOW,
    )


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _peak_of_plan(tmp_path: Path, tags: int, kind: str) -> tuple[int, int]:
    """(tracemalloc peak, tags) of one plan and its ``--json`` output, cold or warm."""
    registry = _MemoryRegistry(repos=tags // 200, per_repo=200)
    state = State(tmp_path / f"{tags}.db")
    try:
        if kind == "warm":
            _engine(state, registry).plan("ci", requested_by="test")
        gc.collect()
        tracemalloc.start()
        try:
            engine = _engine(state, registry)
            plan = engine.plan("ci", requested_by="test")
            write_plans_json([plan], _Discard())
            del plan, engine
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        state.close()
    return peak, sum(len(tags) for tags in registry.tag_lists.values())


# Measured with this test (docs/performance.md#memory): about 1,900 bytes per tag cold
# and 2,300 warm; with the scans kept alive while the whole plan is encoded at once,
# as before, 3,500 cold.
BYTES_PER_TAG = 3_000


def test_a_plan_allocates_a_bounded_number_of_bytes_per_tag(tmp_path: Path) -> None:
    for kind in ("cold", "warm"):
        small, small_tags = _peak_of_plan(tmp_path / kind, 1000, kind)
        large, large_tags = _peak_of_plan(tmp_path / kind, 3000, kind)
        per_tag = (large - small) / (large_tags - small_tags)
        assert per_tag < BYTES_PER_TAG, f"{kind}: {per_tag:.0f} bytes per tag"
