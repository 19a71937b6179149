#!/usr/bin/env bash
# Sweeps on one lent GPU (issue 18's recipe rounds, issue 17's data-mix comparison): `start EXP RUNS`
# unpacks the carried corpora and tokenizers (.carry/ss.tar.xz -> out/ss, .carry/mix2.tar.xz ->
# out/mix2) and the evaluation data (.carry/eval.tar.xz), then starts the sweep of EXP detached, its
# runs side by side (--jobs), each checkpoint scored on the fast suite while it trains (score_suite);
# `poll S` waits up to S seconds (less when every sweep has ended) and packs what the runs have
# written (configs, metrics, scores, logs) into $OUT/<EXP>.tar.gz. Two sweeps may run at once, but
# mind the memory: a 12 x 384 trainer holds ~14 GB of the H200's 140 and its scorer ~5 GB, so nine
# trainers left no room for their scorers (round 3; a scorer out of memory now waits and retries).
# Exit status 0 unless the carried tarballs could not be unpacked (chain two starts with ';').
#   bash docs/results/scripts/recipe_lease.sh start recipe_search 's384_nodrop_ctx128 s384_nodrop t384_nodrop_ctx128'
#   bash docs/results/scripts/recipe_lease.sh start data_mix 'current mix2'
#   SWEEP_SET='runs.s384_ctx128_ema.seeds=[1, 2]' bash docs/results/scripts/recipe_lease.sh start recipe_search \
#     's384_ctx128_ema s384_nodrop_ctx128_ema t384_ctx128_ema'      # SWEEP_SET: one more --set of the sweep
#   bash docs/results/scripts/recipe_lease.sh poll 540      # waits for the sweeps and an `after` command
#   bash docs/results/scripts/recipe_lease.sh full recipe_search 's384_ctx128_ema'   # after: full suite, bf16 + fp32
#   SEEDS=2 bash docs/results/scripts/recipe_lease.sh full recipe_search 's384_d05_ctx128_ema'   # seed 2 only
# The carried tarballs are made here: `tar cJf .carry/ss.tar.xz -C out ss` (a corpus folder with its
# tokenizer/ inside; mix2 likewise), `tar cJf .carry/eval.tar.xz -C ../shared/data eval/fast_eval eval/aoa`,
# `tar cJf .carry/tok8k.tar.xz -C out ss_tok8k` (recipe_search.toml's corpus curated8k: out/ss with an 8k
# tokenizer, `blalm tokenizer out/ss --out out/ss_tok8k --vocab-size 8000`).
set -u
OUT=${OUT:-out/lease}; mkdir -p "$OUT"
L=/tmp/lease; mkdir -p "$L/data"
export PYTHONPATH=$PWD/src BLALM_DATA_DIR=$L/data PYTHONUNBUFFERED=1
. "$(dirname "$0")/lease_lib.sh"     # unpack, wait_while
corpus() { echo "tracks.strict-small.corpora.$1={dir=\"out/$2\", tokenizer_dir=\"out/$2/tokenizer\"}"; }
case "$1" in
start)
  mkdir -p out
  unpack .carry/eval.tar.xz "$L/data" && unpack .carry/ss.tar.xz out && unpack .carry/mix2.tar.xz out \
    && unpack .carry/tok8k.tar.xz out || exit 1
  case "$2" in
  recipe_search) args=(--set "$(corpus curated ss)" --train-set milestone_scale=1000) ;;
  data_mix) args=(--scale medium --set "$(corpus current ss)" --set "$(corpus mix2 mix2)") ;;
  *) echo "unknown experiment $2"; exit 1 ;;
  esac
  sel=(); for r in $3; do sel+=(--run "$r"); done
  setsid nohup python3 -m blalm.cli sweep "configs/experiments/$2.toml" --out "$L/$2" "${sel[@]}" \
    --jobs "${JOBS:-5}" "${args[@]}" ${SWEEP_SET:+--set "$SWEEP_SET"} \
    --train-set compile=true --train-set 'model.mlstm_kernel="triton"' --train-set 'score_suite="fast"' \
    > "$L/$2.log" 2>&1 &
  sleep "${4:-60}" ;;
after)
  # `after 'CMD'`: run CMD detached once every sweep has ended (the GPU to itself), with OUT=$L/after
  # (packed by the polls as after.tar.gz beside after.log); session 15 chained issue 16's GLUE speed so:
  #   recipe_lease.sh after 'STEPS=150 WARM=30 LIMIT=150 bash docs/results/scripts/glue_speed_lease.sh'
  # (CMD is not the script's last command: bash would exec it, its command line would lose the
  # lease-after mark, and `poll` would stop waiting for it, as in session 16)
  mkdir -p "$L/after"
  OUT=$L/after setsid nohup bash -c ": lease-after; while pgrep -f 'blalm.cli swee[p]' > /dev/null; do sleep 3; done
    $2; echo \"lease-after: exit status \$?\"" \
    > "$L/after.log" 2>&1 < /dev/null &
  sleep 2 ;;
poll)
  wait_while "blalm.cli sweep|lease-after" "$2" ;;
full)
  # `full EXP 'RUNS'`: the full zero-shot suite (BLiMP, supplement, EWoK, entity tracking, WUG, reading)
  # of each named run's best checkpoint (RUN_DIR/eval/summary.json), in bf16 and in fp32, written to
  # RUN_DIR/eval_full_<precision>/ (packed with the rest); carry .carry/eval_full.tar.xz.
  # SEEDS='2' (a glob) limits it to those seeds' runs (default: every seed).
  unpack .carry/eval_full.tar.xz "$L/data" || exit 1
  for r in $3; do
    for s in "$L/$2"/runs/*/"$r"/seed${SEEDS:-*}/eval/summary.json; do
      [ -f "$s" ] || continue
      run=$(dirname "$(dirname "$s")")
      best=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['best']['checkpoint'])" "$s")
      for p in bf16 fp32; do
        python3 -m blalm.cli eval "$run/checkpoints/$best" --suite full --precision "$p" --out "$run/eval_full_$p" \
          --quiet > "$run/eval_full_$p.log" 2>&1 && echo "$run $best $p: $(tail -1 "$run/eval_full_$p.log")"
      done
    done
  done ;;
esac
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv > "$L/nvidia-smi.txt" 2>&1
for s in "$L"/*.log; do
  e=$(basename "$s" .log)
  (cd "$L" && tar czf "$OUT/$e.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='.tokens' \
    --exclude='corpora' --exclude='checkpoints' --exclude='tensorboard' "$e.log" nvidia-smi.txt "$e" 2>/dev/null)
  tail -2 "$s"; for f in "$L/$e"/logs/*.log; do [ -f "$f" ] && { echo "== $f"; tail -2 "$f"; }; done
done
exit 0
