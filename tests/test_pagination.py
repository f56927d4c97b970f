"""Catalog pagination past 1,000 repositories on a real registry (2.8.2 caps n at 1,000)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from regprune.testing import days_ago, make_engine


def test_plan_covers_repositories_beyond_the_first_thousand(registry_server, pusher, tmp_path):
    seed = pusher.push_image("base/seed", ["v1"], seed="shared")
    # A cross-repository blob mount is enough to make a repository appear in the catalog;
    # 1,000 of those keep this test quick, and real images sort after them.
    fillers = [f"ci/a-{n:04d}" for n in range(1000)]
    with httpx.Client(base_url=registry_server.url) as client, ThreadPoolExecutor(8) as pool:
        mount = f"/blobs/uploads/?mount={seed.layer_digests[0]}&from=base/seed"
        codes = list(pool.map(lambda name: client.post(f"/v2/{name}{mount}").status_code, fillers))
    assert set(codes) == {201}
    late = [f"ci/z-{n}" for n in range(3)]
    for name in late:
        pusher.push_image(name, ["build-1"], created=days_ago(30), seed="shared")
    assert len(pusher.catalog(page_size=1000)) == 1004
    engine = make_engine(
        registry_server.url,
        {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]},
        name="ci",
        state_dir=tmp_path,
    )

    plan = engine.plan("ci")

    assert sorted(item.repository for item in plan.delete) == late
