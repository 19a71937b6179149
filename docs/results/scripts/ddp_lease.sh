#!/usr/bin/env bash
# Issue 19's throughput figures on one 2-GPU host (the nvidia-h200-x2 kind), all in one device run:
# one GPU (the baseline, same commit, same lease), then 2 ranks under torchrun with DDP (DDP's
# default 25 MiB buckets and two other sizes) and with FSDP2, then rank 0's profile of a DDP step
# (table and Chrome trace: the all-reduces overlapped with the backward or exposed after it).
# One JSON line each into $OUT/ddp.jsonl (the log in $OUT/ddp.log). Start it detached, poll $OUT:
#   setsid nohup bash docs/results/scripts/ddp_lease.sh > /tmp/ddp.out 2>&1 &
# EXTRA is added to every command (a CPU smoke test of the script: docs/results/performance.md).
set -u
OUT=${OUT:-out/ddp}; mkdir -p "$OUT"
J="$OUT/ddp.jsonl"; L="$OUT/ddp.log"
CFG=${CFG:-configs/train/strict_small.toml}
FAST=${FAST:---set compile=true --set model.mlstm_kernel=\"triton\"}
EXTRA=${EXTRA:-}
PY=${PY:-python3}
ONE="$PY -m blalm.cli bench train $CFG --steps 10 --warmup 3 $FAST $EXTRA"
TWO="$PY -m torch.distributed.run --standalone --nproc_per_node 2 -m blalm.cli bench train $CFG --steps 10 --warmup 3 $FAST $EXTRA"
. "$(dirname "$0")/lease_lib.sh"     # run NAME CMD...: one benchmark, its JSON lines tagged NAME
run one_gpu_m64     $ONE --set micro_batch=64
run one_gpu_m32     $ONE --set micro_batch=32
run ddp_m32         $TWO --set micro_batch=32
run ddp_m32_b100    $TWO --set micro_batch=32 --set ddp_bucket_cap_mb=100
run ddp_m32_b5      $TWO --set micro_batch=32 --set ddp_bucket_cap_mb=5
run fsdp_m32        $TWO --set micro_batch=32 --set parallelism=\"fsdp\"
echo "== profile $(date +%T)" >> "$L"
$TWO --set micro_batch=32 --profile --trace "$OUT/ddp_rank0_trace.json" > "$OUT/ddp_rank0_profile.txt" 2>> "$L"
echo "== done $(date +%T)" >> "$L"
