"""``blalm train``: train (or resume) a model on a curated corpus."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from blalm.cli import add_config_args

    p = subparsers.add_parser(
        "train", help="train a model (paper §5); re-running the same command resumes the run",
        description="Train the model of CONFIG (configs/train/*.toml) on its corpus and tokenizer, writing "
                    "RUN_DIR/config.json, run_info.json, metrics.jsonl and checkpoints/ (safetensors + JSON) at "
                    "the BabyLM milestones (words seen) and every epoch end. Re-running the same command on the "
                    "same RUN_DIR resumes from the newest checkpoint that verifies. Under 'torchrun --nproc_per_node N' "
                    "the same command trains with DDP (global batch kept), or with FSDP2 (the model sharded over the "
                    "processes, for models that do not fit one GPU) with --set parallelism=\"fsdp\".")
    add_config_args(p, "training")
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR",
                   help="run folder (created if missing; an existing run there is resumed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (same as --set progress=false)")
    p.add_argument("--eval", dest="score_suite", choices=("none", "fast", "full"), default=None,
                   help="score every checkpoint on this zero-shot suite as it is written, in a side process "
                        "on the same device, and end with RUN_DIR/eval/summary.json naming the best checkpoint "
                        "(same as --set score_suite=...; a resumed run skips checkpoints already scored)")
    p.add_argument("--eval-data", dest="score_data", type=Path, default=None, metavar="DIR",
                   help="the evaluation data folder for --eval (default: blalm eval's, $BLALM_DATA_DIR/eval "
                        "else ../shared/data/eval)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from blalm.train.config import load_train_config
    from blalm.train.trainer import train

    import json

    overrides = list(args.overrides) + (["progress=false"] if args.quiet else [])
    if args.score_suite is not None:
        overrides.append(f"score_suite={json.dumps(args.score_suite)}")
    if args.score_data is not None:
        overrides.append(f"score_data={json.dumps(str(args.score_data))}")
    cfg = load_train_config(args.config, overrides)
    summary = train(cfg, args.out)
    if summary.get("rank", 0) == 0 and summary.get("final_loss") is not None:
        print(f"final training loss {summary['final_loss']:.4f} after {summary['steps']} steps")
    if summary.get("best"):
        average = summary["best"].get("average")
        print(f"best checkpoint: {summary['best'].get('checkpoint')}"
              + (f" (average {average:.2f})" if average is not None else "") + f"; {summary['summary']}")
    return 0
