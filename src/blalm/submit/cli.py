"""``blalm submit``: a BabyLM 2025 submission (model repository, predictions, collated file) in one command."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

EPILOG = """What DIR holds:
  model/            git repository: main = the final (or --main) checkpoint + model card, chck_<N>M =
                    the milestone checkpoints (blalm export each); ready to push, never pushed
  results/NAME/     predictions in the official pipeline's layout: <revision>/zero_shot/causal/... (fast
                    suite per revision), main/zero_shot/causal/... (full suite, AoA_word/surprisal.json),
                    main/finetune/<task>/predictions.json (GLUE)
  submission.json   the collated file, as the official collate_preds.py --fast writes it
  status.json       what is complete; every missing piece by name (missing data is never filled in)
  README.md         the same, with the push commands
  work/             blalm's scores per piece, fine-tuning runs, intermediate files

A run trained with milestone_scale != 1 (a CPU demo) has its scaled milestones named after the
official ones in order: chck_NM is its checkpoint at N M x milestone_scale words seen.
Re-running the same command does only what is missing."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "submit", help="build a BabyLM 2025 submission of a training run (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description=textwrap.fill(
            "Package RUN_DIR (a 'blalm train' folder) as a BabyLM 2025 submission: a git model repository with "
            "a branch per milestone checkpoint (chck_1M ... as the official collate_preds.py names them), the "
            "fast suite of every milestone, the full suite and (Super)GLUE fine-tuning of main, the AoA "
            "surprisals over the milestones, the predictions in the official results layout and the collated "
            "submission.json, all scored by blalm's own scorer.", 100))
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a training run folder written by 'blalm train'")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the submission folder (re-runs resume it)")
    p.add_argument("--track", choices=("strict-small", "strict"), default=None,
                   help="the submission track (default: the run's track); sets the official revision list")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="the model's name: results/NAME/ and the collated file's key (default: RUN_DIR's name)")
    p.add_argument("--main", default="final", metavar="CKPT",
                   help="the checkpoint on main: final (default: the last one), best (the best by the paper's "
                        "average in RUN_DIR/eval/summary.json, from 'blalm eval RUN_DIR') or a checkpoint name")
    from blalm.cli import add_eval_data_arg

    add_eval_data_arg(p, "evaluation data folder (fast_eval/, full_eval/, aoa/); default $BLALM_DATA_DIR/eval, "
                         "else ../shared/data/eval")
    p.add_argument("--glue-data", type=Path, default=None, metavar="PATH",
                   help="folder with {task}.train.jsonl and {task}.valid.jsonl (default EVAL_DATA/full_eval/"
                        "glue_filtered; BoolQ needs a boolq.train.jsonl there)")
    p.add_argument("--glue", type=Path, default=None, metavar="DIR",
                   help="an earlier 'blalm finetune' --out folder of the main checkpoint whose tasks are reused "
                        "when their settings match (default RUN_DIR/glue)")
    p.add_argument("--finetune-set", dest="finetune", action="append", default=[], metavar="KEY=VALUE",
                   help="a 'blalm finetune' setting (e.g. max_train=64, epochs=1 for a CPU demo); repeatable. On CUDA "
                        "the fine-tuning is compiled (compile=true; give compile=false for eager)")
    p.add_argument("--glue-jobs", type=int, default=0, metavar="N",
                   help="fine-tune the GLUE tasks in N processes side by side ('blalm finetune --jobs N', logs in "
                        "DIR/work/glue/logs/); default 0 = auto: 3 when the fine-tuning runs on CUDA, 1 on the CPU. "
                        "The scores do not depend on it: tasks fine-tuned with another N are reused")
    p.add_argument("--aoa-words", type=Path, default=None, metavar="FILE",
                   help="the official AoA word file cdi_childes.json (default: EVAL_DATA/full_eval/aoa/"
                        "cdi_childes.json when there); without it AoA's surprisal.json is missing")
    p.add_argument("--batch-size", type=int, default=1024, metavar="N",
                   help="most sequences per forward pass when scoring (default 1024, as blalm eval; batches are packed to its token budget)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where scoring and "
                   "fine-tuning run (default auto)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32",
                   help="GPU scoring precision (default fp32, the official pipeline's numerics)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from blalm.config import from_dict
    from blalm.submit.config import SubmitConfig

    data = {"main": args.main, "finetune": list(args.finetune), "glue_jobs": args.glue_jobs,
            "batch_size": args.batch_size,
            "device": args.device, "precision": args.precision, "progress": not args.quiet}
    for key, value in (("track", args.track), ("name", args.name), ("data_dir", args.eval_data),
                       ("glue_data", args.glue_data), ("glue_results", args.glue), ("aoa_words", args.aoa_words)):
        if value is not None:
            data[key] = str(value)
    return from_dict(SubmitConfig, data, where="command line")


def run(args: argparse.Namespace) -> int:
    from blalm.submit.build import build_submission, format_summary

    cfg = config_from_args(args)
    status = build_submission(args.run_dir, args.out, cfg, log=lambda m: None if args.quiet else print(m, file=sys.stderr))
    print(format_summary(status, args.out))
    return 0
