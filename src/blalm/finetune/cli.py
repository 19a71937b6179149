"""``blalm finetune``: fine-tune a model on the BabyLM 2025 (Super)GLUE tasks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from blalm.finetune.tasks import DEFAULT_TASKS

    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on the BabyLM 2025 (Super)GLUE tasks; re-running resumes",
        description="Fine-tune MODEL (a blalm checkpoint folder) with a classification head on the last real "
                    "token, per task, with the BabyLM 2025 protocol's defaults (AdamW lr 3e-5, batch 32 — 16 "
                    "for BoolQ and MultiRC —, 10 epochs — 30 for WSC —, max length 512), and evaluate on the "
                    "task's valid file. Writes DIR/<task>/ (checkpoints, metrics.jsonl, results.json) and "
                    "DIR/results.json (per task accuracy, F1 for MRPC/QQP, and the GLUE score). Re-running "
                    "the same command resumes a killed run. 'blalm eval --suite full --glue DIR' shows the "
                    "GLUE column.")
    p.add_argument("model", metavar="MODEL", type=Path, help="a blalm checkpoint folder (with its tokenizer)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), metavar="T1,T2,...",
                   help=f"comma-separated tasks (default {','.join(DEFAULT_TASKS)})")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (an existing run is resumed)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="PATH",
                   help="folder with {task}.train.jsonl[.xz] and {task}.valid.jsonl; default "
                        "$BLALM_DATA_DIR/eval/full_eval/glue_filtered, else ../shared/data/eval/full_eval/glue_filtered")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (lr, batch_size, epochs, max_length, seed, weight_decay, dropout, "
                        "warmup_fraction, max_train, max_valid, save_every, log_every, eval_batch, device), "
                        "value read as TOML; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-task lines")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from blalm.config import from_dict, parse_override, set_dotted
    from blalm.finetune.config import FinetuneConfig

    data: dict = {"model": str(args.model), "tasks": [t.strip() for t in args.tasks.split(",") if t.strip()],
                  "progress": not args.quiet}
    if args.data_dir is not None:
        data["data_dir"] = str(args.data_dir)
    for item in args.overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
    return from_dict(FinetuneConfig, data, where="command line")


def run(args: argparse.Namespace) -> int:
    from blalm.finetune.run import RESULTS_FILE, finetune, format_results

    cfg = config_from_args(args)
    report = finetune(cfg, args.out, log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    print(format_results(report))
    print(f"wrote {args.out / RESULTS_FILE}")
    return 0
