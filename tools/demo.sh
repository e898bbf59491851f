#!/usr/bin/env bash
# The embedded demo. Until the live ROS demo lands (issue 6), it shows the model library:
# the model card of every decoder variant and the train-vs-deploy benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
if $BIN/mtl-perception demo --help > /dev/null 2>&1; then
  echo "+ mtl-perception demo"
  exec $BIN/mtl-perception demo "$@"
fi
echo "(no \`mtl-perception demo\` subcommand yet: showing the model library instead)"
for v in baseline moe mlore taskexpert meco; do
  $BIN/mtl-perception model-info --config "config/models/$v.yaml"
  echo
done
mkdir -p outputs
$BIN/mtl-perception bench-decoders --iters 3 --warmup 1 --out outputs/bench_decoders.json > /dev/null
echo "benchmark JSON written to outputs/bench_decoders.json"
