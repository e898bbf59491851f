#!/usr/bin/env bash
# The embedded demo (`make demo`): synthetic drive -> live perception_node -> live evaluation.
# Arguments are passed on, e.g. `bash tools/demo.sh --frames 100 --rate 1`; see `mtl-perception demo --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mtl-perception demo "$@"
