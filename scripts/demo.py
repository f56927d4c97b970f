"""`make demo`: regprune's main job on a throwaway local registry.

Starts a Distribution registry on loopback, pushes a CI-shaped set of images
(branch builds of several ages, releases, `latest`, a multi-arch image, cosign
signatures), then runs the real CLI: ls, plan, apply --yes, gc, and shows the
disk usage before and after.  The registry is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regprune.cli.render import human_bytes
from regprune.testing import ImagePusher, RegistryServer, find_registry_binary

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"


def banner(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def seed(pusher: ImagePusher) -> None:
    now = datetime.now(UTC)
    for app in ("ci/api", "ci/web", "ci/worker"):
        for day in range(0, 40, 3):
            sha = f"{abs(hash((app, day))) % 16**7:07x}"
            image = pusher.push_image(
                app, [f"main-{sha}"], created=now - timedelta(days=day), layer_size=64 * 1024
            )
            if day % 9 == 0:
                pusher.push_signature(app, image.digest)
        for number, day in enumerate((35, 20, 2)):
            pusher.push_image(
                app,
                [f"feature-login-{number:07x}"],
                created=now - timedelta(days=day),
                layer_size=64 * 1024,
            )
        release = pusher.push_image(
            app, ["v1.0.0"], created=now - timedelta(days=90), layer_size=64 * 1024
        )
        pusher.push_signature(app, release.digest)
        pusher.push_image(
            app, ["latest", "v1.1.0"], created=now - timedelta(days=30), layer_size=64 * 1024
        )
    pusher.push_index(
        "ci/api", ["main-multi01"], created=now - timedelta(days=25), layer_size=64 * 1024
    )
    pusher.push_image(
        "ci/api", ["main-0000000"], created="1970-01-01T00:00:00Z", layer_size=64 * 1024
    )


def write_config(server: RegistryServer) -> Path:
    config = WORK / "regprune.toml"
    gc_command = json.dumps(server.gc_command())
    config.write_text(
        f"""# Written by `make demo`.
[registry.demo]
url = "{server.url}"

[registry.demo.gc]
command = {gc_command}
storage_path = "{server.storage_path}"

[policy.ci]
registry = "demo"
repositories = ["ci/*"]
keep_tags = ["^latest$"]
selectors = [
  {{ use = "age", older_than = "14d" }},
  {{ use = "count", keep = 5 }},
]
protectors = [{{ use = "semver", keep = 3 }}]
approval = "cli"
"""
    )
    return config


def regprune(*args: str, env: dict[str, str]) -> None:
    print(f"$ regprune {' '.join(args)}", flush=True)
    command = [sys.executable, "-m", "regprune", *args]
    completed = subprocess.run(command, env=env, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"regprune {args[0]} failed with exit code {completed.returncode}")


def main() -> None:
    try:
        find_registry_binary()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    env = {
        **os.environ,
        "REGPRUNE_CONFIG": str(WORK / "regprune.toml"),
        "REGPRUNE_STATE": str(WORK / "state.db"),
    }
    with RegistryServer(WORK / "registry", delete_enabled=True) as server:
        banner(f"A throwaway registry at {server.url}; pushing CI-shaped images")
        with ImagePusher(server.url) as pusher:
            seed(pusher)
        write_config(server)
        before = server.disk_usage()
        banner(f"Disk usage before: {human_bytes(before)}")
        banner("regprune ls ci/api  (images oldest first, with their build time)")
        regprune("ls", "ci/api", env=env)
        banner("regprune plan  (what would go and why; nothing is deleted)")
        regprune("plan", "--no-keep", env=env)
        plan_id = json.loads(
            subprocess.run(
                [sys.executable, "-m", "regprune", "history", "--json", "--limit", "1"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )[0]["plan_id"]
        banner(f"regprune apply {plan_id} --yes  (re-checks every tag, then deletes)")
        regprune("apply", plan_id, "--yes", env=env)
        banner("regprune gc  (the registry's own garbage-collect frees the disk)")
        regprune("gc", env=env)
        after = server.disk_usage()
        banner(
            f"Disk usage: {human_bytes(before)} before, {human_bytes(after)} after ({human_bytes(before - after)} freed)"
        )
        banner("regprune history")
        regprune("history", "--limit", "8", env=env)
    banner("Done; the registry is stopped. Files are in .demo/")


if __name__ == "__main__":
    main()
