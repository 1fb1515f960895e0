# Two commands matter: `make demo` and `make test`. Both create .venv when missing and install
# poolkit into it (again whenever pyproject.toml changes), so a fresh machine needs nothing by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.poolkit-installed

.PHONY: demo test install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/poolkit zoo
	$(BIN)/poolkit export --format all
	$(BIN)/poolkit verify
	$(BIN)/poolkit show
	$(BIN)/poolkit bench --device cpu

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
