"""Test kit: a real Distribution registry on loopback and a pusher of synthetic images.

Used by regprune's own suite and by plugin authors, through the pytest plugin
``regprune.testing.pytest_plugin`` (registered as the ``regprune`` pytest11 entry
point, so its fixtures are available once regprune is installed)::

    def test_prune(registry_server, pusher):
        image = pusher.push_image("team/app", ["v1", "latest"])
        assert pusher.resolve("team/app", "v1") == image.digest

and to plan a policy against it (``regprune_plan`` fixture, or ``run_policy``)::

    def test_selector(pusher, regprune_plan):
        pusher.push_image("team/app", ["v1.0.0"])
        plan = regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": 1}]})
        assert deleted_tags(plan) == set()
"""

from .approvers import ScriptedApprover
from .cli import CliResult, CliRunner, isolate_cli, run_cli
from .faults import FaultProxy, SeenRequest
from .images import ImagePusher, PushedImage, PushError
from .integrity import PulledImage, SkopeoNotFoundError, assert_all_pull, find_skopeo, pull_all
from .plans import (
    APPROVE_ALL,
    DEFAULT_POLICY,
    DEFAULT_REGISTRY,
    PolicyRunner,
    apply_plan,
    days_ago,
    deleted_digests,
    deleted_tags,
    kept_reasons,
    kept_tags,
    make_engine,
    make_settings,
    reasons_for,
    run_policy,
)
from .server import (
    RegistryNotFoundError,
    RegistryServer,
    RegistryStartError,
    find_registry_binary,
    make_self_signed_cert,
)

__all__ = [
    "APPROVE_ALL",
    "DEFAULT_POLICY",
    "DEFAULT_REGISTRY",
    "CliResult",
    "CliRunner",
    "FaultProxy",
    "ImagePusher",
    "PolicyRunner",
    "PulledImage",
    "PushError",
    "PushedImage",
    "RegistryNotFoundError",
    "RegistryServer",
    "RegistryStartError",
    "ScriptedApprover",
    "SeenRequest",
    "SkopeoNotFoundError",
    "apply_plan",
    "assert_all_pull",
    "days_ago",
    "deleted_digests",
    "deleted_tags",
    "find_registry_binary",
    "find_skopeo",
    "isolate_cli",
    "kept_reasons",
    "kept_tags",
    "make_engine",
    "make_self_signed_cert",
    "make_settings",
    "pull_all",
    "reasons_for",
    "run_cli",
    "run_policy",
]
