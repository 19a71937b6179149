#!/usr/bin/env bash
# Issue 18's recipe rounds on one lent GPU: `start` unpacks the carried strict-small corpus and the
# evaluation data (.carry/ss.tar.xz, .carry/eval.tar.xz), then starts the sweep detached, its runs
# side by side (--jobs), each checkpoint scored on the fast suite while it trains (score_suite);
# `poll S` waits up to S seconds (less when the sweep ends) and packs what the runs have written
# (configs, metrics, scores, logs) into $OUT/recipe.tar.gz. RUNS names the grid's runs (--run).
#   bash docs/results/scripts/recipe_lease.sh start 's384_nodrop_ctx128 s384_nodrop t384_nodrop_ctx128'
#   bash docs/results/scripts/recipe_lease.sh poll 540
set -u
OUT=${OUT:-out/lease}; mkdir -p "$OUT"
W=/tmp/recipe; mkdir -p "$W"
export PYTHONPATH=$PWD/src BLALM_DATA_DIR=$W/data PYTHONUNBUFFERED=1
case "$1" in
start)
  mkdir -p out "$W/data"
  tar xJf .carry/ss.tar.xz -C out && tar xJf .carry/eval.tar.xz -C "$W/data" || exit 1
  sel=""; for r in $2; do sel="$sel --run $r"; done
  setsid nohup python3 -m blalm.cli sweep configs/experiments/recipe_search.toml --out "$W/sweep" $sel \
    --jobs "${JOBS:-5}" --set eval.enabled=false \
    --set 'tracks.strict-small.corpora.curated={dir="out/ss", tokenizer_dir="out/ss/tokenizer"}' \
    --train-set compile=true --train-set 'model.mlstm_kernel="triton"' \
    --train-set 'score_suite="fast"' --train-set milestone_scale=1000 > "$W/sweep.log" 2>&1 &
  sleep "${3:-60}" ;;
poll)
  for _ in $(seq 1 "$2"); do pgrep -f "blalm.cli sweep" > /dev/null || break; sleep 1; done ;;
esac
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv > "$W/nvidia-smi.txt" 2>&1
(cd "$W" && tar czf "$OUT/recipe.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='tokens*' \
  --exclude='corpora' --exclude='checkpoints' sweep.log nvidia-smi.txt sweep 2>/dev/null)
tail -3 "$W/sweep.log"; for f in "$W"/sweep/logs/*.log; do echo "== $f"; tail -2 "$f"; done
