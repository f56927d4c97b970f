"""The installed package layout: core/ → regprune, plugins/ → regprune.plugins, bots/ → regprune.bots."""

from __future__ import annotations

import contextlib
import shutil
import tomllib
import zipfile
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


def test_package_data_ships_py_typed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["regprune"]
    assert (ROOT / "core" / "py.typed").is_file()


def test_wheel_holds_py_typed_and_the_slack_manifest(tmp_path):
    """Build the wheel from a copy of the tree (no network: setuptools is installed)."""
    from setuptools import build_meta

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in MAPPING.values():
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    out.mkdir()
    with contextlib.chdir(source):
        wheel = build_meta.build_wheel(str(out))
    names = set(zipfile.ZipFile(out / wheel).namelist())
    assert "regprune/py.typed" in names
    assert "regprune/__init__.py" in names
    assert "regprune/bots/slack/manifest.yml" in names
    assert wheel.startswith("regprune-")
