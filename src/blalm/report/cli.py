"""``blalm report``: tables beside the paper's and plots, for sweep or run folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from blalm.cli import add_eval_data_arg

    p = subparsers.add_parser(
        "report", help="write report.md (our numbers beside the paper's) and PNG plots for sweep or run folders",
        description="Read DIR... (a 'blalm sweep' folder, a 'blalm train' run folder scored with 'blalm eval "
                    "RUN_DIR', or a folder holding run folders) and write REPORT_DIR/report.md: the paper table of "
                    "each sweep's experiment with the paper's row and ours below it (best checkpoint in "
                    "parentheses, mean ± std over seeds), the runs, and PNG plots: training loss and validation "
                    "perplexity against words seen, scores against words seen, BLiMP by phenomenon for the best "
                    "runs, and the DynMod α of every layer over training (paper App. G.1).")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="sweep folders, run folders, or folders of runs")
    p.add_argument("--out", required=True, type=Path, metavar="REPORT_DIR",
                   help="folder for report.md and the PNG files (created if missing; files there are replaced)")
    add_eval_data_arg(p, "the evaluation data folder (its fast_eval/blimp_fast gives BLiMP's phenomena) when the "
                         "path recorded in results.json is not readable here")
    p.add_argument("--quiet", action="store_true", help="print only where the report is")
    p.set_defaults(func=run_report_cli)


def run_report_cli(args: argparse.Namespace) -> int:
    from blalm.report.report import write_report

    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    path = write_report(args.dirs, args.out, eval_data_dir=args.eval_data, log=log)
    print(f"wrote {path}")
    return 0
