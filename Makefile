# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv, installs tomohet, runs `tomohet demo`
#   make test   -> creates .venv, installs tomohet with test tools, runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[teamtomo,dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/tomohet demo --out tomohet_demo

# file order (pytest-randomly off); .ci/run adds a shuffled pass on another instruction set
test: install
	$(PY) -m pytest -p no:randomly tests

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) tomohet_demo .pytest_cache
