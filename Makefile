# Two commands do all set-up on a fresh machine:  make search   and   make test
# (a virtual environment in .venv, the package (make test: with its test extras), the embedded default data).
VENV ?= .venv
PYTHON ?= python3
BUDGET ?= 4.5G
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: search test install install-test data test-deps benchmark clean

search: install data
	$(BIN)/nas search --budget $(BUDGET)

# Two test processes (pytest-xdist): most tests wait on subprocesses, Ray and servers, so two share 2 cores well.
TEST_WORKERS ?= 2
test: install-test test-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# pyproject.toml takes version ranges; constraints.txt holds the exact torch and torchvision, which pip takes
# from local files.
PIP_INSTALL := $(BIN)/python -m pip install -qq -c constraints.txt
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(PIP_INSTALL) -e .
	touch $@

# The package with its test extras (pytest, pytest-xdist, psycopg2, grpcio): make test only.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[test]'
	touch $@

# $(call apt-install,PACKAGES): install the missing Debian packages (sudo when not root); fails if it cannot.
define apt-install
missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
[ -z "$$missing" ] || { echo "installing $$missing"; export DEBIAN_FRONTEND=noninteractive; \
  $(SUDO) apt-get install -y -q $$missing >/dev/null 2>&1 \
  || { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q $$missing >/dev/null 2>&1; }; }
endef

# The embedded default data set: Fashion-MNIST from Debian's dataset-fashion-mnist package.
data:
	@$(call apt-install,dataset-fashion-mnist) || { echo "could not install dataset-fashion-mnist: run" \
	  "'sudo apt-get install dataset-fashion-mnist', or pass --data PATH to nas search"; exit 1; }

# What some tests use besides Python: a headless Chromium (the dashboard and the report's PNG) and a
# PostgreSQL server (two searches on one study). No test is ever skipped (a skip fails the run), so
# without them `make test` stops here and says what to install. (Without Debian's Fashion-MNIST the
# tests use a synthetic stand-in; it is installed too, so they run on the real default data.)
test-deps:
	@$(call apt-install,dataset-fashion-mnist chromium postgresql) \
	  || { echo "could not install dataset-fashion-mnist, chromium and postgresql: run" \
	    "'sudo apt-get install dataset-fashion-mnist chromium postgresql' and make test again"; exit 1; }

# Every measurement of benchmarks/ (each prints its figures with their noise; README "Benchmarks"). The slow
# ones build their studies once and reuse them: scale.py's 10,000-trial studies take an hour on 2 cores.
benchmark: install-test test-deps
	$(BIN)/python benchmarks/design_space.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/latency_beside_training.py --threads 1 --clock cpu
	$(BIN)/python benchmarks/kernels.py
	$(BIN)/python benchmarks/onnx_parity.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/faults.py
	$(BIN)/python benchmarks/budget.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/proxy_noise.py recipes
	$(BIN)/python benchmarks/gpu.py
	$(BIN)/python benchmarks/workers.py --grpc
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
