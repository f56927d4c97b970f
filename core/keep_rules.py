"""Keep rules: stored with each plan, built again from the plugin catalog and asked
again by apply, so a tag or image a rule keeps is never deleted.

``keep_rules_spec`` is what a plan stores of its policy's keep rules,
``compile_keep_rules`` builds them back into protectors, ``keep_verdicts`` asks
them about images and their artifacts (an artifact kept keeps its image), and
``tag_verdicts`` about each tag alone (what ``untag`` may remove).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from .config import PolicySettings
from .errors import RegpruneError, UsageError
from .hookcalls import plugin_error
from .models import Image, Protector, SelectionContext
from .plugin_manager import Catalog

T = TypeVar("T")


def keep_rules_spec(policy: PolicySettings) -> dict[str, Any]:
    """The keep rules of a policy as stored with its plan, so apply can run them again."""
    return {
        "keep_tags": list(policy.keep_tags),
        "protectors": [{"use": spec.use, **spec.options} for spec in policy.protectors],
    }


def compile_keep_rules(
    label: str, spec: Mapping[str, Any], catalog: Catalog
) -> list[tuple[str, str, Protector]]:
    """Build stored keep rules again: ``[(label, owning plugin, protector)]``.

    A rule that cannot be built any more (its plugin is gone) is a ConfigError: apply
    then refuses, since it cannot know what that rule would keep.
    """
    rules: list[tuple[str, str, Protector]] = []
    keep_tags = list(spec.get("keep_tags") or [])
    if keep_tags:
        rules.append(
            (
                f"{label}: keep_tags",
                catalog.owner("protector", "tags"),
                catalog.build("protector", "tags", {"patterns": keep_tags}, f"{label}.keep_tags"),
            )
        )
    for index, raw in enumerate(spec.get("protectors") or []):
        options = dict(raw)
        use = str(options.pop("use", ""))
        rules.append(
            (
                f"{label}: {use}",
                catalog.owner("protector", use),
                catalog.build("protector", use, options, f"{label}.protectors.{index}"),
            )
        )
    return rules


def keep_verdicts(
    images: Sequence[Image],
    rules: Sequence[tuple[str, str, Protector]],
    context: SelectionContext,
    policy: str,
) -> dict[str, list[str]]:
    """Ask keep rules about images AND their artifacts: ``{digest: [reasons]}``.

    Signatures, attestations, SBOMs and referrers are shown to keep rules too, and an
    artifact a rule keeps keeps the image it refers to (and so its other artifacts):
    "anything a keep rule matches is never deleted, and neither is what it refers to".
    """
    root_of = {artifact.digest: image for image in images for artifact in image.artifacts}
    artifacts = [artifact for image in images for artifact in image.artifacts]
    protected: dict[str, list[str]] = {}
    for label, owner, protector in rules:
        answers = ask_plugin(
            label,
            owner,
            "protect",
            policy,
            partial(protector.protect, [*images, *artifacts], context),
        )
        for digest, reason in answers.items():
            protected.setdefault(digest, []).append(f"{label}: {reason}" if label else str(reason))
            root = root_of.get(digest)
            if root is not None:
                tags = ", ".join(
                    tag for a in root.artifacts if a.digest == digest for tag in a.tags
                )
                protected.setdefault(root.digest, []).append(
                    f"its artifact {digest[:19]}{f' ({tags})' if tags else ''} is kept "
                    f"({label + ': ' if label else ''}{reason}), and it refers to this image"
                )
    return protected


def ask_plugin(
    label: str, owner: str, method: str, policy: str, call: Callable[[], Mapping[str, T]]
) -> Mapping[str, T]:
    """Run a selector or keep rule, failing closed: the plan (or apply) stops.

    Its ValueError (a failing command, an empty branch list) becomes one clear line;
    any other exception, or an answer that is not a mapping, is a plugin error naming
    the plugin and the method.
    """
    where = f"{method} ({label})" if label else method
    try:
        answer = call()
    except ValueError as exc:
        raise UsageError(f"policy {policy}: {label or owner}: {exc}") from None
    except RegpruneError:
        raise
    except Exception as exc:
        raise plugin_error(owner, where, exc) from exc
    if not isinstance(answer, Mapping):
        raise plugin_error(
            owner, where, f"returned {type(answer).__name__}, not a mapping of digest to answer"
        )
    return answer


def tag_verdicts(
    images: Sequence[Image],
    rules: Sequence[tuple[str, str, Protector]],
    context: SelectionContext,
    policy: str,
    others: Sequence[Image] = (),
) -> dict[tuple[str, str], list[str]]:
    """Ask keep rules about each tag of each image on its own: ``{(digest, tag): reasons}``
    for every tag some rule keeps.

    A keep rule answers per digest, so each tag is shown as the image carrying only that
    tag (without its artifacts: an artifact keeps its image, not one of its tags).  A
    rule that keeps the digest whatever its tags (an image in use by digest) keeps every
    tag.  One call per rule per tag position: ``max(len(image.tags))`` calls, not one
    per tag.  ``others`` (the rest of the repository) are shown in every call too, whole
    but without artifacts, so a rule that ranks tags (``semver``) ranks each tag among
    them rather than alone; what the rules answer about them is not used.
    """
    rounds = max((len(image.tags) for image in images), default=0)
    kept: dict[tuple[str, str], list[str]] = {}
    for position in range(rounds):
        views = [
            replace(image, tags=[image.tags[position]], artifacts=[])
            for image in images
            if position < len(image.tags)
        ]
        tag_of = {view.digest: view.tags[0] for view in views}
        around = [
            other if not other.artifacts else replace(other, artifacts=[])
            for other in others
            if other.digest not in tag_of
        ]
        for digest, reasons in keep_verdicts([*views, *around], rules, context, policy).items():
            if digest in tag_of:
                kept[(digest, tag_of[digest])] = reasons
    return kept
