# Developer entry points. The README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test demo lint bench-decoders colcon-build clean-venv help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): requirements.txt setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) tools/install_share.py
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv with pinned dependencies and install the package (editable)

test: setup  ## run the test suite (what CI runs)
	$(VENV)/bin/pytest -q

demo: setup  ## the main job on the embedded default
	bash tools/demo.sh

lint: setup  ## ruff
	$(VENV)/bin/ruff check mtl_perception test tools

bench-decoders: setup  ## every decoder variant, train vs deploy form (JSON)
	$(VENV)/bin/mtl-perception bench-decoders --out docs/bench_decoders.json

colcon-build:  ## build as a ROS 2 package in a scratch colcon workspace (needs colcon + ament)
	bash tools/colcon_build.sh

clean-venv:  ## remove the venv
	rm -rf $(VENV)
