"""The documentation is checked against the code.

- docs/configuration.md documents every key of the config model (walked from
  ``Settings`` through its nested models), with the right default, and every
  option of every built-in selector and keep rule; it documents no key that
  does not exist.
- docs/cli.md documents every command and every option flag that the real
  ``--help`` shows, and no command or flag that does not exist.
- The TOML examples of the docs are valid configs.
- ``mkdocs build --strict`` passes without a warning.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import os
import re
import subprocess
import sys
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import typer.main
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from regprune import config
from regprune.bots.slack.settings import SlackSettings
from regprune.cli import make_app
from regprune.config import PolicySettings, parse_settings
from regprune.frontends import collect_front_ends
from regprune.options import Options
from regprune.planner import compile_policy
from regprune.plugin_manager import BLOCK_ENV, LOAD_ENV, Catalog, build_catalog, get_plugin_manager
from regprune.usage.settings import ListenSettings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
CLI = DOCS / "cli.md"
# The pages this test's owner writes; other pages have owners and checks of their own.
OWN_PAGES = [
    ROOT / "README.md",
    DOCS / "index.md",
    DOCS / "getting-started.md",
    CONFIGURATION,
    DOCS / "policies.md",
    CLI,
    DOCS / "operations.md",
]

# Where each model of the config is documented: the {#id} of its section.
SECTION_OF_MODEL: dict[type[BaseModel], str] = {
    config.Settings: "top-level",
    config.RegistrySettings: "registry",
    config.GcSettings: "registry-gc",
    config.PolicySettings: "policy",
    config.PluginSpec: "plugin-spec",
    SlackSettings: "slack",
    ListenSettings: "listen",
    config.StateSettings: "state",
    config.NotifySettings: "notify",
}

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*(?:\{#([\w-]+)\})?\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
TABLE_KEY = re.compile(r"`([^`]+)`")


# -- reading the markdown ---------------------------------------------------------------


def sections(path: Path) -> dict[str, str]:
    """Text under each heading with an explicit ``{#id}``, up to the next heading."""
    found: dict[str, str] = {}
    current: str | None = None
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading:
            current = heading.group(3)
            if current is not None:
                assert current not in found, f"{path.name}: two sections with id {current!r}"
                found[current] = ""
            continue
        if current is not None:
            found[current] += line + "\n"
    return found


def cells(line: str) -> list[str]:
    """The cells of a markdown table row (``\\|`` is a pipe inside a cell)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def key_rows(text: str) -> dict[str, list[str]]:
    """Table rows whose first cell is one backticked key: ``| `url` | ... |``."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        row = cells(line)
        match = re.fullmatch(r"`([^`]+)`", row[0])
        if match:
            rows[match.group(1)] = row
    return rows


# -- the config model ------------------------------------------------------------------------


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """Model classes inside an annotation: ``X | None``, ``list[X]``, ``dict[str, X]``, ..."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, dict, tuple, set, collections.abc.Mapping):
        return [model for arg in typing.get_args(annotation) for model in models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def builtin_manager():
    """The built-in plugins only (what the docs describe), whatever the environment says."""
    with mock.patch.dict(os.environ):
        os.environ.pop(BLOCK_ENV, None)
        os.environ.pop(LOAD_ENV, None)
        return get_plugin_manager(load_entrypoints=False)


def config_models() -> list[type[BaseModel]]:
    """``Settings``, the built-in front ends' section models, and every model reachable
    through their fields."""
    found: list[type[BaseModel]] = []
    todo: list[type[BaseModel]] = [config.Settings]
    todo += [fe.settings for fe in collect_front_ends(builtin_manager()).values() if fe.settings]
    while todo:
        model = todo.pop(0)
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            todo.extend(models_in(field.annotation))
    return found


REQUIRED = object()


def default_of(field: FieldInfo) -> Any:
    if field.is_required():
        return REQUIRED
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def check_default(where: str, field: FieldInfo, cell: str) -> None:
    """The documented default (the third cell) must say what the model says."""
    value = default_of(field)
    if value is REQUIRED:
        assert "required" in cell, f"{where} is required; its default cell says {cell!r}"
    elif value is None or value == {}:
        assert "none" in cell.lower(), (
            f"{where} defaults to nothing; its default cell says {cell!r}"
        )
    elif isinstance(value, BaseModel):
        return  # a nested table, documented in its own section
    elif isinstance(value, bool):
        assert f"`{str(value).lower()}`" in cell, f"{where} defaults to {value}; cell says {cell!r}"
    elif isinstance(value, int | float):
        shown = {f"`{value}`"} | ({f"`{int(value)}`"} if float(value).is_integer() else set())
        assert any(text in cell for text in shown), f"{where} defaults to {value}; cell {cell!r}"
    elif isinstance(value, str):
        assert f'"{value}"' in cell or f"'{value}'" in cell, (
            f"{where} defaults to {value!r}; its default cell says {cell!r}"
        )
    elif isinstance(value, list | tuple):
        assert f"`{json.dumps(list(value))}`" in cell, (
            f"{where} defaults to {json.dumps(list(value))}; its default cell says {cell!r}"
        )
    else:  # pragma: no cover - a new kind of default: teach this test about it
        pytest.fail(f"{where}: cannot check a default of type {type(value).__name__}")


CONFIG_SECTIONS = sections(CONFIGURATION)


def test_every_config_model_has_a_section() -> None:
    for model in config_models():
        assert model in SECTION_OF_MODEL, (
            f"{model.__name__} is a new table of the config: document it in a section "
            "'## ... {#id}' of docs/configuration.md and add it to SECTION_OF_MODEL"
        )
        section = SECTION_OF_MODEL[model]
        assert section in CONFIG_SECTIONS, f"docs/configuration.md has no section {{#{section}}}"


CONFIG_FIELDS = [
    pytest.param(model, name, id=f"{SECTION_OF_MODEL.get(model, model.__name__)}.{name}")
    for model in config_models()
    for name in model.model_fields
]


@pytest.mark.parametrize(("model", "name"), CONFIG_FIELDS)
def test_config_key_is_documented(model: type[BaseModel], name: str) -> None:
    section = SECTION_OF_MODEL[model]
    rows = key_rows(CONFIG_SECTIONS.get(section, ""))
    assert name in rows, (
        f"config key {name!r} of {model.__name__} is not documented: add a row "
        f"'| `{name}` | type | default | meaning |' to section {{#{section}}} of docs/configuration.md"
    )
    row = rows[name]
    assert len(row) >= 4 and row[3], f"{section}.{name}: the row needs type, default and meaning"
    check_default(f"{section}.{name}", model.model_fields[name], row[2])


def front_end_sections() -> set[str]:
    """The top-level sections the built-in front ends claim (``slack``)."""
    front_ends = collect_front_ends(builtin_manager()).values()
    return {section for fe in front_ends if (section := fe.config_section) is not None}


def test_every_front_end_section_is_a_documented_top_level_key() -> None:
    rows = key_rows(CONFIG_SECTIONS["top-level"])
    assert "slack" in front_end_sections()
    for section in front_end_sections():
        assert section in rows, (
            f"front end section [{section}] is not documented: add a row '| `{section}` | "
            "table | none | meaning |' to section {#top-level} of docs/configuration.md"
        )


@pytest.mark.parametrize("model", list(SECTION_OF_MODEL), ids=lambda m: m.__name__)
def test_documented_config_keys_exist(model: type[BaseModel]) -> None:
    section = SECTION_OF_MODEL[model]
    documented = set(key_rows(CONFIG_SECTIONS.get(section, "")))
    # The top level also holds the sections front ends claim.
    extra = front_end_sections() if model is config.Settings else set()
    stale = documented - set(model.model_fields) - extra
    assert not stale, (
        f"section {{#{section}}} documents keys {model.__name__} does not have: {stale}"
    )


# -- built-in selectors and keep rules ------------------------------------------------------


def builtin_catalog() -> Catalog:
    return build_catalog(builtin_manager())


def builtin_option_models() -> Iterator[tuple[str, str, type[Options]]]:
    """``(kind, name, options model)`` of every built-in selector and keep rule."""
    catalog = builtin_catalog()
    for kind, factories in (("selector", catalog.selectors), ("protector", catalog.protectors)):
        for name, factory in sorted(factories.items()):
            module = inspect.getmodule(getattr(factory, "__self__", factory))
            assert module is not None
            if not module.__name__.startswith("regprune.plugins."):
                continue  # not a built-in of regprune.plugins
            models = [
                value
                for value in vars(module).values()
                if isinstance(value, type)
                and issubclass(value, Options)
                and value is not Options
                and value.__module__ == module.__name__
            ]
            assert models, f"built-in {kind} {name!r} ({module.__name__}) has no Options model"
            for model in models:
                yield kind, name, model


PLUGIN_OPTIONS = [
    pytest.param(kind, name, model, option, id=f"{kind}-{name}.{option}")
    for kind, name, model in builtin_option_models()
    for option in model.model_fields
]


def test_builtin_plugins_are_found() -> None:
    kinds = {(kind, name) for kind, name, _ in builtin_option_models()}
    assert {("selector", "age"), ("selector", "count"), ("selector", "branch")} <= kinds
    assert {("protector", "tags"), ("protector", "in_use")} <= kinds


@pytest.mark.parametrize(("kind", "name", "model", "option"), PLUGIN_OPTIONS)
def test_builtin_plugin_option_is_documented(
    kind: str, name: str, model: type[Options], option: str
) -> None:
    section = f"{kind}-{name}"
    assert section in CONFIG_SECTIONS, (
        f"built-in {kind} {name!r} has no section '### `{name}` {{#{section}}}' in "
        "docs/configuration.md"
    )
    rows = key_rows(CONFIG_SECTIONS[section])
    assert option in rows, (
        f"option {option!r} of the built-in {kind} {name!r} is not documented in section "
        f"{{#{section}}} of docs/configuration.md"
    )
    check_default(f"{section}.{option}", model.model_fields[option], rows[option][2])


def test_documented_plugin_options_exist() -> None:
    options: dict[str, set[str]] = {}
    for kind, name, model in builtin_option_models():
        options.setdefault(f"{kind}-{name}", set()).update(model.model_fields)
    for section, text in CONFIG_SECTIONS.items():
        if not section.startswith(("selector-", "protector-")):
            continue
        assert section in options, (
            f"docs/configuration.md documents {section}, which is not built in"
        )
        stale = set(key_rows(text)) - options[section]
        assert not stale, f"section {{#{section}}} documents options that do not exist: {stale}"


# -- built-in notifiers -----------------------------------------------------------------------


def builtin_notifier_models() -> Iterator[tuple[str, type[Options]]]:
    """``(name, options model)`` of every built-in notifier (``[notify.NAME] use``)."""
    catalog = builtin_catalog()
    for name, factory in sorted(catalog.notifiers.items()):
        module = inspect.getmodule(factory)
        assert module is not None and module.__name__.startswith("regprune.plugins."), name
        models = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Options)
            and value is not Options
            and value.__module__ == module.__name__
        ]
        assert len(models) == 1, f"built-in notifier {name!r} needs one Options model"
        yield name, models[0]


def option_keys(model: type[Options]) -> dict[str, FieldInfo]:
    """The keys a user writes: a field's alias when it has one (``from`` for ``sender``)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


NOTIFIER_OPTIONS = [
    pytest.param(name, model, key, id=f"notifier-{name}.{key}")
    for name, model in builtin_notifier_models()
    for key in option_keys(model)
]


def test_builtin_notifiers_are_found() -> None:
    assert {name for name, _ in builtin_notifier_models()} == {"webhook", "slack-webhook", "email"}


@pytest.mark.parametrize(("name", "model", "key"), NOTIFIER_OPTIONS)
def test_builtin_notifier_option_is_documented(name: str, model: type[Options], key: str) -> None:
    section = f"notifier-{name}"
    assert section in CONFIG_SECTIONS, (
        f"built-in notifier {name!r} has no section '### `{name}` {{#{section}}}' in "
        "docs/configuration.md"
    )
    rows = key_rows(CONFIG_SECTIONS[section])
    assert key in rows, f"option {key!r} of notifier {name!r} is not documented in {{#{section}}}"
    check_default(f"{section}.{key}", option_keys(model)[key], rows[key][2])


def test_documented_notifier_options_exist() -> None:
    known = {f"notifier-{name}": set(option_keys(model)) for name, model in builtin_notifier_models()}
    for section, text in CONFIG_SECTIONS.items():
        if section.startswith("notifier-"):
            assert section in known, f"docs/configuration.md documents {section}, not built in"
            stale = set(key_rows(text)) - known[section]
            assert not stale, f"section {{#{section}}} documents options that do not exist: {stale}"


# -- the command line -----------------------------------------------------------------------


def cli_commands() -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """``(path, command, context)`` for the root and every built-in (sub)command."""
    root = typer.main.get_command(make_app(builtin_manager()))

    def walk(command: Any, path: tuple[str, ...], parent: Any) -> Iterator[tuple]:
        name = path[-1] if path else "regprune"
        context = command.context_class(
            command, info_name=name, parent=parent, **(command.context_settings or {})
        )
        yield path, command, context
        for sub_name, sub in sorted(getattr(command, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                yield from walk(sub, (*path, sub_name), context)

    yield from walk(root, (), None)


def help_flags(text: str) -> set[str]:
    """Every option flag in the ``Options:`` block of a ``--help`` text."""
    flags: set[str] = set()
    in_options = False
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            in_options = line.strip() == "Options:"
            continue
        first_column = re.match(r"^\s+(-\S.*?)(?:\s{2,}|$)", line) if in_options else None
        if first_column:
            flags.update(re.findall(r"(?:^|[\s,/])(--?[A-Za-z][\w-]*)", first_column.group(1)))
    return flags


def section_id(path: tuple[str, ...]) -> str:
    return "-".join(path) if path else "global-options"


HELP_FLAGS = {"-h", "--help"}
CLI_SECTIONS = sections(CLI)
COMMANDS = {path: (command, context) for path, command, context in cli_commands()}
DOCUMENTED_COMMANDS = [
    pytest.param(path, id=" ".join(path) or "regprune")
    for path, (command, _) in COMMANDS.items()
    if not path or not hasattr(command, "commands") or command.params
]


def shown_flags(path: tuple[str, ...]) -> set[str]:
    """The option flags the real ``--help`` of this command shows."""
    command, context = COMMANDS[path]
    text = command.get_help(context)
    flags = help_flags(text)
    declared = {
        flag
        for param in command.params
        if param.param_type_name == "option" and not getattr(param, "hidden", False)
        for flag in [*param.opts, *param.secondary_opts]
    }
    # The parser above must see at least what the command declares.
    assert declared <= flags, f"--help of {path} shows {flags}, but the command declares {declared}"
    return flags


@pytest.mark.parametrize("path", DOCUMENTED_COMMANDS)
def test_cli_command_and_options_are_documented(path: tuple[str, ...]) -> None:
    section = section_id(path)
    name = " ".join(("regprune", *path))
    assert section in CLI_SECTIONS, f"docs/cli.md has no section '## {name} {{#{section}}}'"
    text = CLI_SECTIONS[section]
    flags = shown_flags(path) - (set() if not path else HELP_FLAGS)
    missing = sorted(
        flag for flag in flags if not re.search(r"`" + re.escape(flag) + r"(?=[\s`])", text)
    )
    assert not missing, (
        f"docs/cli.md, section {{#{section}}}: options of `{name}` not documented: {missing}"
    )
    command, _ = COMMANDS[path]
    for param in command.params:
        if param.param_type_name == "argument":
            metavar = param.metavar or param.name.upper()
            assert f"`{metavar}`" in text, (
                f"docs/cli.md: argument {metavar} of `{name}` not documented"
            )


def test_cli_documents_no_command_or_flag_that_does_not_exist() -> None:
    by_section = {section_id(path): path for path in COMMANDS}
    for section, text in CLI_SECTIONS.items():
        if section not in by_section:
            continue  # not a command: exit codes, ...
        path = by_section[section]
        real = shown_flags(path) | HELP_FLAGS
        for row in key_rows_any(text):
            for flag in re.findall(r"`(--?[A-Za-z][\w-]*)", row[0]):
                assert flag in real, f"docs/cli.md, section {{#{section}}}: {flag} does not exist"
    headings = re.findall(r"^## regprune (.+?) \{#", CLI.read_text(encoding="utf-8"), re.M)
    for heading in headings:
        assert tuple(heading.split()) in COMMANDS, f"docs/cli.md documents `regprune {heading}`"


def key_rows_any(text: str) -> list[list[str]]:
    """Every table row whose first cell starts with a backticked word."""
    return [
        cells(line)
        for line in text.splitlines()
        if line.lstrip().startswith("|") and cells(line)[0].startswith("`")
    ]


def test_cli_documents_the_exit_codes() -> None:
    text = sections(CLI)["exit-codes"]
    for code in ("0", "1", "2"):
        assert re.search(rf"^\| `{code}` \|", text, re.M), f"exit code {code} is not documented"


# -- the examples -----------------------------------------------------------------------------


class AnyEnvironment(dict):
    """Every ``${NAME}`` is set, so examples can reference secrets."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return "example-value"


TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.M | re.S)


def toml_examples() -> Iterator[Any]:
    for page in OWN_PAGES:
        for number, match in enumerate(TOML_BLOCK.finditer(page.read_text(encoding="utf-8"))):
            yield pytest.param(match.group(1), id=f"{page.name}-{number}")


def complete(data: dict[str, Any]) -> dict[str, Any]:
    """Turn an example fragment into a whole config: fill in what it leaves out."""
    policy_keys = set(PolicySettings.model_fields)
    if data and set(data) <= policy_keys and not isinstance(data.get("registry"), dict):
        data = {"policy": {"example": data}}
    for policy in data.get("policy", {}).values():
        policy.setdefault("registry", "example")
        policy.setdefault("repositories", ["ci/*"])
        policy.setdefault("selectors", [{"use": "age", "older_than": "14d"}])
        data.setdefault("registry", {}).setdefault(policy["registry"], {})
    for registry in data.get("registry", {}).values():
        registry.setdefault("url", "https://registry.example.org")
    return data


@pytest.mark.parametrize("text", list(toml_examples()))
def test_toml_example_is_a_valid_config(text: str) -> None:
    data = tomllib.loads(text)
    settings = parse_settings(complete(data), source="example", environ=AnyEnvironment())
    catalog = builtin_catalog()
    for name, policy in settings.policy.items():
        compile_policy(name, policy, catalog)


# -- hygiene and the site -------------------------------------------------------------------


FORBIDDEN: Mapping[str, str] = {
    # Where this checkout lives is a detail of the machine the docs were written on.
    str(Path(__file__).resolve().parent.parent)
    + "/": "a path of the machine the docs were written on",
    "/root/": "a path of the machine the docs were written on",
}


@pytest.mark.parametrize("page", OWN_PAGES, ids=lambda p: p.name)
def test_page_names_no_machine_path(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for needle, what in FORBIDDEN.items():
        assert needle not in text, f"{page.name} contains {needle!r}, {what}"


def test_mkdocs_build_is_strict_and_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()
