# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Each creates the virtual environment it needs in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-gpu examples clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	@bash examples/demo.sh

test: $(STAMP)
	$(BIN)/ruff check gate tests examples
	$(BIN)/mypy
	$(BIN)/pytest -q

# the CUDA execution provider checks; they skip themselves where CUDA cannot run
test-gpu: $(STAMP)
	$(BIN)/pytest -q -m gpu -rs

examples: $(STAMP)
	$(BIN)/python examples/build_digits.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
