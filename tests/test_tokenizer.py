"""The tokenizer stage: byte-level BPE trained on a real corpus folder's train.txt only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, normalizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from conftest import jsonl_text_lines
from blalm.errors import BlalmError, InputError
from blalm.tokenizer import cli as tokenizer_cli
from blalm.tokenizer.train import (
    BOS_TOKEN, EOS_TOKEN, MIN_VOCAB_SIZE, PAD_TOKEN, REPORT_FILE, load_tokenizer, measure_lines, read_lines,
    train_tokenizer,
)

VOCAB = 1000
DEV_ONLY_WORD = "blorptastic"   # many times in dev.txt, never in train.txt
TRICKY_LINES = [
    "café au lait, naïve résumé, crème brûlée",
    "emoji: 🎉🙂👍🏽 and flags 🇨🇦",
    "東京は日本の首都です。 中文 한국어",
    "   leading spaces and trailing spaces   ",
    "\ttab inside\tand at the ends\t",
    "Ünïcödé ½ — “quotes” ‘single’ … ß",
    "a line with a lone \r carriage return",
    "text that mentions <|eos|> and <|bos|> literally",
]



def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture(scope="module")
def corpus(data_dir: Path, tmp_path_factory) -> Path:
    """A corpus folder like 'blalm corpus' writes, from real held-out Wikipedia and CHILDES text."""
    wiki = jsonl_text_lines(data_dir / "dev" / "wikipedia-000.jsonl.xz", 5000)
    childes = jsonl_text_lines(data_dir / "dev" / "childes-000.jsonl.xz", 5000)
    assert not any(DEV_ONLY_WORD in line for line in wiki + childes)
    folder = tmp_path_factory.mktemp("corpus")
    _write_lines(folder / "train.txt", wiki[:4000] + childes[:4000])
    dev = wiki[4000:] + childes[4000:] + TRICKY_LINES
    dev += [f"the {DEV_ONLY_WORD} thing is very {DEV_ONLY_WORD} ." for _ in range(300)]
    _write_lines(folder / "dev.txt", dev)
    (folder / "manifest.json").write_text(json.dumps({"budget_words": 123456, "train_words": 999,
                                                      "dev_words": 42, "seed": 7}), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    report = train_tokenizer(corpus, out, vocab_size=VOCAB, show_progress=False)
    return out, report


def test_loads_as_fast_hf_tokenizer_with_special_tokens(trained):
    out, report = trained
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.is_fast
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2)
    assert len(tok) == VOCAB == report["vocab_size"]
    # encoding adds no BOS/EOS: training and evaluation place them
    ids = tok("the dog is here .")["input_ids"]
    assert ids and not set(ids) & {0, 1, 2}
    assert tok.decode(ids) == "the dog is here ."
    # the 256 byte symbols are all in the vocabulary: nothing is ever unknown
    assert tok.backend_tokenizer.get_vocab_size() == VOCAB
    assert report["special_tokens"]["eos"] == {"token": EOS_TOKEN, "id": 1}


def test_round_trip_on_every_dev_line_and_tricky_strings(trained, corpus):
    out, report = trained
    tok = load_tokenizer(out)
    dev_lines = list(read_lines(corpus / "dev.txt"))
    assert report["dev"]["round_trip"] == {"lines_checked": len(dev_lines), "failures": 0, "ok": True,
                                           "first_failed_lines": []}
    for line in dev_lines:
        assert tok.decode(tok(line)["input_ids"]) == line
    for text in TRICKY_LINES + ["two\nlines\n", "\n\nleading newlines", " ", "", "x  \n  y"]:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text, text
    # the check counts failures: a real tokenizer that lower-cases its input fails on cased lines only
    lossy = Tokenizer.from_file(str(out / "tokenizer.json"))
    lossy.normalizer = normalizers.Lowercase()
    lossy_hf = PreTrainedTokenizerFast(tokenizer_object=lossy, clean_up_tokenization_spaces=False)
    result = measure_lines(lossy_hf, ["plain", "Café", "ok .", "The end ."])["round_trip"]
    assert (result["failures"], result["first_failed_lines"], result["ok"]) == (2, [2, 4], False)


def test_tokens_per_word_matches_recomputation(trained, corpus):
    out, report = trained
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))  # the tokenizers library, line by line
    lines = (corpus / "dev.txt").read_bytes().decode("utf-8").split("\n")[:-1]  # no newline translation
    tokens = sum(len(raw.encode(line, add_special_tokens=False).ids) for line in lines)
    words = sum(len(line.split()) for line in lines)
    dev = report["dev"]
    assert (dev["lines"], dev["words"], dev["tokens"]) == (len(lines), words, tokens)
    assert report["tokens_per_word_dev"] == pytest.approx(tokens / words, abs=1e-6)
    assert 1.0 < report["tokens_per_word_dev"] < 4.0
    train_lines = (corpus / "train.txt").read_bytes().decode("utf-8").split("\n")[:-1]
    assert report["train"]["lines"] == len(train_lines) == 8000
    assert report["train"]["words"] == sum(len(line.split()) for line in train_lines)
    assert 0 < report["train"]["sample"]["lines"] <= 10_000
    assert report["train"]["sample"]["round_trip"]["failures"] == 0
    assert report["corpus"]["dir"] == str(corpus.resolve())
    assert (report["corpus"]["budget_words"], report["corpus"]["seed"]) == (123456, 7)
    on_disk = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    assert on_disk["dev"] == report["dev"] and on_disk["vocab_size"] == VOCAB


def test_trained_on_train_txt_only(trained):
    out, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    vocab = tok.get_vocab()
    assert "Ġthe" in vocab and len(tok(" the")["input_ids"]) == 1          # frequent in train.txt
    assert "Ġ" + DEV_ONLY_WORD not in vocab                                # 600 times in dev.txt only
    assert len(tok(" " + DEV_ONLY_WORD)["input_ids"]) > 1


def test_deterministic_and_replaces_previous_output(corpus, trained, tmp_path):
    out, _ = trained
    again = tmp_path / "again"
    train_tokenizer(corpus, again, vocab_size=VOCAB, show_progress=False)
    assert (again / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    # a second run into the same folder replaces it and leaves no temporary folders behind
    report = train_tokenizer(corpus, again, vocab_size=300, show_progress=False)
    assert report["vocab_size"] == 300 == len(load_tokenizer(again))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_failure_keeps_previous_tokenizer(corpus, tmp_path):
    out = tmp_path / "tok"
    train_tokenizer(corpus, out, vocab_size=300, show_progress=False)
    before = (out / "tokenizer.json").read_bytes()
    bad = tmp_path / "bad_corpus"
    bad.mkdir()
    (bad / "train.txt").write_bytes(b"hello world\n" * 3000 + b"caf\xe9 latin-1\n" + b"more\n")
    with pytest.raises(InputError, match=r"bad_corpus/train\.txt:3001: not valid UTF-8"):
        train_tokenizer(bad, out, vocab_size=300, show_progress=False)
    assert (out / "tokenizer.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_corpus", "tok"]


def test_input_errors_name_the_path(tmp_path, corpus):
    missing = tmp_path / "no_such_corpus"
    with pytest.raises(InputError, match="no_such_corpus.*blalm corpus"):
        train_tokenizer(missing, tmp_path / "out", show_progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty/train\.txt.*not found.*blalm corpus"):
        train_tokenizer(empty, tmp_path / "out", show_progress=False)
    (empty / "train.txt").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty/train\.txt.*empty.*blalm corpus"):
        train_tokenizer(empty, tmp_path / "out", show_progress=False)
    (empty / "train.txt").write_text("\n  \n\t\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty/train\.txt.*empty"):
        train_tokenizer(empty, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_setting_and_output_folder_errors(tmp_path, corpus):
    with pytest.raises(BlalmError, match=f"too small.*{MIN_VOCAB_SIZE}"):
        train_tokenizer(corpus, tmp_path / "out", vocab_size=MIN_VOCAB_SIZE - 1, show_progress=False)
    with pytest.raises(BlalmError, match="min frequency"):
        train_tokenizer(corpus, tmp_path / "out", min_frequency=0, show_progress=False)
    with pytest.raises(BlalmError, match="replace the corpus folder"):
        train_tokenizer(corpus, corpus, vocab_size=300, show_progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(BlalmError, match=r"busy.*notes\.txt"):
        train_tokenizer(corpus, busy, vocab_size=300, show_progress=False)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_read_lines_streams_exact_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("a b\r\nc\u2028d\n\ne\rf\nlast".encode("utf-8"))
    assert list(read_lines(path)) == ["a b", "c\u2028d", "", "e\rf", "last"]


def _verb_parser() -> argparse.ArgumentParser:
    """A ``blalm``-like parser holding only this stage's verb (as blalm.cli builds it from register)."""
    parser = argparse.ArgumentParser(prog="blalm")
    tokenizer_cli.register(parser.add_subparsers(dest="verb", required=True))
    return parser


