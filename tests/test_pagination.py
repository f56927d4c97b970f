"""Catalog pagination past 1,000 repositories on a real registry (2.8.2 caps n at 1,000)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from regprune.testing import days_ago, make_engine


def test_plan_covers_repositories_beyond_the_first_thousand(registry_server, pusher, tmp_path):
    seed = pusher.push_image("base/seed", ["v1"], seed="shared")
    # 1,000 filler repositories, each made by mounting the seed's blobs and putting its
    # manifest (3.x lists only repositories with a manifest; a mount alone is enough on
    # 2.x).  The seed is new, so the age selector leaves the fillers alone, and real
    # images sort after them.
    fillers = [f"ci/a-{n:04d}" for n in range(1000)]
    blobs = [seed.config_digest, *seed.layer_digests]

    def fill(client: httpx.Client, name: str) -> set[int]:
        codes = {
            client.post(f"/v2/{name}/blobs/uploads/?mount={blob}&from=base/seed").status_code
            for blob in blobs
        }
        put = client.put(
            f"/v2/{name}/manifests/filler",
            content=seed.manifest,
            headers={"Content-Type": seed.media_type},
        )
        return codes | {put.status_code}

    with httpx.Client(base_url=registry_server.url) as client, ThreadPoolExecutor(8) as pool:
        codes = set().union(*pool.map(lambda name: fill(client, name), fillers))
    assert codes == {201}
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
