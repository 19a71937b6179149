"""Evaluate a training run: every checkpoint (or the last ones), then select the best by average.

The paper scores all checkpoints of a run on the fast suite and reports the best one by the
average of its six columns (the checkpoint in parentheses in its tables). ``evaluate_run`` does
that for a run folder written by ``blalm train``: one ``results.json`` per checkpoint under
``RUN_DIR/eval/<checkpoint>/``, and ``RUN_DIR/eval/summary.json`` with the score of every
checkpoint against words seen and the best checkpoint. A checkpoint already scored with the same
settings is not scored again (re-running resumes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from blalm.config import to_dict
from blalm.errors import InputError
from blalm.eval.config import PAPER_COLUMNS, EvalConfig
from blalm.eval.suite import RESULTS_FILE, evaluate_model
from blalm.atomic import write_json_atomic

SUMMARY_FILE = "summary.json"


def evaluate_run(run_dir: Path, cfg: EvalConfig, out_dir: Path | None = None, last: int = 0,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Score the run's checkpoints (all, or the ``last`` N by step) and select the best by average."""
    from blalm.run.checkpoint import list_checkpoints
    from blalm.run.layout import checkpoints_dir

    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(checkpoints_dir(run_dir))
    if not checkpoints:
        raise InputError(f"{run_dir}: no complete checkpoint under checkpoints/ (has the run started?)")
    if last:
        checkpoints = checkpoints[-last:]
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "eval"
    settings = to_dict(cfg)
    rows = []
    for ckpt in checkpoints:
        folder = out_dir / ckpt["name"]
        report = _cached(folder, settings)
        if report is None:
            log(f"{ckpt['name']}: scoring ({ckpt['words_seen']:,} words seen)")
            report = evaluate_model(ckpt["path"], cfg, out_dir=folder, log=log)
        rows.append({"checkpoint": ckpt["name"], "step": ckpt["step"], "words_seen": ckpt["words_seen"],
                     "average": report["average"].get("score"),
                     **{task: report["tasks"].get(task, {}).get("score") for task, _ in PAPER_COLUMNS}})
    scored = [r for r in rows if r["average"] is not None]
    best = max(scored, key=lambda r: r["average"]) if scored else None
    summary = {"run_dir": str(run_dir), "suite": cfg.suite, "checkpoints": rows,
               "best": best, "selection": "highest paper average (BLiMP, Suppl., Entity, EWoK, Eye, Reading)"}
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def _cached(folder: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    path = folder / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return report if report.get("run_info", {}).get("config") == settings else None


def format_run_table(summary: dict[str, Any]) -> str:
    """Score against words seen, one line per checkpoint, the best marked."""
    head = ["checkpoint", "words seen"] + [title for _, title in PAPER_COLUMNS] + ["Avg."]
    keys = [task for task, _ in PAPER_COLUMNS] + ["average"]
    best = (summary.get("best") or {}).get("checkpoint")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in summary["checkpoints"]:
        cells = [r["checkpoint"] + (" (best)" if r["checkpoint"] == best else ""), f"{r['words_seen']:,}"]
        cells += ["n/a" if r[k] is None else f"{r[k]:.2f}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
