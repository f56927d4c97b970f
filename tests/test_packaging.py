"""The installed package layout: core/ → regprune, plugins/ → regprune.plugins, bots/ → regprune.bots."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"regprune": "core", "regprune.plugins": "plugins", "regprune.bots": "bots"}


def source_packages() -> set[str]:
    """Every directory with an __init__.py under the mapped roots, as an import name."""
    found = set()
    for package, folder in MAPPING.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            found.add(".".join([package, *relative.parts]) if relative.parts else package)
    return found


def test_package_list_matches_the_directories():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert setuptools["package-dir"] == MAPPING
    assert set(setuptools["packages"]) == source_packages()


def test_no_generic_top_level_names_are_installed():
    import importlib.util

    import regprune

    for generic in ("core", "plugins", "bots"):
        spec = importlib.util.find_spec(generic)
        # Running from the checkout puts its root on sys.path; an installed name would live elsewhere.
        assert spec is None or Path(spec.origin or "").parent.parent == ROOT
    assert Path(regprune.__file__).parent == ROOT / "core"
