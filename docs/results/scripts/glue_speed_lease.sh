#!/usr/bin/env bash
# Issue 16's question on one lent GPU: how fast does the GLUE fine-tuning step of our 34M recipe model
# run eager, with --compile (each block compiled, dynamic shapes) and with --compile --compile-mode
# reduce-overhead (CUDA graphs)? A checkpoint of configs/train/strict_small_best.toml after one
# training step (the step time does not depend on the weights), then MultiRC (the protocol's longest
# task: 17,030 of its 25,760 steps; batch 16, inputs up to 512 tokens) for STEPS steps in each mode,
# each in its own process. Prints one JSON line per mode: steps/s over the steps after the first
# WARM (compilation and graph recording excluded) and the wall time with them; each mode's log (with
# dynamo's recompilations, TORCH_LOGS=recompiles) and metrics.jsonl are copied to $OUT. Session 15 ran
# STEPS=150 WARM=30 LIMIT=150 (docs/results/glue_h100.md); session 16 the graphs mode (SIGSEGV). Carry .carry/ss.tar.xz
# and .carry/eval_full.tar.xz (as recipe_lease.sh and submit_lease.sh say).
#   bash docs/results/scripts/glue_speed_lease.sh        # results also in $OUT/glue_speed.jsonl
#   MODES=graphs STEPS=150 WARM=30 LIMIT=200 bash docs/results/scripts/glue_speed_lease.sh   # one mode
set -u
OUT=${OUT:-out/lease}; mkdir -p "$OUT"
W=/tmp/glue_speed; mkdir -p "$W/data" out
# PYTHONFAULTHANDLER: a crash in native code (session 16: reduce-overhead ended with SIGSEGV, no
# traceback) prints the Python stack of every thread into the mode's log
export PYTHONPATH=$PWD/src BLALM_DATA_DIR=$W/data PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
. "$(dirname "$0")/lease_lib.sh"     # unpack
unpack .carry/ss.tar.xz out && unpack .carry/eval_full.tar.xz "$W/data" || exit 1
B="python3 -m blalm.cli"
STEPS=${STEPS:-300}; WARM=${WARM:-50}
[ -d "$W/run/checkpoints" ] || $B train configs/train/strict_small_best.toml --out "$W/run" --set max_steps=1 \
  --set corpus_dir=out/ss --set tokenizer_dir=out/ss/tokenizer --set 'model.mlstm_kernel="triton"' \
  --set progress=false > "$W/train.log" 2>&1 || { tail -20 "$W/train.log"; exit 1; }
CKPT=$(ls -d "$W"/run/checkpoints/*/ | grep -v /latest/ | tail -1)
for mode in ${MODES:-eager compile graphs}; do
  case $mode in eager) flags=();; compile) flags=(--compile);; graphs) flags=(--compile --compile-mode reduce-overhead);; esac
  t0=$(date +%s.%N)
  TORCH_LOGS=recompiles timeout "${LIMIT:-240}" $B finetune "$CKPT" --tasks multirc --out "$W/$mode" \
    "${flags[@]}" --set progress=false --set max_train=$((STEPS * 16)) --set max_valid=64 --set epochs=1 --set log_every=10 \
    > "$W/$mode.log" 2>&1
  rc=$?; t1=$(date +%s.%N)
  python3 - "$W/$mode/multirc/metrics.jsonl" "$mode" "$rc" "$t0" "$t1" "$WARM" <<'PY' | tee -a "$OUT/glue_speed.jsonl"
import json, sys
path, mode, rc, t0, t1, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
try:
    rows = [json.loads(l) for l in open(path)]
except OSError:
    rows = []
train = [r for r in rows if r.get("kind") == "train"]
late = [r for r in train if r["step"] > warm]
steps = 10 * len(late)
secs = sum(r["seconds"] for r in late)
print(json.dumps({"mode": mode, "rc": rc, "wall_s": round(t1 - t0, 1), "steps": train[-1]["step"] if train else 0,
                  "steps_per_s_after_warmup": round(steps / secs, 2) if secs else None,
                  "setup": next((r for r in rows if r.get("kind") == "setup"), {}).get("width_multiple")}))
PY
  cp "$W/$mode.log" "$OUT/glue_speed_$mode.log"     # with dynamo's recompilation reasons
  cp "$W/$mode/multirc/metrics.jsonl" "$OUT/glue_speed_$mode.metrics.jsonl" 2>/dev/null
done
nvidia-smi --query-gpu=name,memory.used --format=csv > "$OUT/nvidia-smi.txt" 2>&1
exit 0
