#!/usr/bin/env bash
# Fine-tune one model on every available (Super)GLUE task on a CUDA GPU with the BabyLM 2025
# protocol (blalm finetune, bf16 autocast) and write a results JSON with per-task scores, best
# epochs and wall time.
#
#   scripts/glue_device.sh MODEL [RUN_DIR] [DATA]
#
#   MODEL    a blalm checkpoint folder or a Hugging Face model folder, on this machine
#   RUN_DIR  the fine-tuning run folder (default out/glue_device; out/ is git-ignored, so it stays
#            on a warm device machine between calls). Re-running the same command resumes.
#   DATA     the glue_filtered folder, or a .tar.xz holding glue_filtered/ (default
#            .carry/glue_filtered.tar.xz, made here with
#            tar cJf .carry/glue_filtered.tar.xz -C ../shared/data/eval/full_eval glue_filtered)
#
# Environment: BUDGET (seconds, default 540) stops the run in time for the device tool's 10-minute
# limit; the next call with the same arguments continues from the last checkpoint (written at every
# epoch end and every SAVE_EVERY steps, default 500). PYTHON (default python3). TASKS (default all).
# DEVICE (default cuda), SETTINGS (extra --set items), COMPILE (default 1: --compile, each decoder block
# compiled with dynamic shapes, see 'blalm finetune --help'; 0: eager). Each call compiles again (from
# torch's on-disk cache on a warm machine), which costs its first steps and first validation.
# JOBS (default 1): 'blalm finetune --jobs JOBS': the tasks in JOBS processes side by side on the one
# GPU, split into groups of about equal steps, each group's log in RUN_DIR/logs/<group>.log (copied
# to $OUT/glue_logs/ when $OUT is set), then one pass that writes RUN_DIR/results.json (see
# 'blalm finetune --help'). At BUDGET the whole process group is stopped; the next call resumes.
# Writes RUN_DIR/summary.json and, when $OUT is set, $OUT/glue_results.json (the same) and
# $OUT/glue_finetune.log. The summary has, per task: status, accuracy/F1/MCC of the best epoch,
# best_epoch, per-epoch validation scores, seconds (wall time, resumed sessions added), or for an
# unfinished task the step reached; and the GLUE score once every task is done.
set -uo pipefail
MODEL=${1:?usage: scripts/glue_device.sh MODEL [RUN_DIR] [DATA]}
RUN_DIR=${2:-out/glue_device}
DATA=${3:-.carry/glue_filtered.tar.xz}
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
SAVE_EVERY=${SAVE_EVERY:-500}
TASKS=${TASKS:-mnli,mrpc,multirc,qqp,rte,wsc,boolq}
DEVICE=${DEVICE:-cuda}          # cpu: a smoke test of this script, with e.g. SETTINGS="max_train=8 epochs=1"
SETTINGS=${SETTINGS:-}          # more --set KEY=VALUE items, space-separated (keep them between calls)
COMPILE=${COMPILE:-1}           # 0: --no-compile (eager; e.g. for the CPU smoke test)
JOBS=${JOBS:-1}                 # fine-tuning processes side by side (blalm finetune --jobs)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [[ "$DATA" == *.tar.xz ]]; then
    mkdir -p /tmp/glue_data && tar xJf "$DATA" -C /tmp/glue_data || exit 1
    DATA=/tmp/glue_data/glue_filtered
fi
LOG=${OUT:-$RUN_DIR}/glue_finetune.log
mkdir -p "$RUN_DIR" "$(dirname "$LOG")"
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' | tee -a "$LOG"

start=$(date +%s)
timeout --signal=TERM "$BUDGET" "$PYTHON" -m blalm.cli finetune "$MODEL" --tasks "$TASKS" --out "$RUN_DIR" \
    --eval-data "$DATA" --device "$DEVICE" --precision bf16 --jobs "$JOBS" \
    "$([ "$COMPILE" = 0 ] && echo --no-compile || echo --compile)" --set "save_every=$SAVE_EVERY" \
    $(for s in $SETTINGS; do printf -- '--set %s ' "$s"; done) 2>&1 \
    | tr '\r' '\n' | grep --line-buffered -v -e '^finetune [a-z]*:' -e '^ *$' | tee -a "$LOG"
rc=${PIPESTATUS[0]}
echo "finetune exit $rc after $(( $(date +%s) - start )) s (124: stopped at BUDGET; run the same command again)" | tee -a "$LOG"

"$PYTHON" - "$RUN_DIR" "$TASKS" "$rc" <<'PY' | tee -a "$LOG"
import json, sys
from pathlib import Path
run, tasks, rc = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
summary = {"run_dir": str(run), "complete": rc == 0, "tasks": {}}
for t in tasks:
    res, ckpts = run / t / "results.json", run / t / "checkpoints" / "latest"
    if res.is_file():
        r = json.loads(res.read_text())
        r.pop("predictions", None)
        summary["tasks"][t] = r
    elif ckpts.is_file():
        state = json.loads((ckpts.parent / ckpts.read_text().strip() / "state.json").read_text())
        summary["tasks"][t] = {"status": "running", "step": state["step"], "total_steps": state["total_steps"],
                               "per_epoch": state.get("per_epoch", []), "seconds": state.get("seconds")}
    else:
        summary["tasks"][t] = {"status": "not started or not available"}
if (run / "results.json").is_file() and rc == 0:
    report = json.loads((run / "results.json").read_text())
    summary["glue"], summary["seconds_total"] = report["glue"], sum(report.get("task_seconds", {}).values())
(run / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
for t, r in summary["tasks"].items():
    scores = ", ".join(f"{k} {r[k]:.2f}" for k in ("accuracy", "f1", "mcc") if k in r)
    print(f"{t}: {r['status']} {scores} best epoch {r.get('best_epoch', '-')} {r.get('seconds', '-')} s"
          + (f" (step {r['step']}/{r['total_steps']})" if r["status"] == "running" else ""))
print("GLUE:", summary.get("glue", "not complete"))
PY
if [ -n "${OUT:-}" ]; then
    cp "$RUN_DIR/summary.json" "$OUT/glue_results.json"
    if [ -d "$RUN_DIR/logs" ]; then mkdir -p "$OUT/glue_logs" && cp "$RUN_DIR"/logs/*.log "$OUT/glue_logs/"; fi
fi
exit "$rc"
