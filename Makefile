# Two commands do all set-up on a fresh machine:  make search   and   make test
# (a virtual environment in .venv, the package and its test extras, the embedded default data).
VENV ?= .venv
PYTHON ?= python3
BUDGET ?= 4.5G
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: search test install data benchmark clean

search: install data
	$(BIN)/nas search --budget $(BUDGET)

test: install
	$(BIN)/python -m pytest

install: $(VENV)/.installed

# torch==2.14.1 and torchvision==0.29.1 are pinned in pyproject.toml; pip takes them from local files.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The embedded default data set: Fashion-MNIST from Debian's dataset-fashion-mnist package.
data:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || { \
	  echo "installing Debian's dataset-fashion-mnist (the default data set)"; \
	  $(SUDO) apt-get install -y dataset-fashion-mnist || { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; } || { \
	    echo "could not install dataset-fashion-mnist: run 'sudo apt-get install dataset-fashion-mnist'," \
	         "or pass --data PATH to nas search"; exit 1; }; }

benchmark: install
	$(BIN)/python benchmarks/design_space.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
