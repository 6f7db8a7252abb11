# The two entry points the README promises: `make run` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow bench setup clean

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every run would
	# otherwise compile ktapjit from source (~100 ms of start-up).
	$(VPY) -m compileall -q ktapjit bench > /dev/null
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ktapjit run --replay examples/data/demo.data examples/syscount.kp

# The default suite, then the slow fuzzing and soak tests within a bounded budget.
test: $(STAMP)
	$(VPY) -m pytest -q
	timeout 1800 $(VPY) -m pytest -q -m slow --durations=15
	timeout 600 $(VPY) -m pytest -q bench/test_bench_cli_smoke.py

test-slow: $(STAMP)
	$(VPY) -m pytest -q -m slow

# The benchmark tables and plot of docs/benchmarks.md (several minutes).
bench: $(STAMP)
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VPY) -m bench --write-docs

clean:
	rm -rf $(VENV) build *.egg-info
