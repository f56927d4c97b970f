"""The installed package layout: core/ → regprune, plugins/ → regprune.plugins, bots/ → regprune.bots."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

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


# What the checkout holds that is no part of a build (caches, venvs, earlier builds).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "site", ".demo", "*.egg-info", "__pycache__", ".*_cache"
)


@dataclass(frozen=True)
class Dists:
    """The wheel and sdist `python -m build` made from a copy of the checkout."""

    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """Build once per module: sdist, then the wheel from the sdist (as pip would).

    ``--no-isolation`` uses the venv's setuptools (a dev dependency), so no network
    is needed; the copy keeps ``build/`` and ``*.egg-info`` out of the checkout.
    """
    tmp = tmp_path_factory.mktemp("dists")
    source, out = tmp / "src", tmp / "dist"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Dists(wheel=wheel, sdist=sdist)


def test_twine_check_passes(dists: Dists) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.wheel), str(dists.sdist)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_wheel_holds_every_package_py_typed_and_no_tests(dists: Dists) -> None:
    names = set(zipfile.ZipFile(dists.wheel).namelist())
    packages = {
        name.removesuffix("/__init__.py").replace("/", ".")
        for name in names
        if name.endswith("/__init__.py")
    }
    assert packages == source_packages()
    assert {"regprune", "regprune.plugins", "regprune.bots"} <= packages
    assert "regprune/py.typed" in names
    assert "regprune/bots/slack/manifest.yml" in names
    assert not [n for n in names if n.startswith(("tests/", "core/", "plugins/", "bots/"))]
    assert not [n for n in names if "conftest" in n or "/test_" in n or "__pycache__" in n]


def test_sdist_holds_the_sources_and_no_half_test_suite(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "core/py.typed", "core/__init__.py"} <= names
    assert {"plugins/__init__.py", "bots/slack/manifest.yml"} <= names
    assert not [n for n in names if n.startswith("tests/")]


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(metadata))


def test_version_has_one_source() -> None:
    """pyproject.toml reads the version from ``regprune.__version__``; it states none itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "regprune.__version__"}


def test_cli_version_is_the_wheel_version(dists: Dists) -> None:
    metadata = _wheel_metadata(dists.wheel)
    assert metadata["Name"] == "regprune"
    done = subprocess.run(
        [sys.executable, "-m", "regprune", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"regprune {metadata['Version']}"
    assert dists.wheel.name.startswith(f"regprune-{metadata['Version']}-")
