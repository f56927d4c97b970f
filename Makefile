# regprune developer entry points. `make test` is what CI runs (through .ci/run).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes: the tests mostly wait on registries, skopeo and subprocesses (about
# a third of a core each), so 4 on 2 cores finish sooner than 2.
WORKERS ?= 4

.PHONY: venv registry skopeo systemd test lint demo

# The venv is (re)installed when pyproject.toml changes.
venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	# The tutorial's example plugin is no part of the dev install: the suite installs a
	# copy of its own (tests/test_example_plugin.py). Out of a venv made before, too.
	$(VENV)/bin/python -m pip uninstall -q -y regprune-semver 2>/dev/null || true
	touch $@

# A CNCF Distribution registry binary for the test fixtures (apt-get when root).
registry:
	bash scripts/ensure-registry.sh

# skopeo, the independent client the pull check after gc uses (apt-get when root).
skopeo:
	bash scripts/ensure-skopeo.sh

# systemd-analyze, which verifies the recipe in deploy/systemd/ (apt-get when root).
systemd:
	bash scripts/ensure-systemd.sh

test: venv registry skopeo systemd lint
	$(VENV)/bin/pytest -n $(WORKERS) $(PYTEST_ARGS)
	# The registry-facing tests again, against Distribution 3.x (scripts/test-registry3.sh).
	WORKERS=$(WORKERS) PYTEST_ARGS='$(PYTEST_ARGS)' bash scripts/test-registry3.sh

# ruff, then mypy on the installed layout (settings: [tool.mypy] in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python scripts/typecheck.py

# The main job on a throwaway local registry: ls, plan, apply --yes, gc, disk before/after.
demo: venv registry
	$(VENV)/bin/python scripts/demo.py
