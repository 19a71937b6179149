"""``blalm finetune``: fine-tune a model on the BabyLM 2025 (Super)GLUE tasks."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

SETTINGS_HELP = """settings for --set KEY=VALUE (value read as TOML; defaults = the official protocol):
  lr=3e-5               AdamW peak learning rate
  batch_size=0          examples per step; 0 = the task's official size (32; 16 for BoolQ and MultiRC)
  epochs=0              passes over the training file; 0 = the task's official count (10; 30 for WSC)
  max_length=512        tokens per input; the longest field loses tokens first
  seed=42               seeds the head's initialisation, dropout and the example order
  weight_decay=0.01     AdamW weight decay on 2-D weights
  dropout=0.1           dropout on the head's input
  warmup_fraction=0.0   linear warm-up share of the steps (then cosine decay to min_lr_fraction * lr)
  min_lr_fraction=0.0   final learning rate as a share of lr
  grad_clip=1.0         gradient-norm clipping (0 = none)
  eval_batch=0          examples per forward when scoring the valid file (in batches of similar
                        length); 0 = auto: 128 on CUDA, 32 on the CPU
  max_train=0           first N training examples per task (0 = all; for tests and demos)
  max_valid=0           first N valid examples per task (0 = all)
  save_every=0          also checkpoint every N steps (checkpoints are always written at epoch ends)
  log_every=10          a 'train' record in DIR/<task>/metrics.jsonl every N steps
  keep_all_checkpoints=false   keep every checkpoint folder (default: the newest two, to save disk)
  compile=false         what --compile sets

After every epoch the model is scored on the task's valid file; the task's result is the best
epoch by its validation metric (F1 for MRPC and QQP, accuracy otherwise), as the official
pipeline reports it; every epoch's scores are in DIR/<task>/results.json ('per_epoch').
Missing data files are reported per task as 'not available' with the path that was looked for."""


def register(subparsers) -> None:
    from blalm.finetune.tasks import DEFAULT_TASKS

    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on the BabyLM 2025 (Super)GLUE tasks; re-running resumes",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SETTINGS_HELP,
        description=textwrap.fill(
                    "Fine-tune MODEL with a classification head on the last real token, per task, with the "
                    "BabyLM 2025 protocol's defaults (AdamW lr 3e-5, batch 32 - 16 for BoolQ and MultiRC -, 10 "
                    "epochs - 30 for WSC -, max length 512, seed 42), scoring the task's valid file after every "
                    "epoch and reporting the best epoch. Writes DIR/<task>/ (checkpoints, metrics.jsonl, "
                    "results.json) and DIR/results.json (per task accuracy, F1 and MCC, the best epoch, wall "
                    "time, and the GLUE score). Re-running the same command resumes a killed run. "
                    "'blalm eval --suite full --glue DIR' shows the GLUE column.", 100))
    p.add_argument("model", metavar="MODEL", type=Path,
                   help="a blalm checkpoint folder (model.safetensors + model_config.json + tokenizer), or a "
                        "Hugging Face causal-LM folder with its tokenizer (e.g. written by 'blalm export')")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), metavar="T1,T2,...",
                   help=f"comma-separated tasks (default {','.join(DEFAULT_TASKS)}); a task whose files are "
                        f"missing is reported as not available")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder (an existing run is resumed; other settings are refused)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="PATH",
                   help="folder with {task}.train.jsonl[.xz] and {task}.valid.jsonl; default "
                        "$BLALM_DATA_DIR/eval/full_eval/glue_filtered, else ../shared/data/eval/full_eval/glue_filtered")
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
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (see the list below); repeatable")
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
    for key in ("device", "precision", "compile"):          # the options win over --set
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    return from_dict(FinetuneConfig, data, where="command line")


def run(args: argparse.Namespace) -> int:
    from blalm.finetune.run import RESULTS_FILE, finetune, format_results

    cfg = config_from_args(args)
    report = finetune(cfg, args.out, log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    print(format_results(report))
    print(f"wrote {args.out / RESULTS_FILE}")
    return 0
