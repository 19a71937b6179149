"""The ``blalm`` command: one verb per stage, each a thin wrapper over a function the tests call.

Each stage keeps its verbs in ``blalm/<stage>/cli.py`` with a ``register(subparsers)`` function;
those modules import heavy libraries (torch, transformers) only inside the verb's function, so
``blalm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from blalm import __version__
from blalm.errors import BlalmError

STAGE_CLIS = [
    "blalm.data.cli",
    "blalm.tokenizer.cli",
    "blalm.model.cli",
    "blalm.train.cli",
    "blalm.finetune.cli",
    "blalm.eval.cli",
    "blalm.bench.cli",
    "blalm.experiments.cli",
    "blalm.report.cli",
    "blalm.submit.cli",
]


def add_config_args(parser: argparse.ArgumentParser, what: str) -> None:
    """The CONFIG positional and ``--set key=value`` overrides shared by every config-driven verb."""
    parser.add_argument("config", metavar="CONFIG", help=f"{what} config file (TOML), e.g. under configs/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted for nested keys, value read as TOML "
                             "(e.g. --set seed=1 --set model.short_conv=true); repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blalm",
        description="blalm: from raw text to a scored BabyLM model (BLaLM paper). "
                    "Run 'blalm VERB --help' for each verb's options.")
    parser.add_argument("--version", action="version", version=f"blalm {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in STAGE_CLIS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BlalmError as exc:
        print(f"blalm {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"blalm {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
