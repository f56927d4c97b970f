"""The type checker's setup: ``make lint`` runs mypy through scripts/typecheck.py."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")


def _typecheck_module():
    spec = importlib.util.spec_from_file_location("typecheck", ROOT / "scripts" / "typecheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lint_runs_mypy():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    lint = makefile[makefile.index("\nlint:") :].split("\n\n")[0]
    assert "ruff check" in lint
    assert "scripts/typecheck.py" in lint
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["mypy"]["disallow_untyped_defs"] is True
    assert any(dep.startswith("mypy") for dep in config["project"]["optional-dependencies"]["dev"])


def test_every_type_ignore_names_its_code_and_says_why():
    bare = []
    for folder in ("core", "plugins", "bots"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                found = IGNORE.search(line)
                if found is None:
                    continue
                rest = found.group("rest")
                # `# type: ignore[code]  # why`: a code, then a reason after it.
                if not re.match(r"^\[[a-z-]+(, *[a-z-]+)*\]\s*#\s*\S", rest):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "give each type: ignore a code and a reason:\n" + "\n".join(bare)


def test_errors_are_reported_with_the_checkout_paths():
    typecheck = _typecheck_module()
    tree = "build/typecheck/regprune/"
    assert typecheck.checkout_path(tree + "plugins/age.py:3: error: x") == "plugins/age.py:3: error: x"
    assert typecheck.checkout_path(tree + "bots/slack/app.py:1: e") == "bots/slack/app.py:1: e"
    assert typecheck.checkout_path(tree + "cli/run_cmd.py:9: e") == "core/cli/run_cmd.py:9: e"
    assert typecheck.checkout_path("Success: no issues found") == "Success: no issues found"


def test_the_tree_has_the_installed_shape():
    typecheck = _typecheck_module()
    typecheck.build_tree()
    package = typecheck.TREE / "regprune"
    assert (package / "__init__.py").resolve() == ROOT / "core" / "__init__.py"
    assert (package / "plugins" / "age.py").resolve() == ROOT / "plugins" / "age.py"
    assert (package / "bots").resolve() == ROOT / "bots"
