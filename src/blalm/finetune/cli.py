"""``blalm finetune``: fine-tune a model on the BabyLM 2025 (Super)GLUE tasks."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

SETTINGS_HELP = """settings for --config FILE and --set KEY=VALUE (value read as TOML; defaults = the official protocol):
  tasks=[...]           what --tasks sets (a TOML list of task names)
  data_dir=""           what --eval-data sets ("" = the default evaluation data folder)
  device="auto"         what --device sets; precision="bf16": what --precision sets
  progress=true         false = what --quiet sets
  jobs=1                what --jobs sets
  lr=3e-5               AdamW peak learning rate
  batch_size=0          examples per step; 0 = the task's official size (32; 16 for BoolQ and MultiRC)
  epochs=0              passes over the training file; 0 = the task's official count (10; 30 for WSC)
  max_length=512        tokens per input; the longest field loses tokens first
  seed=42               seeds the head's initialisation, dropout and the example order
  weight_decay=0.01     AdamW weight decay on every parameter (the official trainer's)
  dropout=0.1           the head's dropout (the official classifier_dropout)
  warmup_fraction=0.06  linear warm-up share of the steps from lr 0 (then cosine decay to min_lr_fraction * lr)
  min_lr_fraction=0.1   final learning rate as a share of lr
  grad_clip=0           gradient-norm clipping (0 = none, as the official trainer)
  eval_batch=0          examples per forward when scoring the valid file (in batches of similar
                        length); 0 = auto: 128 on CUDA, 32 on the CPU
  max_train=0           first N training examples per task (0 = all; for tests and demos)
  max_valid=0           first N valid examples per task (0 = all)
  save_every=0          also checkpoint every N steps (checkpoints are always written at epoch ends)
  log_every=10          a 'train' record in DIR/<task>/metrics.jsonl every N steps
  keep_all_checkpoints=false   keep every checkpoint folder (default: the newest two, to save disk)
  compile=false         what --compile sets
  compile_mode="default"   what --compile-mode sets (reduce-overhead: CUDA graphs)

After every epoch the model is scored on the task's valid file; the task's result is the best
epoch by its validation metric (F1 for MRPC and QQP, accuracy otherwise), as the official
pipeline reports it; every epoch's scores are in DIR/<task>/results.json ('per_epoch').
Missing data files are reported per task as 'not available' with the path that was looked for."""


def register(subparsers) -> None:
    from blalm.cli import add_eval_data_arg, add_optional_config_args
    from blalm.finetune.tasks import DEFAULT_TASKS

    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on the BabyLM 2025 (Super)GLUE tasks; re-running resumes",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SETTINGS_HELP,
        description=textwrap.fill(
                    "Fine-tune MODEL with a classification head on the last real token, per task, with the "
                    "BabyLM 2025 protocol's defaults and its trainer's recipe (its head; AdamW lr 3e-5, weight decay "
                    "0.01; 6% warm-up, cosine to 0.1; no clipping; batch 32 - 16 for BoolQ and MultiRC -, full "
                    "batches only; 10 epochs - 30 for WSC -, max length 512, seed 42), scoring the task's valid file after every "
                    "epoch and reporting the best epoch. Writes DIR/<task>/ (checkpoints, metrics.jsonl, "
                    "results.json) and DIR/results.json (per task accuracy, F1 and MCC, the best epoch, wall "
                    "time, and the GLUE score). Re-running the same command resumes a killed run. --jobs N "
                    "fine-tunes the tasks in N processes side by side on the one device. "
                    "'blalm eval --suite full --glue DIR' shows the GLUE column.", 100))
    p.add_argument("model", metavar="MODEL", type=Path,
                   help="a blalm checkpoint folder (model.safetensors + model_config.json + tokenizer), or a "
                        "Hugging Face causal-LM folder with its tokenizer (e.g. written by 'blalm export')")
    add_optional_config_args(p, "fine-tuning", "configs/finetune/glue.toml (the settings listed below)")
    p.add_argument("--tasks", default=None, metavar="T1,T2,...",
                   help=f"comma-separated tasks (default {','.join(DEFAULT_TASKS)}); a task whose files are "
                        f"missing is reported as not available")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder (an existing run is resumed; other settings are refused)")
    add_eval_data_arg(p, "the evaluation data folder (official layout): the GLUE files are read from "
                         "DIR/full_eval/glue_filtered ({task}.train.jsonl[.xz], {task}.valid.jsonl); a folder holding "
                         "those files itself also works. Default: $BLALM_DATA_DIR/eval, else ../shared/data/eval")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="where to fine-tune: auto (default: CUDA when a GPU is visible), cpu or cuda")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=None,
                   help="GPU precision: bf16 autocast (default; float32 weights and optimizer state), tf32, or "
                        "fp32. The CPU always runs float32")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile each decoder block with dynamic shapes (one compilation serves every "
                        "layer, batch size and width; the chunkwise mLSTM needs one per chunk count, so batch "
                        "widths are rounded up to whole chunks); the embedding, final norm and head stay "
                        "eager. For GPU runs: the first batches of each width wait for compilation. "
                        "Default --no-compile")
    p.add_argument("--compile-mode", choices=("default", "reduce-overhead"), default=None,
                   help="with --compile: reduce-overhead replays each decoder block as CUDA graphs (one recorded "
                        "per batch shape, widths rounded up to multiples of 64), which takes the host's kernel "
                        "launches out of a small model's step; the CPU runs the compiled code as default does. "
                        "Changes the speed only. Experimental: on an H200 (torch 2.11) it ended with a "
                        "segmentation fault before the first step (docs/results/glue_h100.md); --compile "
                        "alone is the measured fast path (2.2x eager). Default: default")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="fine-tune the tasks in N processes side by side on the same device (a small model's "
                        "steps leave a GPU mostly idle, so processes sharing it add up their steps): the tasks not "
                        "finished yet are split into N groups of about equal steps (training examples / batch "
                        "size x epochs), each group fine-tuned by 'blalm finetune' in a child process with these "
                        "settings, logging to DIR/logs/<group>.log (e.g. mnli-rte.log); this process prints each "
                        "task as it is done, then reads every task back and writes DIR/results.json. A group that "
                        "fails is named with its log once the others have ended (exit status 2); killing this "
                        "process ends its children, and the same command resumes. The scores are those of one "
                        "process. Default 1: one task after another in this process")
    p.add_argument("--child-of", type=int, default=None, help=argparse.SUPPRESS)   # a --jobs child (parallel.py)
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-task lines")
    p.set_defaults(func=run)


# command-line option (argparse dest) -> FinetuneConfig key; the options win over --config and --set
OPTION_KEYS = {"eval_data": "data_dir", "device": "device", "precision": "precision",
               "compile": "compile", "compile_mode": "compile_mode", "jobs": "jobs"}


def config_from_args(args: argparse.Namespace):
    """The FinetuneConfig of ``--config`` (or the defaults), ``--set`` and the options, through the one loader."""
    from blalm.cli import given_options
    from blalm.config import load_config
    from blalm.finetune.config import FinetuneConfig

    options = {"model": ("", str(args.model)), **given_options(args, OPTION_KEYS)}
    if args.tasks is not None:
        options["tasks"] = (f"--tasks {args.tasks}", [t.strip() for t in args.tasks.split(",") if t.strip()])
    if args.quiet:
        options["progress"] = ("--quiet", False)
    return load_config(FinetuneConfig, args.config, args.overrides, options=options)


def check_glue_data(cfg) -> None:
    """The GLUE folder exists; the error says where its path came from."""
    from blalm.cli import check_data_folder

    check_data_folder(cfg.glue_dir(), bool(cfg.data_dir), "GLUE data folder",
                      "--eval-data DIR (the evaluation data folder holding full_eval/glue_filtered)")


def run(args: argparse.Namespace) -> int:
    from blalm.cli import check_model_arg
    from blalm.finetune.layout import RESULTS_FILE
    from blalm.finetune.run import finetune, format_results

    check_model_arg(args.model, "a blalm checkpoint folder (RUN_DIR/checkpoints/<name>) or a Hugging Face "
                                "model folder (e.g. from 'blalm export')")
    cfg = config_from_args(args)
    check_glue_data(cfg)
    child = args.child_of is not None
    if child:
        from blalm.errors import ConfigError
        from blalm.jobs import exit_with_parent

        if cfg.jobs != 1:
            raise ConfigError(f"--child-of: a --jobs child runs jobs=1, got jobs={cfg.jobs}")
        exit_with_parent(args.child_of)
    report = finetune(cfg, args.out, log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)),
                      child=child)
    print(format_results(report))
    if not child:
        print(f"wrote {args.out / RESULTS_FILE}")
    return 0
