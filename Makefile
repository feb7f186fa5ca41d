# Two entry points (see README): `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(CURDIR)/data
SHARED ?= $(CURDIR)/../shared
export REPSEARCH_DATA ?= $(DATA)

.PHONY: setup data demo test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Real data for tests and benchmarks, offline: Debian's Fashion-MNIST, then MNIST and
# cifar10-jpeg from ../shared/datasets when it exists. Never fails the build: tests skip instead.
data: setup
	@[ -d /usr/share/datasets/fashion-mnist ] || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1; } || echo "note: dataset-fashion-mnist not installed; its tests will skip"
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1; } || echo "note: chromium not installed; the report's rendering test will skip"
	@if [ -f $(SHARED)/datasets/materialize.py ]; then $(PY) $(SHARED)/datasets/materialize.py $(DATA); else echo "note: $(SHARED)/datasets absent; MNIST/cifar10-jpeg tests will skip"; fi

demo: setup
	$(VENV)/bin/repsearch run --preset quickstart --out runs/quickstart

test: setup data
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -ra

# The edit-test loop: pure-Python and small in-process tests (no subprocesses, no torchrun, nothing
# marked slow), under 2 minutes on 2 cores. CI runs `make test`.
test-fast: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -ra -m "not slow and not subprocess and not torchrun"

bench: setup data
	$(PY) benchmarks/baseline.py

clean:
	rm -rf $(VENV) runs
