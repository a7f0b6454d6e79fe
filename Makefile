# `make demo`, `make test`, `make test-fast` and `make lint` each set everything up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint

$(BIN)/.adatad-installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.adatad-installed

demo: setup
	$(BIN)/accelerate launch --num_processes 1 training/run_tad.py --preset synthetic-tiny \
		--data_dir outputs/synthetic-demo-data --output_dir outputs/synthetic-demo --overwrite_output_dir --plot_timeline 4

# Everything, as CI runs it.
test: setup
	$(BIN)/python -m pytest -q -ra

# The inner loop: leaves out the tests marked slow (subprocesses, whole real annotation files, training runs).
test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow"

lint: setup
	$(BIN)/ruff check .
