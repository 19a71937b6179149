"""``python -m blalm.train CONFIG --out RUN_DIR`` (also ``torchrun ... -m blalm.train ...``): the
``blalm train`` verb on its own, e.g. for launchers that take a module."""

from __future__ import annotations

import argparse
import sys

from blalm.errors import BlalmError


def main(argv: list[str] | None = None) -> int:
    from blalm.train.cli import register

    parser = argparse.ArgumentParser(prog="python -m blalm.train")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    register(sub)
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except BlalmError as exc:
        print(f"blalm train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blalm train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
