# Developer entry points. The README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
# `make setup` is a no-op while these inputs are unchanged (the stamp holds their hash).
SETUP_INPUTS := requirements.txt setup.py pyproject.toml tools/install_share.py
SETUP_HASH := $(shell cat $(SETUP_INPUTS) | sha256sum | cut -c1-16)

.PHONY: setup test demo lint bench-decoders colcon-check colcon-build clean-venv help _install

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup:  ## create .venv with pinned dependencies and install the package (editable + share links)
	@if [ -x $(PY) ] && [ "$$(cat $(STAMP) 2>/dev/null)" = "$(SETUP_HASH)" ] \
	    && [ -e $(VENV)/share/mtl_perception/package.xml ]; then \
	  echo "setup: $(VENV) up to date"; \
	else \
	  $(MAKE) --no-print-directory _install; \
	fi
	@bash tools/build_msgs.sh $(VENV)  # rosidl msg/ interfaces; a no-op while msg/*.msg are unchanged

_install:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt "setuptools>=64"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) tools/install_share.py
	@echo "$(SETUP_HASH)" > $(STAMP)

test: setup  ## run the test suite (what CI runs)
	$(VENV)/bin/pytest -q

demo: setup  ## the main job on the embedded default
	bash tools/demo.sh

lint: setup  ## ruff
	$(VENV)/bin/ruff check .

bench-decoders: setup  ## every decoder variant, train vs deploy form (JSON)
	$(VENV)/bin/mtl-perception bench-decoders --out docs/bench_decoders.json

colcon-check:  ## build + test as a ROS 2 package in a scratch colcon workspace (own venv under /tmp)
	bash tools/colcon_check.sh

colcon-build: colcon-check

clean-venv:  ## remove the venv
	rm -rf $(VENV)
