"""The settings models: ``[registry.NAME]``, ``[policy.NAME]``, ``[state]`` and the
whole ``Settings``, validated with pydantic (the package docstring tells the rules).

Reading and ``${ENV_VAR}`` expansion live in ``loading``; these models only check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    WrapSerializer,
    field_validator,
    model_validator,
)

from ..durations import parse_duration, parse_positive_duration
from ..errors import ConfigError
from ..notify.report import FAILURE, OUTCOMES
from ..patterns import check_pattern
from ..repository_names import check_repository
from ..urls import check_registry_url, registry_identity

if TYPE_CHECKING:
    pass

CONFIG_ENV = "REGPRUNE_CONFIG"
STATE_ENV = "REGPRUNE_STATE"
DEFAULT_TIME_SOURCES = ["created", "label"]
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    # Frozen: settings are checked once, then shared (by bot worker threads too); a
    # change is a copy (``model_copy(update=...)``), never an edit under a reader.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_Value = TypeVar("_Value")

ReadOnly = Annotated[
    Mapping[str, _Value],
    AfterValidator(MappingProxyType),
    WrapSerializer(lambda value, serialize: serialize(dict(value))),
]
"""A ``[section.NAME]`` table of a frozen model: a read-only mapping, dumped as a dict."""


def check_regex(value: str) -> str:
    """Validate a regular expression (RE2 syntax, see ``regprune.patterns``), keeping
    RE2's explanation in the message; plugins use it for their own pattern options."""
    return check_pattern(value)


def _check_duration(value: str) -> str:
    parse_positive_duration(value)
    return value


def _check_schedule(value: str | None) -> str | None:
    """A five-field cron expression croniter accepts.  A sixth field is refused:
    croniter reads it as seconds at the end, where Quartz-style schedules put
    seconds first (``0 0 6 * * 1``), so one expression would mean two schedules."""
    if value is None:
        return None
    from croniter import croniter  # imported here: only configs with a schedule need it

    try:
        valid = croniter.is_valid(value)
    except Exception:  # croniter raises assorted errors on odd input
        valid = False
    if not valid or len(value.split()) != 5:
        raise ValueError(
            f"invalid cron expression {value!r}: use five fields, minute hour day month "
            "weekday, like '0 6 * * 1-5'"
        )
    return value


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_env_name(name: str) -> None:
    """An environment variable name a shell could set: letters, digits, underscores."""
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an environment variable name (letters, digits and _, "
            "not starting with a digit)"
        )


RepositoryGlob = Annotated[
    str,
    AfterValidator(check_repository),
    Field(description="A repository name, or a glob of them ('*' matches across '/')."),
]

Regex = Annotated[
    str,
    AfterValidator(check_pattern),
    Field(description="A regular expression in RE2 syntax (linear time), searched in each tag."),
]


class GcSettings(_Model):
    """How to run the registry's garbage collector for one registry."""

    command: list[str] | None = Field(
        default=None,
        description="The garbage-collect command, as a list, e.g. "
        '["registry", "garbage-collect", "/etc/docker/registry/config.yml"].',
    )
    before: list[list[str]] = Field(
        default_factory=list,
        description="Commands run before GC, in order (e.g. switch the registry to read-only "
        "mode and restart it). GC does not run if one fails.",
    )
    after: list[list[str]] = Field(
        default_factory=list,
        description="Commands run after GC, even when it failed (e.g. leave read-only mode, "
        "restart the registry so its blob descriptor cache is cleared).",
    )
    storage_path: str | None = Field(
        default=None,
        description="The registry's storage root on this machine; when set, regprune records "
        "the bytes GC freed.",
    )
    timeout: str = Field(default="2h", description="Longest a GC command may run.")
    inherit_env: bool = Field(
        default=False,
        description="Whether the GC commands inherit regprune's whole environment; by "
        "default they get only PATH, HOME, LANG, LANGUAGE, LC_*, TZ, pass_env and env.",
    )
    pass_env: list[str] = Field(
        default_factory=list,
        description="Names of variables the GC commands inherit when set, e.g. "
        '["KUBECONFIG", "DOCKER_HOST"].',
    )
    env: ReadOnly[str] = Field(
        default_factory=lambda: MappingProxyType({}),
        description="Variables set for the GC commands (after pass_env; ${ENV} expansion "
        'applies), e.g. { AWS_PROFILE = "registry" }.',
    )

    _timeout = field_validator("timeout")(_check_duration)

    @field_validator("pass_env")
    @classmethod
    def _check_pass_env(cls, names: list[str]) -> list[str]:
        for name in names:
            _check_env_name(name)
        return names

    @field_validator("env")
    @classmethod
    def _check_env(cls, values: Mapping[str, str]) -> Mapping[str, str]:
        for name, value in values.items():
            _check_env_name(name)
            if "\0" in value:
                raise ValueError(f"the value of {name} contains a NUL character")
        return values


