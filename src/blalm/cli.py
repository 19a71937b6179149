"""The ``blalm`` command: one verb per stage, each a thin wrapper over a function the tests call.

Each stage keeps its verbs in ``blalm/<stage>/cli.py`` with a ``register(subparsers)`` function;
those modules import heavy libraries (torch, transformers) only inside the verb's function, so
``blalm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import os
import sys
from pathlib import Path

from blalm import __version__
from blalm.errors import BlalmError, InputError

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


def add_config_args(parser: argparse.ArgumentParser, what: str,
                    example: str = "--set seed=1 --set model.short_conv=true") -> None:
    """The CONFIG positional and ``--set key=value`` overrides shared by every config-driven verb."""
    parser.add_argument("config", metavar="CONFIG", help=f"{what} config file (TOML), e.g. under configs/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value, dotted for nested keys, value read as TOML "
                             f"(e.g. {example}); repeatable")


def add_optional_config_args(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--config FILE`` (optional: the defaults otherwise) and ``--set key=value``, for verbs whose
    positional argument is their input (a corpus folder, a model) rather than a config file. The
    verb's own options are applied last: they win over the file and over ``--set``."""
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help=f"{what} config file (TOML; 'extends' allowed), e.g. {example}; default: the "
                             f"built-in defaults. The options below win over it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (value read as TOML), applied after --config; repeatable")


def given_options(args: argparse.Namespace, names: dict[str, str]) -> dict[str, tuple[str, object]]:
    """The options the user gave (``None`` = not given) as ``load_config`` takes them:
    ``{config key: ("--flag value", value)}``, by ``{argparse dest: config key}``; paths as strings."""
    out: dict[str, tuple[str, object]] = {}
    for dest, key in names.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        value = str(value) if isinstance(value, Path) else value
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        out[key] = (f"--{dest.replace('_', '-')}" + ("" if isinstance(value, bool) else f" {shown}"), value)
    return out


def existing_folder(text: str) -> Path:
    """argparse ``type=`` for a folder that must exist: the error names the option and the path."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'not a folder' if path.exists() else 'no such folder'}")
    return path


class DeprecatedAlias(argparse.Action):
    """An old option name that still works: stores into the new option's ``dest`` and says so once."""

    def __init__(self, option_strings, dest, new_name: str = "", **kwargs) -> None:
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.new_name}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def add_eval_data_arg(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--eval-data DIR``: the evaluation data folder, the same option in eval, finetune and report
    (``--data-dir`` is its deprecated name there)."""
    parser.add_argument("--eval-data", dest="eval_data", type=existing_folder, default=None, metavar="DIR",
                        help=help_text)
    parser.add_argument("--data-dir", dest="eval_data", type=existing_folder, action=DeprecatedAlias,
                        new_name="--eval-data", metavar="DIR", help="deprecated name of --eval-data")


def default_data_dir_hint() -> str:
    """Where the default data folder comes from, for error messages."""
    if os.environ.get("BLALM_DATA_DIR"):
        return f"$BLALM_DATA_DIR = {os.environ['BLALM_DATA_DIR']}"
    return "../shared/data, as BLALM_DATA_DIR is unset"


def check_data_folder(folder: Path, configured: bool, what: str, fix: str) -> None:
    """Refuse a missing data folder, saying where its path came from (the config or --set when
    ``configured``, else the default) and ``fix``, e.g. ``"--eval-data DIR"``."""
    if folder.is_dir():
        return
    if configured:
        raise InputError(f"{folder}: {what} not found (data_dir in the config or --set); give {fix}")
    raise InputError(f"{folder}: {what} not found (the default, from {default_data_dir_hint()}); give {fix}, "
                     f"or set BLALM_DATA_DIR to the data folder holding eval/")


def check_model_arg(path: Path, what: str) -> None:
    """Refuse a MODEL argument that does not exist or is a file, saying what it should be."""
    if not path.exists():
        raise BlalmError(f"{path}: not found; give {what}")
    if not path.is_dir():
        raise BlalmError(f"{path}: is a file, not a model, checkpoint or run folder; give {what}")


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
    if not faulthandler.is_enabled():   # a crash in native code (a kernel, a CUDA graph) prints the Python stack
        faulthandler.enable()
    try:
        return int(args.func(args) or 0)
    except BlalmError as exc:
        print(f"blalm {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"blalm {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # the reader went away ('blalm ... | head'): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
