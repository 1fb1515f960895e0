# Two commands matter: `make demo` and `make test`. Both create .venv when missing and install
# poolkit into it (again whenever pyproject.toml changes), so a fresh machine needs nothing by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.poolkit-installed
# The test and lint tools, OpenVINO (the optional runtime CI must exercise) and Playwright come on top:
# `make demo` needs none of them, so a fresh demo does not download them.
DEV_STAMP := $(VENV)/.poolkit-dev-installed
# mypy and import-linter read a package from one folder; poolkit maps exporter/ and runtimes/ into
# poolkit.* at install time, so lint checks a tree of links laid out as the wheel installs it.
TYPECHECK := build/typecheck
TUTORIAL := -m maxpool_ceil -m maxpool_floor -m relu -m sigmoid -m conv -m tudui

.PHONY: demo test install lint typecheck-tree clean browser

install: $(STAMP)

# --no-compile: pip would byte-compile all ~12,000 .py files of torch & co. (40 s of CPU on this EPYC); the
# ~3,000 that poolkit imports compile on first use instead (8 s of CPU, once), so a fresh `make demo` is shorter.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --no-compile --disable-pip-version-check

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[dev,openvino]'
	@touch $(DEV_STAMP)

demo: $(STAMP)
	# The main job on the tutorials' own six modules (`poolkit zoo` lists all 16; leave out the -m options
	# for every model), in TorchScript and ONNX: `--format all` adds torch.export's .pt2 files, whose export
	# and verify would double the time (and verify checks every format exported: see the README).
	$(BIN)/poolkit zoo
	$(BIN)/poolkit export --format torchscript,onnx $(TUTORIAL)
	$(BIN)/poolkit verify $(TUTORIAL)
	$(BIN)/poolkit show $(TUTORIAL) --batches 1
	$(BIN)/poolkit bench --device cpu $(TUTORIAL)
	$(BIN)/poolkit report
	@echo
	@echo "Each command above saved a run in results/runs/ ('$(BIN)/poolkit runs list'); the page is results/report.html."
	@echo "poolkit is installed in $(VENV): run '. $(VENV)/bin/activate' and then 'poolkit --help',"
	@echo "or call '$(BIN)/poolkit' directly. Tab completion: 'poolkit --install-completion'."

# The report's browser test needs Chromium: installed from the OS packages when we are root and it is
# missing (quick when present); otherwise the test skips and says why (CI sets POOLKIT_REQUIRE_BROWSER=1).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "note: no chromium (not root, or apt-get failed): the report's browser test will skip"

test: $(DEV_STAMP) browser
	$(BIN)/python -m pytest -q

typecheck-tree:
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)
	@cp -rs $(CURDIR)/poolkit $(TYPECHECK)/poolkit
	@cp -rs $(CURDIR)/exporter $(TYPECHECK)/poolkit/exporter
	@cp -rs $(CURDIR)/runtimes $(TYPECHECK)/poolkit/runtimes
	@find $(TYPECHECK) -name __pycache__ -prune -exec rm -rf {} +

lint: $(DEV_STAMP) typecheck-tree
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p poolkit

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
