# Developer entry points. The README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
# `make setup` is a no-op while these inputs are unchanged (the stamp holds their hash).
SETUP_INPUTS := requirements.txt setup.py pyproject.toml
SETUP_HASH := $(shell cat $(SETUP_INPUTS) | sha256sum | cut -c1-16)

.PHONY: setup test fuzz crash-test demo lint bench-decoders colcon-check colcon-build clean-venv help _install

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup:  ## create .venv with pinned dependencies and install the package (editable + share/lib links)
	@if [ -x $(PY) ] && [ "$$(cat $(STAMP) 2>/dev/null)" = "$(SETUP_HASH)" ] \
	    && [ -e $(VENV)/share/mtl_perception/package.xml ]; then \
	  echo "setup: $(VENV) up to date"; \
	else \
	  $(MAKE) --no-print-directory _install; \
	fi
	@$(PY) tools/install_share.py --quiet  # share/ file links + lib/ executables: cheap, idempotent, every time
	@bash tools/build_msgs.sh $(VENV)  # rosidl msg/ interfaces; a no-op while msg/*.msg are unchanged

_install:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt "setuptools>=64"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@echo "$(SETUP_HASH)" > $(STAMP)

test: setup  ## run the test suite (what CI runs)
	$(VENV)/bin/pytest -q --durations=25

fuzz: setup  ## fuzz every parser (hypothesis): FUZZ_CASES=10000 per parser, totals -> docs/fuzz_totals.json
	FUZZ_CASES=$${FUZZ_CASES:-10000} FUZZ_REPORT=$${FUZZ_REPORT:-docs/fuzz_totals.json} OMP_NUM_THREADS=1 \
	  $(VENV)/bin/pytest -q -p no:cacheprovider -m fuzz test/test_fuzz.py --hypothesis-seed=$${FUZZ_SEED:-14}

crash-test: setup  ## SIGKILL every writer at random instants (KILL_POINTS=56, seed 14); totals -> docs/kill_points.json
	OMP_NUM_THREADS=1 $(PY) tools/kill_points.py --points $${KILL_POINTS:-56} --seed $${KILL_SEED:-14} \
	  --out $${KILL_REPORT:-docs/kill_points.json}

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