def test_cli_verb(corpus, tmp_path, capsys):
    parser = _verb_parser()
    out = tmp_path / "tok"
    args = parser.parse_args(["tokenizer", str(corpus), "--vocab-size", "300", "--out", str(out), "--quiet"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "vocab size 300" in printed and "tokens/word on dev.txt" in printed and str(out.resolve()) in printed
    assert AutoTokenizer.from_pretrained(out).is_fast
    args = parser.parse_args(["tokenizer", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert (args.vocab_size, args.min_frequency, args.quiet) == (None, None, False)   # the config's defaults:
    from blalm.tokenizer.config import TokenizerConfig
    assert (TokenizerConfig().vocab_size, TokenizerConfig().min_frequency, TokenizerConfig().progress) == (15000, 2, True)
    with pytest.raises(InputError, match="nowhere.*blalm corpus"):
        args.func(args)
    with pytest.raises(SystemExit):  # --out is required
        parser.parse_args(["tokenizer", str(corpus)])
    # every option has help text
    verb = parser._subparsers._group_actions[0].choices["tokenizer"]
    assert all(action.help for action in verb._actions)


def test_corpus_without_dev_split(corpus, tmp_path, capsys):
    folder = tmp_path / "no_dev"
    folder.mkdir()
    (folder / "train.txt").write_bytes((corpus / "train.txt").read_bytes())
    out = tmp_path / "tok"
    args = _verb_parser().parse_args(["tokenizer", str(folder), "--vocab-size", "300", "--out", str(out),
                                      "--no-progress"])
    assert args.func(args) == 0
    assert "dev.txt: not found" in capsys.readouterr().out
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["dev"] is None and report["corpus"]["manifest"] is None and report["corpus"]["seed"] is None
    assert report["tokens_per_word_train_sample"] > 1.0
