"""The command line as one surface: every stage's settings through one loader (a TOML config,
``--set``, then the verb's own options), the same names for the same things (``--quiet``,
``--eval-data``), and errors that blame what the user typed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from blalm.cli import build_parser, main
from blalm.config import load_config

PROGRESS_VERBS = ("corpus", "tokenizer", "train", "finetune", "eval", "report", "sweep")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return dict(actions[0].choices) if actions else {}


def all_verbs() -> dict[str, argparse.ArgumentParser]:
    """Every verb and sub-verb ("model summary", "bench mixer", ...) by its command line."""
    out = {}
    for name, sub in subparsers(build_parser()).items():
        out[name] = sub
        out.update({f"{name} {inner}": p for inner, p in subparsers(sub).items()})
    return out


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}  # noqa: SLF001


def test_every_option_of_every_verb_and_subverb_has_help():
    verbs = all_verbs()
    assert {"model summary", "model", "bench mixer", "eval", "tokenizer"} <= set(verbs)
    for name, parser in verbs.items():
        for action in parser._actions:  # noqa: SLF001
            if action.dest != "help" and not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                assert action.help, f"blalm {name}: {action.option_strings or action.dest} has no help text"


def test_the_same_things_have_the_same_names():
    verbs = all_verbs()
    for name in PROGRESS_VERBS:
        assert "--quiet" in option_strings(verbs[name]), name
    for name in ("eval", "finetune", "report"):                  # the evaluation data folder
        assert {"--eval-data", "--data-dir"} <= option_strings(verbs[name]), name
    for name in ("tokenizer", "eval", "finetune"):                # an optional config file and --set
        assert {"--config", "--set"} <= option_strings(verbs[name]), name


@pytest.mark.parametrize("path", ["configs/tokenizer/bpe_15k.toml", "configs/eval/fast.toml",
                                  "configs/eval/full.toml", "configs/finetune/glue.toml"])
def test_shipped_stage_configs_load_and_equal_the_defaults(path, repo_root):
    from blalm.eval.config import EvalConfig
    from blalm.finetune.config import FinetuneConfig
    from blalm.tokenizer.config import TokenizerConfig

    cls = {"tokenizer": TokenizerConfig, "eval": EvalConfig, "finetune": FinetuneConfig}[path.split("/")[1]]
    overrides = ["model='m'"] if cls is FinetuneConfig else []
    cfg = load_config(cls, repo_root / path, overrides)
    default = load_config(cls, None, overrides)
    if path.endswith("full.toml"):
        assert cfg.suite == "full" and default.suite == "fast"
    elif cls is EvalConfig:
        assert cfg.tasks == ["all"] and cfg.batch_size == default.batch_size
    else:
        assert cfg == default


def test_tokenizer_settings_file_then_set_then_options(tmp_path, data_dir, capsys):
    from conftest import jsonl_text_lines

    lines = jsonl_text_lines(data_dir / "dev" / "childes-000.jsonl.xz", 600)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("\n".join(lines[:500]) + "\n", encoding="utf-8")
    (corpus / "dev.txt").write_text("\n".join(lines[500:]) + "\n", encoding="utf-8")
    config = tmp_path / "tok.toml"
    config.write_text("vocab_size = 280\nmin_frequency = 3\n")

    def vocab(*extra: str) -> tuple[int, int]:
        out = tmp_path / "tok"
        assert main(["tokenizer", str(corpus), "--out", str(out), "--quiet", "--config", str(config), *extra]) == 0
        report = json.loads((out / "tokenizer_report.json").read_text())
        return report["vocab_size_requested"], report["min_frequency"]

    assert vocab() == (280, 3)                                              # the file
    assert vocab("--set", "vocab_size=300") == (300, 3)                     # --set over the file
    assert vocab("--set", "vocab_size=300", "--vocab-size", "290") == (290, 3)   # the option over --set
    capsys.readouterr()
    assert main(["tokenizer", str(corpus), "--out", str(tmp_path / "x"), "--set", "vocab_size=big"]) == 2
    err = capsys.readouterr().err
    assert "--set vocab_size=big: bad value for 'vocab_size': expected an integer" in err
    assert main(["tokenizer", str(corpus), "--out", str(tmp_path / "x"), "--vocab-size", "100"]) == 2
    assert "--vocab-size 100: vocab_size 100 is too small" in capsys.readouterr().err


def test_eval_and_finetune_settings_come_through_the_one_loader(tmp_path, data_dir, repo_root, capsys):
    from blalm.eval import cli as eval_cli
    from blalm.finetune import cli as finetune_cli

    verbs = all_verbs()
    args = verbs["eval"].parse_args(["m", "--config", str(repo_root / "configs/eval/full.toml"),
                                     "--set", "batch_size=8", "--set", "entity_fast_per_group=7",
                                     "--entity-fast-items", "3", "--quiet", "--eval-data", str(data_dir / "eval")])
    cfg = eval_cli.config_from_args(args)
    assert (cfg.suite, cfg.batch_size, cfg.entity_fast_per_group, cfg.progress) == ("full", 8, 3, False)
    assert cfg.eval_dir() == data_dir / "eval"

    glue = data_dir / "eval" / "full_eval" / "glue_filtered"
    args = verbs["finetune"].parse_args(["m", "--out", str(tmp_path), "--config", str(repo_root / "configs/finetune/glue.toml"),
                                         "--set", "lr=1e-4", "--tasks", "rte,mrpc", "--eval-data", str(data_dir / "eval")])
    cfg = finetune_cli.config_from_args(args)
    assert (cfg.model, cfg.lr, cfg.tasks, cfg.glue_dir()) == ("m", 1e-4, ["rte", "mrpc"], glue)
    args = verbs["finetune"].parse_args(["m", "--out", str(tmp_path), "--data-dir", str(glue)])   # the old name
    assert finetune_cli.config_from_args(args).glue_dir() == glue
    assert "--data-dir is deprecated; use --eval-data" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["eval", "finetune"])
def test_a_file_given_as_the_model_is_named_as_a_file(verb, repo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    argv = [verb, "README.md"] + (["--out", str(tmp_path / "o")] if verb == "finetune" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "README.md: is a file, not a model, checkpoint or run folder; give a blalm checkpoint folder" in err
    assert "not found" not in err
    assert main([verb, str(tmp_path / "nothing")] + argv[2:]) == 2
    assert f"{tmp_path / 'nothing'}: not found; give" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["corpus", "configs/corpus/demo.toml", "--out", "OUT", "--data-dir", "/nonexistent"],
    ["sweep", "configs/experiments/exp2_architecture.toml", "--out", "OUT", "--data-dir", "/nonexistent"],
    ["eval", "README.md", "--data-dir", "/nonexistent"],
    ["eval", "README.md", "--eval-data", "/nonexistent"],
    ["finetune", "README.md", "--out", "OUT", "--data-dir", "/nonexistent"],
    ["report", "README.md", "--out", "OUT", "--eval-data", "/nonexistent"],
])
def test_a_missing_data_folder_blames_the_option_not_the_environment(argv, repo_root, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(repo_root)
    monkeypatch.delenv("BLALM_DATA_DIR", raising=False)
    option = argv[-2]
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "o") if a == "OUT" else a for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "/nonexistent: no such folder" in err
    assert "BLALM_DATA_DIR" not in err


def test_model_summary_takes_keys_bare_or_as_in_a_training_config(repo_root, capsys):
    config = str(repo_root / "configs/model/tiny_blalm.toml")
    summaries = []
    for key in ("short_conv", "model.short_conv"):
        assert main(["model", "summary", config, "--set", f"{key}=true", "--set", f"{key.replace('short_conv', 'swa')}=add",
                     "--json"]) == 0
        summaries.append(json.loads(capsys.readouterr().out))
    assert summaries[0] == summaries[1]
    assert summaries[0]["mechanisms"][0].startswith("short_conv") and summaries[0]["mechanisms"][-1].startswith("swa_add")
    assert main(["model", "summary", config, "--set", "model.short_conv=maybe"]) == 2
    assert "--set model.short_conv=maybe: bad value for 'short_conv'" in capsys.readouterr().err


def test_eval_quiet_still_says_where_scoring_is(tmp_path, data_dir, capfd):
    """No progress bars under --quiet, but a line per task: the demo's scoring is never silent."""
    from test_eval_scoring import build_tiny_lm
    from test_eval_suite import make_mini_eval

    model = build_tiny_lm(tmp_path / "lm", data_dir)
    mini = make_mini_eval(data_dir / "eval", tmp_path / "mini_eval")
    capfd.readouterr()
    assert main(["eval", str(model), "--tasks", "blimp", "wug_adj", "--eval-data", str(mini), "--quiet"]) == 0
    err = capfd.readouterr().err
    assert "blimp: ok" in err and "wug_adj: ok" in err
    assert "it/s" not in err and "%|" not in err                    # no tqdm bar


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path, repo_root):
    """'blalm sweep --dry-run | head -1': the closed pipe ends the command with exit 141 and no
    traceback (the grid's listing, 300 seeds, is far larger than a pipe's buffer)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "blalm.cli", "sweep", "configs/experiments/recipe_search.toml", "--out",
           str(tmp_path / "sweep"), "--dry-run", "--set", f"seeds={list(range(300))}"]
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert first.startswith(b"recipe_search") and "Traceback" not in err


def test_a_crash_in_native_code_prints_the_python_stack(repo_root):
    """A verb that dies in native code (session 16: CUDA graphs ended a GLUE fine-tuning with SIGSEGV
    and an empty log) leaves the Python stack of the crash on stderr, naming the function."""
    import subprocess
    import sys

    script = ("import argparse, ctypes, blalm.cli as cli\n"
              "def native_crash(args):\n"
              "    ctypes.string_at(0)\n"
              "parser = argparse.ArgumentParser()\n"
              "parser.set_defaults(func=native_crash, verb='crash')\n"
              "cli.build_parser = lambda: parser\n"
              "cli.main([])\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Segmentation fault" in proc.stderr and "native_crash" in proc.stderr, proc.stderr
