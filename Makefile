# Two commands on a fresh machine (Python >= 3.10 with venv):
#   make demo   installs the project into .venv and runs the built-in default example
#   make test   installs the test dependencies into .venv and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench docs docs-check fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m dynamics demo --out out/demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_jepa.py
	$(BIN)/python benchmarks/bench_rank_growth.py
	$(BIN)/python benchmarks/bench_performance.py
	$(BIN)/python benchmarks/bench_scaleout.py
	$(BIN)/python benchmarks/bench_generalized.py

clean:
	rm -rf $(VENV) out

docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/python -m sphinx -b html docs docs/_build/html

# Build the docs (gallery at its small size) and render every page with math in headless Chromium
# (Debian's package), offline: no raw TeX may remain (docs/check_rendered.py).
docs-check: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	command -v chromium >/dev/null || (apt-get install -y chromium || (apt-get update && apt-get install -y chromium))
	DYNAMICS_GALLERY_SMALL=1 $(BIN)/python -m sphinx -b html docs docs/_build/html-check
	$(BIN)/python docs/check_rendered.py docs/_build/html-check

# The argument fuzzer at length (tests/test_fuzz.py): 3,000 hypothesis examples instead of the suite's 150.
fuzz: $(VENV)/.installed-test
	DYNAMICS_FUZZ_EXAMPLES=3000 DYNAMICS_FUZZ_COMBINATIONS=20000 $(BIN)/python -m pytest -q tests/test_fuzz.py
