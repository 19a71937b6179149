#!/usr/bin/env bash
# Issue 16's device run: our strict-small recipe trained with every milestone checkpoint scored
# while it trains, then packaged by `blalm submit` (full suite + GLUE of the best checkpoint on main,
# the fast suite of every milestone, AoA, submission.json). Carry .carry/ss.tar.xz (the corpus and
# tokenizer, as for recipe_lease.sh) and .carry/eval_full.tar.xz, made here with
#   tar cJf .carry/eval_full.tar.xz -C ../shared/data eval          # fast, full (GLUE too), aoa
# then on the device:
#   bash docs/results/scripts/submit_lease.sh start      # returns after 60 s; the chain runs detached
#   bash docs/results/scripts/submit_lease.sh poll 540   # until it ends; results in $OUT/submit.tar.gz
set -u
OUT=${OUT:-out/lease}; mkdir -p "$OUT"
W=/tmp/submit; mkdir -p "$W"
export PYTHONPATH=$PWD/src BLALM_DATA_DIR=$W/data PYTHONUNBUFFERED=1
B="python3 -m blalm.cli"
. "$(dirname "$0")/lease_lib.sh"     # unpack, wait_while
case "$1" in
start)
  mkdir -p out "$W/data"
  unpack .carry/ss.tar.xz out && unpack .carry/eval_full.tar.xz "$W/data" || exit 1
  setsid nohup bash -c "$B train ${CONFIG:-configs/train/strict_small_best.toml} --out $W/run --eval fast \
      --set corpus_dir=out/ss --set tokenizer_dir=out/ss/tokenizer --set progress=false \
    && $B submit $W/run --out $W/sub --main best --name blalm-s384 --quiet" > "$W/chain.log" 2>&1 &
  sleep "${2:-60}" ;;
poll)
  wait_while "blalm.cli (train|submit)" "$2" ;;
esac
(cd "$W" && tar czf "$OUT/submit.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='.git' \
  --exclude='checkpoints' --exclude='.tokens' chain.log run/metrics.jsonl run/config.json run/eval \
  sub/results sub/submission.json sub/README.md sub/model/README.md 2>/dev/null)
tail -5 "$W/chain.log"
