"""``blalm eval``: score a model on the BabyLM 2025 zero-shot suite (fast or full)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from blalm.eval.config import TASK_ALIASES, TASKS

    p = subparsers.add_parser(
        "eval", help="score a model on the BabyLM 2025 zero-shot suite",
        description="Score MODEL (a blalm checkpoint, a training run folder, or any Hugging Face causal-LM "
                    "folder) with the official BabyLM 2025 pipeline's "
                    "definitions: BLiMP, BLiMP supplement, EWoK, entity tracking, WUG, eye tracking and "
                    "self-paced reading. Prints the paper's row (BLiMP | B. Suppl. | Entity | EWoK | Eye | "
                    "Reading | Avg.) and, with --out, writes DIR/results.json with per-paradigm and per-split "
                    "detail. A task whose data is missing is reported as skipped, never as 0. For a run "
                    "folder every checkpoint is scored (RUN_DIR/eval/<checkpoint>/results.json) and the best "
                    "by average is selected (RUN_DIR/eval/summary.json), as the paper does.")
    p.add_argument("model", metavar="MODEL", type=Path,
                   help="a blalm checkpoint (model.safetensors + model_config.json + tokenizer), a run "
                        "folder written by 'blalm train', or a Hugging Face model folder (config.json, "
                        "weights, tokenizer files)")
    p.add_argument("--suite", choices=("fast", "full"), default="fast",
                   help="fast: the official fast subsets, for checkpoint selection (default); full: the full sets")
    p.add_argument("--tasks", nargs="+", default=["all"], metavar="TASK",
                   choices=list(TASKS) + list(TASK_ALIASES),
                   help=f"tasks to run (default all): {', '.join(TASKS)}; 'reading' = eye_tracking + "
                        f"self_paced_reading")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for results.json (created if missing; the file is replaced atomically)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="PATH",
                   help="evaluation data folder in the official layout (fast_eval/, full_eval/, aoa/); "
                        "default: $BLALM_DATA_DIR/eval, else ../shared/data/eval")
    p.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="sequences per forward pass (default 64; lower it if memory runs out)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (default auto: cuda when available)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="bf16",
                   help="GPU forward precision: bf16 autocast (default; 3.5x faster on an H100), tf32, or fp32 "
                        "(exactly the official pipeline's float32 numerics); log-softmax is float32 always; "
                        "on the CPU everything runs in float32")
    p.add_argument("--prepend-bos", action="store_true",
                   help="put the tokenizer's BOS token before every text when the tokenizer does not add "
                        "it itself, so that the first token is scored too (default off: exactly as the "
                        "official pipeline, which uses only what the tokenizer adds)")
    p.add_argument("--entity-fast-items", type=int, default=100, metavar="N",
                   help="fast suite: entity-tracking items kept per (split, numops) group, the first N in "
                        "file order (default 100)")
    p.add_argument("--last", type=int, default=0, metavar="N",
                   help="run folders: score only the last N checkpoints by step (default 0: all of them)")
    p.add_argument("--glue", type=Path, default=None, metavar="DIR",
                   help="the --out folder of 'blalm finetune': its results.json gives the GLUE column "
                        "(default: GLUE is reported as not available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-task lines")
    p.set_defaults(func=run_eval_cli)


def config_from_args(args: argparse.Namespace):
    from blalm.config import from_dict
    from blalm.eval.config import EvalConfig

    data = {"suite": args.suite, "tasks": list(args.tasks), "batch_size": args.batch_size,
            "device": args.device, "precision": args.precision, "prepend_bos": bool(args.prepend_bos),
            "entity_fast_per_group": args.entity_fast_items, "progress": not args.quiet}
    if args.data_dir is not None:
        data["data_dir"] = str(args.data_dir)
    if getattr(args, "glue", None) is not None:
        data["glue_results"] = str(args.glue)
    return from_dict(EvalConfig, data, where="command line")


def run_eval_cli(args: argparse.Namespace) -> int:
    from blalm.eval.suite import RESULTS_FILE, evaluate_model, format_table

    cfg = config_from_args(args)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        from blalm.errors import BlalmError
        raise BlalmError(f"{args.out}: exists and is not a folder; choose another --out")

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    from blalm.eval.runs import SUMMARY_FILE, evaluate_run, format_run_table
    from blalm.run.layout import is_run_dir

    if is_run_dir(args.model):
        summary = evaluate_run(args.model, cfg, out_dir=args.out, last=args.last, log=log)
        print(format_run_table(summary))
        print(f"wrote {(args.out or args.model / 'eval') / SUMMARY_FILE}")
        return 0
    report = evaluate_model(args.model, cfg, out_dir=args.out, log=log)
    print(format_table(report))
    if args.out is not None:
        print(f"wrote {args.out / RESULTS_FILE}")
    return 0