class RegistrySettings(BaseModel):
    """One registry regprune talks to.

    The keys below are common to every registry type; a type's own keys are kept as
    extras (``options``) and validated by its back end's model when the plugins are
    known (``check_backend_options``), so a misspelled key is still an error.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    type: str = Field(
        default="distribution",
        description='The registry back end: "distribution" (the Distribution API, the '
        "default) or a type a plugin registers; its own keys sit in this section too.",
    )
    url: str = Field(
        description="Base URL, e.g. https://registry.example.org or http://127.0.0.1:5000."
    )
    username: str | None = Field(default=None, description="User for basic or token auth.")
    password: str | None = Field(default=None, description="Password; use ${ENV} expansion.")
    docker_config: str | None = Field(
        default=None,
        description="Path of a Docker config.json to take credentials from when username is "
        "not set (default ~/.docker/config.json; credsStore and credHelpers are honoured).",
    )
    ca_file: str | None = Field(default=None, description="CA bundle to verify the registry's TLS.")
    concurrency: int = Field(default=8, ge=1, le=64, description="Requests in flight at once.")
    timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds per HTTP request (at most 3600).",
    )
    retries: int = Field(
        default=3, ge=0, le=10, description="Retries on connection errors, 429 and 5xx."
    )
    version: Literal[2, 3] | None = Field(
        default=None,
        description="Distribution major version; 2 makes gc warn before --delete-untagged "
        "while multi-arch images exist.",
    )
    storage: str | None = Field(
        default=None,
        description="The registry's storage root (the filesystem driver's rootdirectory) as "
        "seen from this machine: ls and plan read tags, manifests and push times from it, "
        "read-only; apply still deletes through the API.",
    )
    gc: GcSettings = Field(default_factory=GcSettings, description="Garbage collection.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # No user info (it would be printed and stored), a real host and port.
        return check_registry_url(value)

    @property
    def options(self) -> dict[str, Any]:
        """The keys of this section only its ``type`` knows, for its back end's model."""
        return dict(self.model_extra or {})


