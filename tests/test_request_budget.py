"""The request budget of a plan, counted against a real registry (not timed).

Issue 2's targets: a cold plan (empty digest cache) costs at most 2 requests per new
manifest plus 1 per tag; a warm plan costs exactly 1 request per tag. Both also list
the catalog and each repository's tags (one page each here). Issue 9 adds the
referrers API: one question per manifest of each image the plan deletes where the
registry serves it, and one in all (the "not served" answer) where it does not;
none with ``version = 2``. See docs/performance.md for the timings these counts
lead to.

Every request is recorded by a transport wrapped around httpx's own, so the tests
can say which kind of request went over budget, and check the client's counters
(``engine.request_count``, ``requests_by_method``) against what really went out.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from regprune.config import RegistrySettings
from regprune.engine import Engine
from regprune.models import Plan
from regprune.plugin_manager import get_plugin_manager
from regprune.registry import RegistryClient
from regprune.state import State
from regprune.testing import days_ago, make_settings
from tests.referrers_proxy import ReferrersProxy

POLICY = {
    "repositories": ["ci/*"],
    "keep_tags": ["^latest$"],
    "selectors": [{"use": "age", "older_than": "7d"}, {"use": "count", "keep": 2}],
}


class Recorder(httpx.BaseTransport):
    """Passes requests to httpx's transport and remembers each one's method and kind."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.sent.append((request.method, kind_of(request.url.path)))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def kinds(self) -> Counter[str]:
        return Counter(kind for _, kind in self.sent)

    def methods(self) -> Counter[str]:
        return Counter(method for method, _ in self.sent)


def kind_of(path: str) -> str:
    if path == "/v2/_catalog":
        return "catalog"
    if path.endswith("/tags/list"):
        return "tag list"
    if "/manifests/" in path:
        return "manifest"
    if "/blobs/" in path:
        return "blob"
    if "/referrers/" in path:
        return "referrers"
    return "other"


class Run:
    """One plan with a fresh engine (new connections, as a new process has)."""

    def __init__(self, url: str, state_path: Path, **registry: object) -> None:
        self.recorder = Recorder()
        self.clients: list[RegistryClient] = []

        def client_factory(name: str, settings: RegistrySettings) -> RegistryClient:
            client = RegistryClient(
                settings.url,
                concurrency=settings.concurrency,
                timeout=settings.timeout,
                retries=settings.retries,
                transport=self.recorder,
                referrers_api=False if settings.version == 2 else None,
            )
            self.clients.append(client)
            return client

        self.state = State(state_path)
        self.last_plan: Plan | None = None
        self.engine = Engine(
            make_settings(url, POLICY, name="ci", registry_options=registry),
            self.state,
            manager=get_plugin_manager(load_entrypoints=False),
            client_factory=client_factory,
        )

    def plan(self) -> Counter[str]:
        try:
            self.last_plan = self.engine.plan("ci")
            # The client's own counters agree with what went over the wire.
            assert self.engine.request_count == len(self.recorder.sent)
            by_method: Counter[str] = Counter()
            for client in self.clients:
                by_method.update(client.requests_by_method)
            assert by_method == self.recorder.methods()
            return self.recorder.kinds()
        finally:
            self.engine.close()
            self.state.close()


def seed(pusher) -> dict[str, int]:
    """A CI-shaped registry with every kind of manifest; returns its tag and manifest counts."""
    images = pusher.push_many(
        [
            {"repository": "ci/app", "tags": [f"main-{i:07x}"], "created": days_ago(20 - i)}
            for i in range(12)
        ]
        + [
            {"repository": "ci/worker", "tags": [f"pr-{i}"], "created": days_ago(30 - i)}
            for i in range(6)
        ]
        + [
            {
                "repository": "ci/legacy",
                "tags": [f"v{i}"],
                "created": days_ago(40 - i),
                "media_type": "docker",
            }
            for i in range(4)
        ]
    )
    # Shared digests: "latest" and a second build tag on images that have a tag already.
    pusher.tag("ci/app", images[11].digest, "latest")
    pusher.tag("ci/app", images[3].digest, "main-rebuild")
    # Multi-arch images: one index (2 children) per format.
    oci = pusher.push_index("ci/multi", ["build-1"], created=days_ago(15))
    docker = pusher.push_index("ci/multi", ["build-2"], created=days_ago(14), media_type="docker")
    # Cosign-style signature and attestation of an image; they have no image config.
    pusher.push_signature("ci/app", images[11].digest)
    pusher.push_signature("ci/app", images[11].digest, kind="att")
    # The same image under two repositories (a promoted build): one digest, fetched once.
    promoted = days_ago(3)
    first = pusher.push_image("ci/promoted", ["stable"], seed="promoted", created=promoted)
    again = pusher.push_image("ci/app", ["promoted"], seed="promoted", created=promoted)
    assert first.digest == again.digest

    repositories = [r for r in pusher.catalog() if r.startswith("ci/")]
    tags = sum(len(pusher.tags(r)) for r in repositories)
    manifests = len(images) + 2 + 1  # builds, the two signature artifacts, the shared image
    manifests += 1 + len(oci.children) + 1 + len(docker.children)
    return {"repositories": len(repositories), "tags": tags, "manifests": manifests}


