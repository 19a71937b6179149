"""The typed config loader: TOML + extends + --set overrides, refusing unknown keys and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from blalm.cli import main
from blalm.config import load_config, parse_override, to_dict
from blalm.data.config import CorpusConfig
from blalm.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "corpus"


def test_shipped_corpus_configs_load():
    small = load_config(CorpusConfig, CONFIGS / "strict_small.toml")
    strict = load_config(CorpusConfig, CONFIGS / "strict.toml")
    demo = load_config(CorpusConfig, CONFIGS / "demo.toml")
    assert small.budget_words == 10_000_000 and strict.budget_words == 100_000_000
    assert demo.budget_words < small.budget_words
    # extends: the demo inherits every source of strict_small and replaces only what it names
    assert set(demo.sources) == set(small.sources)
    assert demo.sources["gutenberg"].paths == ["{data}/train/gutenberg-000.jsonl.xz"]
    assert demo.sources["childes"].paths == small.sources["childes"].paths
    assert strict.sources["tinystories"].share == pytest.approx(0.35)


def test_overrides_are_typed_and_nested():
    cfg = load_config(CorpusConfig, CONFIGS / "demo.toml",
                      ["budget_words=200000", "sources.childes.share=0.5",
                       "sources.childes.filters.keep_child=true", 'sources.nltk.paths=["a.jsonl"]',
                       "data_dir=/tmp/somewhere"])
    assert cfg.budget_words == 200000
    assert cfg.sources["childes"].share == 0.5
    assert cfg.sources["childes"].filters.keep_child is True
    assert cfg.sources["nltk"].paths == ["a.jsonl"]
    assert cfg.data_dir == "/tmp/somewhere"  # not valid TOML -> taken as a plain string


@pytest.mark.parametrize("override, needle", [
    ("budget_word=5", "unknown key 'budget_word'"),
    ("sources.childes.filters.min_word=5", "unknown key 'sources.childes.filters.min_word'"),
    ("budget_words=lots", "expected an integer"),
    ("dedup=1", "expected true or false"),
    ("on_error=ignore", "allowed values: 'fail', 'skip'"),
    ("sources.childes.kind=chat", "allowed values: 'childes'"),
    ("sources.childes.filters.grammar=perfect", "'sources.childes.filters.grammar'"),
    ("budget_words=-3", "budget_words must be > 0"),
    ("sources.childes.share=-1", "sources.childes: share must be >= 0"),
    ("sources.childes.filters.grammar=\"languagetool\"", "needs filters.languagetool_url"),
    ("noequals", "not of the form key=value"),
])
def test_bad_keys_and_values_are_named(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(CorpusConfig, CONFIGS / "demo.toml", [override])
    assert needle in str(err.value)
    # a bad override is the override's error (named as typed); a range check names both
    assert f"--set {override}" in str(err.value) or "key=value" in str(err.value)


@pytest.mark.parametrize("argv, blamed, expected, fix", [
    (["train", "configs/train/demo.toml", "--out", "unused", "--set", "lr=fast"], "--set lr=fast: bad value for 'lr'",
     "expected a number, got 'fast'", "e.g. --set lr=0.001"),
    (["train", "configs/train/demo.toml", "--out", "unused", "--set", "model.short_conv=3"], "--set model.short_conv=3:",
     "expected true or false", "e.g. --set model.short_conv=true"),
    (["train", "configs/train/demo.toml", "--out", "unused", "--set", "lrr=1"], "--set lrr=1: unknown key 'lrr'",
     "allowed keys:", "spelling"),
    (["corpus", "configs/corpus/demo.toml", "--out", "unused", "--set", "on_error=never"],
     "--set on_error=never:", "allowed values: 'fail', 'skip'", "e.g. --set on_error=fail"),
    (["sweep", "configs/experiments/exp5_mechanisms.toml", "--out", "unused", "--scale", "tiny", "--dry-run",
      "--set", "eval.last=many"], "--set eval.last=many:", "expected an integer", "e.g. --set eval.last=3"),
    (["model", "summary", "configs/model/tiny_blalm.toml", "--set", "seed=1"], "--set seed=1: unknown key 'seed'",
     "allowed keys:", "spelling"),
])
def test_a_bad_override_is_blamed_not_the_config_file(argv, blamed, expected, fix, capsys, repo_root,
                                                      monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert blamed in err and expected in err and fix in err, err
    assert ".toml:" not in err and "Traceback" not in err


def test_the_command_line_wins_over_an_experiment_scale(repo_root):
    from blalm.experiments.config import load_experiment

    path = repo_root / "configs/experiments/exp5_mechanisms.toml"
    assert load_experiment(path, scale="tiny").eval.last == 1          # the tiny scale's own value
    assert load_experiment(path, ["eval.last=2"], scale="tiny").eval.last == 2


def test_a_bad_value_in_the_file_still_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "%s"\nbudget_words = "lots"\n' % (CONFIGS / "demo.toml"))
    with pytest.raises(ConfigError) as err:
        load_config(CorpusConfig, bad, ["seed=1"])
    assert str(err.value).startswith(f"{bad}: bad value for 'budget_words'") and "--set" not in str(err.value)


def test_unknown_key_lists_allowed_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('budget_words = 10\n[sources.a]\nkind = "plain"\nshare = 1\nweight = 2\n')
    with pytest.raises(ConfigError) as err:
        load_config(CorpusConfig, bad)
    message = str(err.value)
    assert "unknown key 'sources.a.weight'" in message and "share" in message and str(bad) in message


def test_broken_toml_and_missing_file_and_cycle(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("budget_words = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(CorpusConfig, broken)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(CorpusConfig, tmp_path / "nope.toml")
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(CorpusConfig, tmp_path / "a.toml")


def test_parse_override_reads_toml_values():
    assert parse_override("a=1.5") == ("a", 1.5)
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a='x y'") == ("a", "x y")
    assert parse_override("a = plain words") == ("a", "plain words")


def test_to_dict_is_plain_json():
    import json

    cfg = load_config(CorpusConfig, CONFIGS / "demo.toml")
    plain = json.loads(json.dumps(to_dict(cfg)))
    assert plain["sources"]["childes"]["kind"] == "childes"
    assert plain["sources"]["childes"]["filters"]["min_words"] is None
    assert plain["budget_words"] == cfg.budget_words


def test_cli_reports_config_errors_without_traceback(capsys, tmp_path):
    code = main(["corpus", str(CONFIGS / "demo.toml"), "--out", str(tmp_path / "o"), "--set", "budget_word=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown key 'budget_word'" in err and "Traceback" not in err


def test_every_verb_has_help(capsys):
    from blalm.cli import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    assert "corpus" in verbs
    for name, sub in verbs.items():
        text = sub.format_help()
        assert "--help" in text and sub.description, name
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"
