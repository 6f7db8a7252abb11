# The two entry points the README promises: `make run` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The arm64 Python root AArch64 bundles run in under qemu (tests/aarch64/),
# outside the repository; the CLI and the tests find it through this variable.
ARM64_ROOT ?= $(or $(KTAPJIT_ARM64_ROOT),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ktapjit/arm64-root)
export KTAPJIT_ARM64_ROOT := $(ARM64_ROOT)

.PHONY: run test test-slow test-aarch64 arm64-root bench setup test-tools runtime clean

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every run would
	# otherwise compile ktapjit from source (~100 ms of start-up).
	$(VPY) -m compileall -q ktapjit bench > /dev/null
	touch $(STAMP)

setup: $(STAMP) test-tools

# Tools some tests and benchmarks run, installed when missing, as root, where
# apt-get exists; otherwise what needs them skips and says why. Never fails
# the build. prometheus: the server the --metrics tests scrape. bpftrace:
# the live benchmark's reference for in-kernel tracing (bench/live.py).
TEST_TOOLS := prometheus bpftrace

test-tools:
	@for tool in $(TEST_TOOLS); do \
	  command -v $$tool > /dev/null && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$tool > /dev/null) \
	    || echo "make: could not install $$tool: what needs it will skip"; \
	  else \
	    echo "make: $$tool is not installed (needs root and apt-get): what needs it will skip"; \
	  fi; \
	done

# qemu-user-static, gcc-aarch64-linux-gnu and the arm64 root: installed and
# built once (idempotent), or a line saying why the AArch64 tests will skip.
arm64-root: $(STAMP)
	tests/aarch64/make_root.sh $(ARM64_ROOT) $(VENV)/bin/pip

run: $(STAMP)
	$(VENV)/bin/ktapjit run --replay examples/data/demo.data examples/syscount.kp

# The default suite, then the slow fuzzing and soak tests and the AArch64
# tests (every conformance case under qemu: ~2 min) within bounded budgets.
test: $(STAMP) test-tools arm64-root
	$(VPY) -m pytest -q
	timeout 1800 $(VPY) -m pytest -q -m slow --durations=15
	timeout 900 $(VPY) -m pytest -q -m aarch64
	timeout 600 $(VPY) -m pytest -q bench/test_bench_cli_smoke.py

test-slow: $(STAMP) test-tools
	$(VPY) -m pytest -q -m slow

test-aarch64: $(STAMP) arm64-root
	$(VPY) -m pytest -q -m aarch64

# The benchmark tables and plot of docs/benchmarks.md (several minutes).
bench: $(STAMP) test-tools
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VPY) -m bench --write-docs

# The JIT runtime's bitcode and objects (ktapjit/jit/runtime/generated/), from
# its C sources with the pinned clang: after editing the runtime's C.
runtime: $(STAMP)
	$(VPY) -m pip install -q -e '.[runtime]'
	$(VPY) -m ktapjit.jit.runtime_build

clean:
	rm -rf $(VENV) build *.egg-info
