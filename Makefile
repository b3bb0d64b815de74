# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Each creates the virtual environment it needs in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs test-gpu fuzz bench proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gate demo

test: $(STAMP)
	$(BIN)/ruff check gate tests proto benchmarks docs
	@if command -v npm >/dev/null; then cd tests/interop && npm ci --no-audit --no-fund --silent; fi
	$(BIN)/mypy
	$(BIN)/pytest -q
	$(MAKE) docs

# the documentation site, into site/; --strict: a broken link or a missing page fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# the CUDA execution provider checks; they skip themselves where CUDA cannot run
test-gpu: $(STAMP)
	$(BIN)/pytest -q -m gpu -rs

# the policy loader fuzzed with 20000 inputs, the rest of tests/test_fuzz.py as in `make test`;
# the seed is fixed, so a failure replays (measured: 1 min 53 s on 2 cores)
fuzz: $(STAMP)
	GATE_FUZZ_EXAMPLES=20000 $(BIN)/pytest -q tests/test_fuzz.py --hypothesis-seed=0

# every benchmark figure, side by side, printed with its target (about ten minutes)
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

# regenerate gate/_proto from proto/ after changing the .proto
proto: $(STAMP)
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache tests/interop/node_modules
