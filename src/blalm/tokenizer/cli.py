"""``blalm tokenizer``: train the byte-level BPE tokenizer on a corpus folder's train.txt."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from blalm.cli import DeprecatedAlias, add_optional_config_args

    parser = subparsers.add_parser(
        "tokenizer",
        help="train the byte-level BPE tokenizer on a corpus (train.txt only)",
        description="Train a byte-level BPE tokenizer (special tokens <|bos|>, <|eos|>, <|pad|> = ids 0, 1, 2) "
                    "on CORPUS_DIR/train.txt and save it as a Hugging Face fast tokenizer in --out, with "
                    "tokenizer_report.json (tokens per word on dev.txt, round-trip check). Encoding adds no "
                    "BOS/EOS: training and evaluation place them.")
    parser.add_argument("corpus_dir", metavar="CORPUS_DIR", type=Path,
                        help="corpus folder written by 'blalm corpus' (train.txt, dev.txt, manifest.json)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder for the tokenizer; built beside it and renamed into place, "
                             "replacing a previous tokenizer there only once training succeeded")
    add_optional_config_args(parser, "tokenizer", "configs/tokenizer/bpe_15k.toml")
    parser.add_argument("--vocab-size", type=int, default=None, metavar="N",
                        help="vocabulary size including the 256 byte symbols and 3 special tokens "
                             "(at least 259; default 15000 as in the paper)")
    parser.add_argument("--min-frequency", type=int, default=None, metavar="N",
                        help="merge only pairs seen at least N times in train.txt (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-progress", dest="quiet", action=DeprecatedAlias, nargs=0, new_name="--quiet",
                        help="deprecated name of --quiet")
    parser.set_defaults(func=run_tokenizer)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_tokenizer(args: argparse.Namespace) -> int:
    from blalm.cli import given_options
    from blalm.config import load_config
    from blalm.lock import lock_beside
    from blalm.tokenizer.config import TokenizerConfig
    from blalm.tokenizer.train import REPORT_FILE, remove_killed_build, train_tokenizer

    options = given_options(args, {"vocab_size": "vocab_size", "min_frequency": "min_frequency"})
    if args.quiet:
        options["progress"] = ("--quiet", False)
    cfg = load_config(TokenizerConfig, args.config, args.overrides, options=options)
    with lock_beside(args.out, what="tokenizer", log=_log):
        remove_killed_build(args.out, log=_log)
        report = train_tokenizer(args.corpus_dir, args.out, vocab_size=cfg.vocab_size,
                                 min_frequency=cfg.min_frequency, show_progress=cfg.progress)
    print(f"tokenizer: vocab size {report['vocab_size']}"
          + (f" (asked {report['vocab_size_requested']}: train.txt has too few frequent pairs for more)"
             if report["vocab_size"] < report["vocab_size_requested"] else ""))
    train = report["train"]
    print(f"  trained on {train['path']}: {train['lines']} lines, {train['words']} words")
    dev = report["dev"]
    if dev is None:
        print("  dev.txt: not found, tokens/word measured on a train sample only: "
              f"{report['tokens_per_word_train_sample']}")
    else:
        rt = dev["round_trip"]
        print(f"  tokens/word on dev.txt: {dev['tokens_per_word']} ({dev['tokens']} tokens / {dev['words']} words); "
              f"train sample: {report['tokens_per_word_train_sample']}")
        print(f"  round trip on dev.txt: {rt['lines_checked'] - rt['failures']}/{rt['lines_checked']} lines exact"
              + (f"; FAILED lines {rt['first_failed_lines']}" if rt["failures"] else ""))
    print(f"  wrote {report['out_dir']} (report: {REPORT_FILE})")
    return 1 if dev is not None and dev["round_trip"]["failures"] else 0
