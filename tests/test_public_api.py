"""The public plugin API: what ``regprune`` exports, and that the tutorial uses nothing else.

Plugin authors import from the top-level package only (docs/plugins/writing-plugins.md,
"The public plugin API"); the example plugin and every code block of the tutorial are
held to that here, so the documented surface is the one they really need.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import regprune

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "regprune-semver"
TUTORIAL = ROOT / "docs" / "plugins" / "writing-plugins.md"
# The test kit is its own public package (docs/plugins/testing.md).
PUBLIC_SUBMODULES = {"regprune.testing"}


def test_all_lists_exactly_the_lazy_names_and_each_resolves():
    assert set(regprune.__all__) == {"__version__", "hookimpl", *regprune._LAZY}
    assert len(regprune.__all__) == len(set(regprune.__all__))
    for name in regprune.__all__:
        assert getattr(regprune, name) is not None, name
    assert set(regprune.__all__) <= set(dir(regprune))


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'parse_option'"):
        regprune.parse_option  # noqa: B018 (the access is the test)
    # Submodules still import as usual (their name is not a public attribute).
    from regprune import durations

    assert durations.__name__ == "regprune.durations"


def test_exports_are_the_internal_objects():
    from regprune.errors import UsageError
    from regprune.options import Options, parse_options
    from regprune.patterns import compile_pattern

    assert regprune.Options is Options
    assert regprune.parse_options is parse_options
    assert regprune.compile_pattern is compile_pattern
    assert regprune.UsageError is UsageError


def test_import_regprune_stays_light():
    """``import regprune`` loads pluggy and the hookspecs, not pydantic, typer or httpx."""
    code = (
        "import sys, regprune\n"
        "heavy = [m for m in ('pydantic', 'typer', 'httpx', 'sqlite_utils', 'regprune.models')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""


def test_package_is_marked_typed():
    assert (Path(regprune.__file__).parent / "py.typed").is_file()


def _python_sources() -> list[tuple[str, str]]:
    """(where, code) of the example's modules and of the tutorial's python blocks."""
    sources = [
        (str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        for path in sorted(EXAMPLE.rglob("*.py"))
    ]
    lines = TUTORIAL.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            end = lines.index("```", index + 1)
            block = textwrap.dedent("\n".join(lines[index + 1 : end]))  # methods shown alone
            sources.append((f"writing-plugins.md:{index + 1}", block))
            index = end
        index += 1
    return sources


def private_imports(where: str, code: str) -> list[str]:
    """Every import of regprune in ``code`` that is not ``from regprune import <public>``."""
    found = []
    for node in ast.walk(ast.parse(code, where)):
        if isinstance(node, ast.Import):
            found += [
                f"{where}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "regprune" and alias.name not in PUBLIC_SUBMODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "regprune":
                found += [
                    f"{where}: from regprune import {alias.name} (not in regprune.__all__)"
                    for alias in node.names
                    if alias.name not in regprune.__all__
                ]
            elif node.module.split(".")[0] == "regprune" and node.module not in PUBLIC_SUBMODULES:
                found.append(f"{where}: from {node.module} import ...")
    return found


def test_example_and_tutorial_import_only_the_public_api():
    sources = _python_sources()
    assert len(sources) > 10  # the example's modules and the tutorial's blocks were found
    problems = [problem for where, code in sources for problem in private_imports(where, code)]
    assert not problems, "use `from regprune import ...` only:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "code",
    [
        "from regprune.models import Image",
        "import regprune.patterns",
        "from regprune import State",
        "def f():\n    from regprune.errors import UsageError",
    ],
)
def test_the_import_check_catches_private_imports(code):
    assert private_imports("sample", code)


def test_public_docs_describe_every_export():
    text = TUTORIAL.read_text(encoding="utf-8")
    section = text[text.index("## The public plugin API") :]
    missing = [name for name in regprune.__all__ if f"`{name}" not in section]
    assert not missing, f"writing-plugins.md's public API section omits: {missing}"