@pytest.fixture
def registry(registry_server, pusher) -> dict[str, int]:
    counts = seed(pusher)
    assert counts["repositories"] == 5
    return counts


def listing(counts: dict[str, int]) -> dict[str, int]:
    """List requests: one catalog page, one tag page per repository (all small here),
    and the one referrers question a registry without the API answers "not served"."""
    return {"catalog": 1, "tag list": counts["repositories"], "referrers": 1}


def test_cold_plan_costs_at_most_two_requests_per_new_manifest_plus_one_per_tag(
    registry_server, registry, tmp_path
):
    kinds = Run(registry_server.url, tmp_path / "state.db").plan()

    assert kinds["other"] == 0
    assert {k: kinds[k] for k in ("catalog", "tag list", "referrers")} == listing(registry)
    budget = 2 * registry["manifests"] + registry["tags"]
    assert kinds["manifest"] + kinds["blob"] <= budget, kinds
    # Every tag was resolved and every new image's config fetched once, not per tag.
    assert kinds["manifest"] >= registry["tags"]
    assert kinds["blob"] <= registry["manifests"]


def test_warm_plan_costs_exactly_one_request_per_tag(registry_server, registry, tmp_path):
    state_path = tmp_path / "state.db"
    Run(registry_server.url, state_path).plan()

    kinds = Run(registry_server.url, state_path).plan()

    assert kinds == {"manifest": registry["tags"], **listing(registry)}
    assert sum(kinds.values()) == registry["tags"] + sum(listing(registry).values())


def test_warm_plan_pays_only_for_what_changed(registry_server, registry, pusher, tmp_path):
    state_path = tmp_path / "state.db"
    Run(registry_server.url, state_path).plan()
    # Since the last plan: a new build, a tag moved to it, and a new tag on a known digest.
    new = pusher.push_image("ci/app", ["main-fffffff"], created=days_ago(1))
    pusher.tag("ci/app", new.digest, "latest")
    known = pusher.resolve("ci/worker", "pr-0")
    assert known is not None
    pusher.tag("ci/worker", known, "pr-0-retry")
    tags = registry["tags"] + 2

    kinds = Run(registry_server.url, state_path).plan()

    assert {k: kinds[k] for k in ("catalog", "tag list", "referrers")} == listing(registry)
    assert kinds["other"] == 0
    # One per tag, plus at most two for the one manifest not seen before.
    assert tags <= kinds["manifest"] + kinds["blob"] <= tags + 2, kinds


def test_request_counts_do_not_depend_on_concurrency(registry_server, registry, tmp_path):
    # The budget holds however the requests are overlapped (no duplicate fetches by
    # racing threads): a serial cold plan costs what a concurrent one does.
    counts = []
    for concurrency in (1, 8):
        run = Run(
            registry_server.url, tmp_path / f"state-{concurrency}.db", concurrency=concurrency
        )
        counts.append(run.plan())
    assert counts[0] == counts[1]


def test_a_configured_version_2_asks_nothing_about_referrers(registry_server, registry, tmp_path):
    state_path = tmp_path / "state.db"
    Run(registry_server.url, state_path, version=2).plan()

    kinds = Run(registry_server.url, state_path, version=2).plan()

    assert kinds == Counter({**listing(registry), "manifest": registry["tags"], "referrers": 0})


def test_where_the_api_is_served_each_deleted_manifest_costs_one_question(
    registry_server, registry, pusher, tmp_path
):
    # Every manifest of every image the plan deletes is asked about once (its own, its
    # platform manifests, its tagged artifacts, each untagged referrer found, for
    # referrers of referrers); a new referrer costs one manifest GET cold (no config:
    # an artifact's is empty) and nothing warm, its facts being cached.
    state_path = tmp_path / "state.db"
    old = pusher.resolve("ci/worker", "pr-0")
    assert old is not None
    referrer = pusher.push_image(
        "ci/worker", [], subject=old, artifact_type="application/spdx+json"
    )
    with ReferrersProxy(registry_server) as proxy:
        cold_run = Run(proxy.url, state_path)
        cold = cold_run.plan()
        cold_asked = list(proxy.referrer_requests)
        proxy.referrer_requests.clear()
        warm_run = Run(proxy.url, state_path)
        warm = warm_run.plan()
        warm_asked = list(proxy.referrer_requests)

    plan = warm_run.last_plan
    assert plan is not None and referrer.digest in {item.digest for item in plan.delete}
    assert referrer.digest in warm_asked  # a referrer is asked about in turn
    assert sorted(warm_asked) == sorted({item.digest for item in plan.delete})
    assert cold["referrers"] == len(cold_asked) == warm["referrers"] == len(plan.delete)
    assert cold["manifest"] <= registry["tags"] + 1 + 2 * registry["manifests"]
    assert warm == {
        "manifest": registry["tags"],
        **listing(registry),
        "referrers": len(plan.delete),
    }
