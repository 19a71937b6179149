"""``blalm sweep``: run one of the paper's experiments (a grid of training runs), score and select."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from blalm.cli import existing_folder

    p = subparsers.add_parser(
        "sweep", help="run an experiment's grid of training runs (paper §6), score every checkpoint, pick the best",
        description="Run the experiment EXPERIMENT (configs/experiments/*.toml) into DIR: build its corpora and "
                    "tokenizers once (DIR/corpora/), train every run of its grid (DIR/runs/TRACK/RUN/seedN, each a "
                    "'blalm train' run folder), score every checkpoint on the fast suite and select the best by the "
                    "paper's average (RUN/eval/summary.json), and list it all in DIR/sweep.json. Re-running the "
                    "same command skips finished runs and resumes a killed one from its latest checkpoint. "
                    "'blalm report DIR' writes the tables beside the paper's and the plots.")
    p.add_argument("experiment", metavar="EXPERIMENT", type=Path,
                   help="experiment config, e.g. configs/experiments/exp2_architecture.toml")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="sweep folder (created if missing)")
    p.add_argument("--scale", default=None, metavar="NAME",
                   help="paper (the paper's models and corpora), medium (an 8x512 model, whole corpus, one epoch; "
                        "~2 min a run on one H100), reduced (a 4x256 model on 5%% of the corpus; 4-7 min an "
                        "experiment and track on one H100), tiny (CPU-sized) or another "
                        "[scales.NAME] of the config (default: the config's 'scale', else paper)")
    p.add_argument("--track", dest="tracks", action="append", default=[], choices=("strict-small", "strict"),
                   help="run only this track (repeatable; default: every track of the experiment)")
    p.add_argument("--run", dest="runs", action="append", default=[], metavar="NAME",
                   help="run only this run of the grid (repeatable; default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the experiment config (dotted keys, TOML values), e.g. "
                        "--set 'seeds=[0,1]' --set eval.last=2; repeatable")
    p.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training-config value of every run, applied last, e.g. --train-set "
                        "model.mlstm_kernel=\"triton\" --train-set micro_batch=16; repeatable")
    p.add_argument("--data-dir", type=existing_folder, default=None, metavar="PATH",
                   help="the data folder ({data} in corpus configs; its eval/ holds the evaluation data); "
                        "default: $BLALM_DATA_DIR, else ../shared/data")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train and score up to N runs of the grid at once, each in a process of its own on the "
                        "same device (small models leave most of a GPU idle), one per run and seed, logging to "
                        "DIR/logs/TRACK-RUN-seedN.log; a run whose process fails is recorded as failed (not "
                        "retrained); then one pass writes DIR/sweep.json (default 1: one run after another in "
                        "this process)")
    p.add_argument("--child-of", type=int, default=None, help=argparse.SUPPRESS)   # a --jobs child of this pid
    p.add_argument("--dry-run", action="store_true", help="print the grid (run folders and overrides) and stop")
    p.add_argument("--progress", action="store_true", help="show the training and scoring progress bars")
    p.add_argument("--quiet", action="store_true", help="no per-run progress lines (the summary line is printed)")
    p.set_defaults(func=run_sweep_cli)


def run_sweep_cli(args: argparse.Namespace) -> int:
    from blalm.experiments.config import expand_grid, load_experiment
    from blalm.experiments.sweep import SWEEP_FILE, sweep

    exp = load_experiment(args.experiment, args.overrides, scale=args.scale)
    grid = expand_grid(exp, args.tracks, args.runs)
    print(f"{exp.name} ({exp.title or exp.paper_table}), scale {exp.scale}: {len(grid)} run(s)")
    if args.dry_run:
        for run in grid:
            print(f"  {run.folder(args.out)}  corpus={run.corpus}  " + " ".join(run.overrides))
        return 0
    if args.child_of is not None:       # a --jobs child (see sweep()): it ends when its parent does
        from blalm.jobs import exit_with_parent

        exit_with_parent(args.child_of)
    summary = sweep(exp, args.out, jobs=args.jobs, child_args=child_args(args), child=args.child_of is not None,
                    tracks=args.tracks, runs=args.runs, train_overrides=args.train_overrides,
                    data_dir=args.data_dir, progress=args.progress,
                    log=(lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    failed = summary["failed"]          # in this pass (sweep.json may hold older records of other runs)
    if args.child_of is not None:
        return 1 if failed else 0
    print(f"wrote {args.out / SWEEP_FILE}: {len(grid) - failed} run(s) done, {failed} failed; "
          f"next: blalm report {args.out} --out {args.out / 'report'}")
    return 1 if failed else 0


def child_args(args: argparse.Namespace) -> list[str]:
    """The command-line options a ``--jobs`` child repeats (everything but --jobs, --run, --track)."""
    out = [str(args.experiment), "--out", str(args.out)]
    if args.scale:
        out += ["--scale", args.scale]
    for item in args.overrides:
        out += ["--set", item]
    for item in args.train_overrides:
        out += ["--train-set", item]
    if args.data_dir is not None:
        out += ["--data-dir", str(args.data_dir)]
    return out
