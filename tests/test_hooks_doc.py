"""docs/plugins/hooks.md documents every hook, with the signature the hookspec has.

Each hook has a ``### name`` section whose first ``python`` block holds the hookspec's
``def`` line exactly (parameter names, types, return type), a ``firstresult:``
statement that matches the spec, and at least one example that compiles.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from regprune import hookspecs
from regprune.plugin_manager import get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
HOOKS_DOC = ROOT / "docs" / "plugins" / "hooks.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)


def spec_hooks() -> dict[str, object]:
    """Hook name -> pluggy HookCaller, for every hook with a spec."""
    manager = get_plugin_manager(load_entrypoints=False)
    return {
        name: caller
        for name, caller in vars(manager.hook).items()
        if not name.startswith("_") and caller.has_spec()
    }


def spec_signatures() -> dict[str, str]:
    """Hook name -> ``def name(args) -> returns:`` as written in core/hookspecs.py."""
    tree = ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8"))
    signatures = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            signatures[node.name] = f"def {node.name}({ast.unparse(node.args)}){returns}:"
    return signatures


def doc_sections() -> dict[str, str]:
    """``### name`` section of hooks.md -> its text (up to the next heading of level <= 3)."""
    text = HOOKS_DOC.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    matches = list(re.finditer(r"^### (\S+)\s*$", text, re.M))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        following = re.search(r"^#{1,2} ", text[match.end() : end], re.M)
        if following:
            end = match.end() + following.start()
        sections[match.group(1).strip("`")] = text[match.end() : end]
    return sections


def python_blocks(section: str) -> list[str]:
    return [code for lang, code in FENCE.findall(section) if lang == "python"]


HOOKS = sorted(spec_hooks())


def test_the_hookspecs_module_and_the_plugin_manager_agree():
    assert set(spec_signatures()) == set(HOOKS)


def test_no_documented_hook_is_missing_from_the_hookspecs():
    stale = set(doc_sections()) - set(HOOKS)
    assert not stale, f"docs/plugins/hooks.md documents hooks that do not exist: {sorted(stale)}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    assert name in doc_sections(), (
        f"hook {name!r} is not documented: add a '### {name}' section to docs/plugins/hooks.md"
    )


@pytest.mark.parametrize("name", HOOKS)
def test_documented_signature_matches_the_hookspec(name):
    section = doc_sections().get(name)
    if section is None:
        pytest.fail(f"hook {name!r} is not documented in docs/plugins/hooks.md")
    blocks = python_blocks(section)
    assert blocks, f"hooks.md: {name} has no python block with its signature"
    first = blocks[0]
    documented = [line for line in first.splitlines() if line.startswith(f"def {name}(")]
    assert documented, f"hooks.md: the first python block of {name} has no 'def {name}(' line"
    # The parameter names pluggy passes, compared on their own for a clear message...
    tree = ast.parse(documented[0] + "\n    ...")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    names = [arg.arg for arg in function.args.args]
    assert names == list(spec_hooks()[name].spec.argnames), (
        f"hooks.md documents {name}({', '.join(names)}), the hookspec is "
        f"{name}({', '.join(spec_hooks()[name].spec.argnames)})"
    )
    # ...then the whole line, types included.
    assert documented[0] == spec_signatures()[name]


@pytest.mark.parametrize("name", HOOKS)
def test_firstresult_is_stated_correctly(name):
    section = doc_sections().get(name, "")
    firstresult = bool(spec_hooks()[name].spec.opts.get("firstresult"))
    stated = re.search(r"\*\*firstresult:\*\* (yes|no)", section)
    assert stated, f"hooks.md: {name} does not say '**firstresult:** yes' or 'no'"
    assert (stated.group(1) == "yes") == firstresult, f"hooks.md: firstresult of {name} is wrong"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_an_example_that_compiles(name):
    blocks = python_blocks(doc_sections().get(name, ""))
    examples = [block for block in blocks[1:] if f"def {name}(" in block and "@hookimpl" in block]
    assert examples, f"hooks.md: {name} has no example implementing it"
    for block in blocks:
        if block.lstrip().startswith(("@hookimpl\ndef", "def ")) and block.rstrip().endswith(":"):
            continue  # a bare signature
        compile(block, f"hooks.md:{name}", "exec")


def test_hook_table_lists_every_hook():
    text = HOOKS_DOC.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| \[`(\w+)`\]\(#\1\)", text, re.M))
    assert listed == set(HOOKS)


def test_hookspec_docstrings_point_at_the_doc():
    assert "docs/plugins/hooks.md" in (hookspecs.__doc__ or "")
