"""``blalm corpus``: build the curated training corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from blalm.cli import add_config_args, existing_folder

    p = sub.add_parser(
        "corpus", help="build a curated corpus under an exact word budget",
        description="Read the sources named in CONFIG, apply the paper's filters (§3.2), fill the word "
                    "budget by the per-source shares, and write DIR/train.txt, DIR/dev.txt and "
                    "DIR/manifest.json (which accounts for every input document).")
    add_config_args(p, "corpus", "--set budget_words=200000 --set sources.childes.share=0.5")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--data-dir", type=existing_folder, default=None, metavar="PATH",
                   help="where '{data}' in source paths points (default: config data_dir, "
                        "else $BLALM_DATA_DIR, else ../shared/data)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from blalm.config import load_config
    from blalm.data.config import CorpusConfig
    from blalm.data.corpus import build_corpus, check_out_dir, remove_killed_build
    from blalm.lock import lock_beside

    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data_dir={str(args.data_dir)!r}")
    cfg = load_config(CorpusConfig, args.config, overrides)
    check_out_dir(args.out)
    with lock_beside(args.out, what="corpus", log=_log):
        remove_killed_build(args.out, log=_log)
        manifest = build_corpus(cfg, args.out, progress=not args.quiet)
    print(format_summary(manifest, args.out))
    return 0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def format_summary(manifest: dict, out: Path) -> str:
    width = max([14] + [len(name) + 2 for name in manifest["sources"]])
    lines = [f"{'source':<{width}}{'status':>10}{'docs read':>11}{'train docs':>11}{'train words':>13}{'dev words':>11}"]
    for name, s in manifest["sources"].items():
        lines.append(f"{name:<{width}}{s['status']:>10}{s['docs_read']:>11,}{s['docs_train']:>11,}"
                     f"{s['words']:>13,}{s['dev_words']:>11,}")
    lines.append(f"train: {manifest['train_words']:,} words of a {manifest['budget_words']:,}-word budget "
                 f"({100 * manifest['budget_used']:.2f}%); dev: {manifest['dev_words']:,} words; "
                 f"{manifest['seconds']} s")
    if manifest["budget_used"] < 0.99:
        lines.append(f"note: the sources hold too little for the budget: {manifest['shortfall_words']:,} words short "
                     f"(see 'available_words' per source in the manifest)")
    lines.append(f"wrote {out}/train.txt, dev.txt, manifest.json")
    return "\n".join(lines)