class PluginSpec(BaseModel):
    """A plugin's thing to use, with its options: ``{ use = "age", older_than = "14d" }``.

    Selectors, protectors and approvers are chosen this way; everything but ``use``
    is an option, validated by what ``use`` names.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    use: str = Field(description="Registered name of the selector, protector or approver.")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PolicySettings(_Model):
    """What to delete in which repositories of one registry, and who approves it."""

    registry: str = Field(description="Name of a [registry.NAME] section.")
    repositories: list[RepositoryGlob] = Field(
        min_length=1, description="Repository globs, e.g. ['ci/*']; '*' matches across '/'."
    )
    exclude: list[RepositoryGlob] = Field(
        default_factory=list, description="Repository globs to leave out."
    )
    tags: Regex | None = Field(
        default=None,
        description="Only tags matching this regex are considered; an image that also carries "
        "another tag is kept.",
    )
    keep_tags: list[Regex] = Field(
        default_factory=list, description="Tags matching any of these regexes are always kept."
    )
    selectors: list[PluginSpec] = Field(
        min_length=1, description="Selectors; an image is deleted only when all select it."
    )
    protectors: list[PluginSpec] = Field(
        default_factory=list, description="Extra keep rules (e.g. images in use)."
    )
    approval: str = Field(
        default="cli",
        description='An approval method: "cli" (prompt), "auto", or one a front end '
        'registers; or a table with options for the approver: { use = "cli", ... }.',
    )
    gc: bool = Field(default=False, description="Run garbage collection after apply (run, bot).")
    untag: bool = Field(
        default=False,
        description="Remove the tags of a selected image that is kept only because it shares "
        "its digest with a kept tag, when no keep rule keeps them; the image stays. Needs "
        "Distribution 3.x, or untag_2x on 2.x.",
    )
    untag_2x: Literal["overwrite"] | None = Field(
        default=None,
        description='On Distribution 2.x, "overwrite": untag by pointing the tag at a '
        "throwaway manifest and deleting that (needs push permission; see docs/safety.md).",
    )
    time_source: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TIME_SOURCES),
        min_length=1,
        description="Where an image's time comes from, in order: created, label, first_seen.",
    )
    schedule: str | None = Field(
        default=None,
        description="Cron expression; the front end that approves this policy plans it on it.",
    )

    _schedule = field_validator("schedule")(_check_schedule)

    @model_validator(mode="after")
    def _untag_2x_needs_untag(self) -> PolicySettings:
        if self.untag_2x is not None and not self.untag:
            raise ValueError(
                "untag_2x: it only says how to untag on Distribution 2.x; set untag = true "
                "as well, or remove it"
            )
        return self

    @field_validator("time_source", mode="before")
    @classmethod
    def _time_source_tables(cls, value: Any) -> Any:
        """``{ use = "created" }`` is the name ``"created"``: the way plugins are chosen
        elsewhere.  A time source is a function of an image and takes no options."""
        if not isinstance(value, list):
            return value
        names = []
        for index, entry in enumerate(value):
            if isinstance(entry, Mapping):
                extra = sorted(str(key) for key in entry if key != "use")
                if not isinstance(entry.get("use"), str) or extra:
                    raise ValueError(
                        f'entry {index}: a table names a time source with use = "NAME" '
                        "and nothing else (time sources take no options; a plugin's "
                        "settings go in [plugins.NAME])"
                    )
                entry = entry["use"]
            if entry in names:
                raise ValueError(f"entry {index}: {entry!r} is named twice; name each once")
            names.append(entry)
        return names

    # The options of `approval = { use = "NAME", ... }`; the approver validates them.
    _approval_options: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _approval_table(
        cls, data: Any, handler: ModelWrapValidatorHandler[PolicySettings]
    ) -> PolicySettings:
        """``approval = { use = "cli", ... }``: the name stays in ``approval`` (a string,
        as before), the options go to ``approval_options``."""
        options: dict[str, Any] = {}
        if isinstance(data, Mapping) and isinstance(data.get("approval"), Mapping):
            table = dict(data["approval"])
            if isinstance(table.get("use"), str):
                options = {key: value for key, value in table.items() if key != "use"}
                data = {**data, "approval": table["use"]}
        policy = handler(data)
        policy._approval_options = options
        return policy

    @field_validator("approval", mode="before")
    @classmethod
    def _approval_use(cls, value: Any) -> Any:
        if isinstance(value, Mapping):  # a table whose `use` is missing or not a name
            raise ValueError(
                'a table needs use = "NAME", the approver, e.g. { use = "cli" }; '
                f"got use = {value.get('use')!r}"
            )
        return value

    @property
    def approval_options(self) -> dict[str, Any]:
        """The options given with the approver (``approval = { use = ..., KEY = ... }``)."""
        return dict(self._approval_options)


NotifyCommand = Literal["plan", "apply", "run", "gc"]


def _notify_on_default() -> list[str]:
    return [FAILURE]


def _notify_commands_default() -> list[NotifyCommand]:
    return ["plan", "apply", "run", "gc"]


class NotifySettings(BaseModel):
    """One ``[notify.NAME]`` table: where run reports go, and which ones.

    ``use`` names a notifier (a built-in one, see docs/configuration.md#notify, or
    one a plugin registers); its own keys are kept as extras (``options``) and validated by
    that notifier when the plugins are known, so a misspelled key is still an error.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    use: str = Field(
        description="The notifier: a built-in (docs/configuration.md#notify) or one a "
        "plugin registers; its own keys sit in this table too."
    )
    on: list[str] = Field(
        default_factory=_notify_on_default,
        min_length=1,
        description='Which runs are reported: "failure" (exit code not 0), "success" '
        '(exit code 0), "deleted" (something was deleted, whatever the outcome).',
    )
    policies: list[str] = Field(
        default_factory=list,
        description="Policy globs: only plans of matching policies are reported (empty: "
        "every policy). A failure before any plan, and gc, are reported whatever it says.",
    )
    commands: list[NotifyCommand] = Field(
        default_factory=_notify_commands_default,
        min_length=1,
        description="Which commands' runs are reported.",
    )

    @field_validator("on")
    @classmethod
    def _outcomes(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in OUTCOMES:
                raise ValueError(
                    f"{value!r} is not an outcome: use {', '.join(repr(o) for o in OUTCOMES)}"
                )
        return values

    @field_validator("policies")
    @classmethod
    def _policy_globs(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip():
                raise ValueError("a policy glob must not be empty")
        return values

    @property
    def options(self) -> dict[str, Any]:
        """The keys of this table only its notifier knows, for its options model."""
        return dict(self.model_extra or {})


NEVER = "never"


class StateSettings(_Model):
    """The state DB: how long stored plans are kept."""

    plan_retention: str = Field(
        default="90d",
        description="How long plans that finished (done, rejected, expired, cancelled) or "
        'were never approved (pending) are kept before they are removed; "never" keeps them. '
        "Approved, applying and failed plans are never removed.",
    )

    @field_validator("plan_retention")
    @classmethod
    def _plan_retention(cls, value: str) -> str:
        if value.strip().lower() == NEVER:
            return NEVER
        if not isinstance(value, str) or parse_duration(value) <= timedelta(0):
            raise ValueError(
                f"must be longer than 0, not {value!r}; use a duration like '90d', or 'never'"
            )
        return value

    @property
    def retention(self) -> timedelta | None:
        """``plan_retention`` as a timedelta; None when plans are kept forever."""
        return None if self.plan_retention == NEVER else parse_duration(self.plan_retention)


class Settings(_Model):
    """The whole configuration file."""

    registry: ReadOnly[RegistrySettings] = Field(default_factory=lambda: MappingProxyType({}))
    policy: ReadOnly[PolicySettings] = Field(default_factory=lambda: MappingProxyType({}))
    state: StateSettings = Field(
        default_factory=StateSettings, description="The state DB: plan retention."
    )
    notify: ReadOnly[NotifySettings] = Field(
        default_factory=lambda: MappingProxyType({}),
        description="Where run reports go: one [notify.NAME] table per notifier.",
    )
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of a plugin as a whole, one [plugins.NAME] table per plugin "
        "(NAME as `regprune plugins` shows it), validated by that plugin.",
    )
    # Front ends' sections, validated by their own models: {front end name: settings}.
    # Private, so no TOML key can set it; filled by parse_settings.
    _front_ends: dict[str, BaseModel] = PrivateAttr(default_factory=dict)

    def front_end(self, name: str) -> BaseModel | None:
        """The validated config section of front end ``name``; None when the config has none."""
        return self._front_ends.get(name)

    def front_end_settings(self, name: str, model: type[M]) -> M | None:
        """``front_end(name)``, checked to be a ``model`` (what a front end reads its section as)."""
        value = self._front_ends.get(name)
        if value is None:
            return None
        if not isinstance(value, model):
            raise TypeError(
                f"front end {name!r} settings are {type(value).__name__}, not {model.__name__}"
            )
        return value

    def with_front_ends(self, sections: Mapping[str, BaseModel]) -> Settings:
        """A copy of these settings holding ``sections`` (``{front end name: settings}``)."""
        copy = self.model_copy()
        copy._front_ends = {**self._front_ends, **sections}
        return copy

    def check_references(self) -> None:
        """Policies name defined registries, and no registry is defined twice."""
        problems = self.reference_problems()
        if problems:
            raise ConfigError("; ".join(problems))

    def reference_problems(self) -> list[str]:
        """What ``check_references`` refuses, every problem, one line each."""
        problems: list[str] = []
        seen: dict[str, str] = {}
        for name, registry in self.registry.items():
            identity = registry_identity(registry.url)
            if identity in seen:
                # Two names for one registry would split its keep rules between
                # policies and its plans between names: one section per registry.
                problems.append(
                    f"registry.{name}.url: {registry.url} is the same registry as "
                    f"registry.{seen[identity]} ({identity}); define it once and point "
                    f"every policy at registry = {seen[identity]!r}"
                )
                continue
            seen[identity] = name
        for name, policy in self.policy.items():
            if policy.registry not in self.registry:
                known = ", ".join(sorted(self.registry)) or "none"
                problems.append(
                    f"policy.{name}.registry: unknown registry {policy.registry!r} (defined: {known})"
                )
        return problems

    def get_policy(self, name: str) -> PolicySettings:
        if name not in self.policy:
            known = ", ".join(sorted(self.policy)) or "none"
            raise ConfigError(f"unknown policy {name!r} (defined: {known})")
        return self.policy[name]

    def get_registry(self, name: str) -> RegistrySettings:
        if name not in self.registry:
            known = ", ".join(sorted(self.registry)) or "none"
            raise ConfigError(f"unknown registry {name!r} (defined: {known})")
        return self.registry[name]

    def with_registry(self, name: str, registry: RegistrySettings) -> Settings:
        """A copy with ``[registry.NAME]`` added or replaced; this one is unchanged."""
        tables = MappingProxyType({**self.registry, name: registry})
        return self.model_copy(update={"registry": tables})

    def with_policy(self, name: str, policy: PolicySettings) -> Settings:
        """A copy with ``[policy.NAME]`` added or replaced; this one is unchanged."""
        return self.model_copy(update={"policy": MappingProxyType({**self.policy, name: policy})})
