#!/usr/bin/env bash
# Issue 14's figures in one device run: every benchmark in turn, one JSON line each into
# $OUT/speed.jsonl (the log in $OUT/speed.log), so that ours, the plain-PyTorch reference and the
# peers are measured side by side on one GPU. Start it detached and poll $OUT:
#   setsid nohup bash docs/results/scripts/speed_lease.sh > /tmp/speed.out 2>&1 &
# Needs the peers' wheels installed on PYTHONPATH (mlstm_kernels, fla-core, liger-kernel).
set -u
OUT=${OUT:-out/speed}; mkdir -p "$OUT"
J="$OUT/speed.jsonl"; L="$OUT/speed.log"
B="python3 -m blalm.cli bench train configs/train/strict_small.toml --steps 10 --warmup 3"
FAST="--set compile=true --set micro_batch=64 --set model.mlstm_kernel=\"triton\""
TF="--set model_config=configs/model/transformer_250m.toml --set model.short_conv=false"
V="python3 docs/results/scripts/train_variants.py"
SMALL="--set model.num_layers=12 --set model.num_heads=6 --set model.hidden_size=384 --set model.intermediate_size=1024"
MID="--set model.num_layers=12 --set model.num_heads=12 --set model.hidden_size=768 --set model.intermediate_size=2048"
. "$(dirname "$0")/lease_lib.sh"     # run NAME CMD...: one benchmark, its JSON lines tagged NAME
run blalm_ref        $B $FAST --reference
run transformer_ref  $B $FAST $TF --reference
run mixer            python3 -m blalm.cli bench mixer --kernels triton,parallel_compiled --compile --peers all
run blalm_adamw      $B $FAST --set optimizer=\"adamw\"
run blalm_liger      $V liger_flce
run blalm_regional   $V regional
run small_blalm      $B $FAST $SMALL
run small_blalm_c128 $B $FAST $SMALL --set context_length=128 --set global_batch=256 --set micro_batch=256
run mid_blalm        $B $FAST $MID
run small_tf         $B $FAST $TF $SMALL --set model.num_layers=12
echo "== done $(date +%T)" >> "$L"
