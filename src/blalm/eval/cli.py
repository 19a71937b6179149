"""``blalm eval``: score a model on the BabyLM 2025 zero-shot suite (fast or full)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from blalm.cli import add_eval_data_arg, add_optional_config_args
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
    add_optional_config_args(p, "evaluation", "configs/eval/fast.toml (keys: blalm.eval.config.EvalConfig)")
    p.add_argument("--suite", choices=("fast", "full"), default=None,
                   help="fast: the official fast subsets, for checkpoint selection (default); full: the full sets")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   choices=list(TASKS) + list(TASK_ALIASES),
                   help=f"tasks to run (default all): {', '.join(TASKS)}; 'reading' = eye_tracking + "
                        f"self_paced_reading")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for results.json (created if missing; the file is replaced atomically)")
    add_eval_data_arg(p, "evaluation data folder in the official layout (fast_eval/, full_eval/, aoa/); "
                         "default: $BLALM_DATA_DIR/eval, else ../shared/data/eval")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="most sequences per forward pass (default 1024; --token-budget usually binds first)")
    p.add_argument("--token-budget", type=int, default=None, metavar="N",
                   help="most padded tokens per forward pass; sequences are sorted by length and packed up "
                        "to it (default 0: 1024 on the CPU, 16384 on a GPU; lower it if memory runs out)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile each decoder block once per process (dynamic shapes, as 'blalm finetune "
                        "--compile'), every batch padded to one of a few widths (changes the speed only; "
                        "for a GPU, over many checkpoints)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="where the model runs (default auto: cuda when available)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=None,
                   help="GPU forward precision: bf16 autocast (default; 3.5x faster on an H100), tf32, or fp32 "
                        "(exactly the official pipeline's float32 numerics); log-softmax is float32 always; "
                        "on the CPU everything runs in float32")
    p.add_argument("--prepend-bos", action="store_true", default=None,
                   help="put the tokenizer's BOS token before every text when the tokenizer does not add "
                        "it itself, so that the first token is scored too (default off: exactly as the "
                        "official pipeline, which uses only what the tokenizer adds)")
    p.add_argument("--entity-fast-items", type=int, default=None, metavar="N",
                   help="fast suite: entity-tracking items kept per (split, numops) group, the first N in "
                        "file order (default 100)")
    p.add_argument("--last", type=int, default=0, metavar="N",
                   help="run folders: score only the last N checkpoints by step (default 0: all of them)")
    p.add_argument("--glue", type=Path, default=None, metavar="DIR",
                   help="the --out folder of 'blalm finetune': its results.json gives the GLUE column "
                        "(default: GLUE is reported as not available)")
    p.add_argument("--follow", action="store_true",
                   help="run folders: score each checkpoint as the training writes it, until the final "
                        "checkpoint is scored or the training process has ended (--follow-pid, else the run "
                        "folder's lock); checkpoints already scored are skipped, so a killed follower resumes")
    p.add_argument("--follow-pid", type=int, default=None, metavar="PID",
                   help="with --follow: the training process; when it has ended, the follower scores what is "
                        "left and stops (default: the pid in RUN_DIR/.lock, if any)")
    p.add_argument("--follow-poll", type=float, default=10.0, metavar="S",
                   help="with --follow: seconds between looks for new checkpoints (default 10)")
    p.add_argument("--follow-idle", type=float, default=3600.0, metavar="S",
                   help="with --follow and no pid or lock to ask: stop after S seconds without a new checkpoint "
                        "(default 3600; 0 = never)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars; one line per checkpoint and task still tells where scoring is "
                        "(the same as --set progress=false)")
    p.set_defaults(func=run_eval_cli)


# command-line option (argparse dest) -> EvalConfig key
OPTION_KEYS = {"suite": "suite", "tasks": "tasks", "eval_data": "data_dir", "batch_size": "batch_size",
               "token_budget": "token_budget", "compile": "compile", "device": "device", "precision": "precision", "prepend_bos": "prepend_bos",
               "entity_fast_items": "entity_fast_per_group", "glue": "glue_results"}


def config_from_args(args: argparse.Namespace):
    """The EvalConfig of ``--config`` (or the defaults), ``--set`` and the options, through the one loader."""
    from blalm.cli import given_options
    from blalm.config import load_config
    from blalm.eval.config import EvalConfig

    options = given_options(args, OPTION_KEYS)
    if getattr(args, "quiet", False):
        options["progress"] = ("--quiet", False)
    return load_config(EvalConfig, getattr(args, "config", None), getattr(args, "overrides", ()), options=options)


def check_eval_data(cfg) -> None:
    """The evaluation data folder exists; the error says where its path came from."""
    from blalm.cli import check_data_folder

    check_data_folder(cfg.eval_dir(), bool(cfg.data_dir), "evaluation data folder",
                      "--eval-data DIR (the folder holding fast_eval/ and full_eval/, e.g. ../shared/data/eval)")


def run_eval_cli(args: argparse.Namespace) -> int:
    from blalm.eval.suite import RESULTS_FILE, evaluate_model, format_table

    from blalm.cli import check_model_arg
    from blalm.errors import BlalmError

    check_model_arg(args.model, "a blalm checkpoint folder, a run folder written by 'blalm train', or a "
                                "Hugging Face model folder")
    cfg = config_from_args(args)
    check_eval_data(cfg)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise BlalmError(f"{args.out}: exists and is not a folder; choose another --out")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from blalm.eval.runs import SUMMARY_FILE, evaluate_run, follow_run, format_run_table
    from blalm.run.layout import is_run_dir

    if args.follow:     # check_model_arg has refused a MODEL that is not a folder
        summary = follow_run(args.model, cfg, out_dir=args.out, pid=args.follow_pid, poll_seconds=args.follow_poll,
                             idle_seconds=args.follow_idle, log=log)
        if summary is None:
            print(f"{args.model}: the training ended without writing a checkpoint; nothing scored")
            return 1
        print(format_run_table(summary))
        print(f"wrote {(args.out or args.model / 'eval') / SUMMARY_FILE}")
        return 0
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
