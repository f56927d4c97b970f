"""Run mypy on regprune as it is installed: ``regprune`` = core/, ``regprune.plugins`` =
plugins/, ``regprune.bots`` = bots/ (``make lint``).

mypy finds a module's file from its name by directory, and the checkout's directory
names (core/) are not the import names (regprune), while the editable install maps
them with an import hook mypy cannot follow.  So this builds, under build/typecheck/,
a tree of symlinks with the installed shape, checks package ``regprune`` there (the
settings are ``[tool.mypy]`` in pyproject.toml) and prints the errors with the
checkout's paths, so they can be clicked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
# Where each package's files are, in the order mypy should be pointed at them.
LAYOUT = {"regprune": "core", "regprune/plugins": "plugins", "regprune/bots": "bots"}


def build_tree() -> None:
    """``build/typecheck/regprune`` mirrors core/, with plugins/ and bots/ linked inside."""
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "regprune"
    package.mkdir(parents=True)
    for entry in (ROOT / "core").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in ("plugins", "bots"):
        (package / name).symlink_to(ROOT / name)


def checkout_path(line: str) -> str:
    """``build/typecheck/regprune/plugins/age.py:3: ...`` -> ``plugins/age.py:3: ...``."""
    prefix = str(TREE.relative_to(ROOT)) + os.sep + "regprune" + os.sep
    if not line.startswith(prefix):
        return line
    rest = line[len(prefix) :]
    for name in ("plugins", "bots"):
        if rest.startswith(name + os.sep):
            return rest
    return "core" + os.sep + rest


def main() -> int:
    build_tree()
    env = {**os.environ, "MYPYPATH": str(TREE)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "regprune", *sys.argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        print(checkout_path(line))
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
