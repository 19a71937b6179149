"""``blalm corpus`` end to end on the real data: budget, accounting, cleanliness, determinism, bad input."""

from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

import pytest

from blalm.cli import main
from blalm.config import load_config
from blalm.data.config import CorpusConfig
from blalm.data.corpus import build_corpus

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "corpus"
SPEAKER_TAG = re.compile(r"\*[A-Z]{2,4}:")


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_demo_corpus_fills_the_budget_and_accounts_for_every_document(demo_corpus):
    m = _manifest(demo_corpus)
    train = (demo_corpus / "train.txt").read_text(encoding="utf-8")
    dev = (demo_corpus / "dev.txt").read_text(encoding="utf-8")
    assert m["budget_words"] == 200_000
    assert 0.99 * 200_000 <= m["train_words"] <= 200_000
    assert m["train_words"] == len(train.split()), "manifest words must be the file's whitespace words"
    assert m["dev_words"] == len(dev.split()) and 0 < m["dev_words"] <= 10_000
    for name, s in m["sources"].items():
        assert s["docs_read"] == s["docs_train"] + s["docs_dev"] + sum(s["dropped"].values()), name
        assert s["words"] <= s["available_words"]
    assert sum(s["words"] for s in m["sources"].values()) == m["train_words"]
    # the sources that exist here are read; the paper's missing ones are reported as such
    assert m["sources"]["childes"]["status"] == "ok" and m["sources"]["childes"]["docs_read"] == 973
    assert m["sources"]["tinystories"]["status"] == "no input" and m["sources"]["tinystories"]["words"] == 0
    assert m["seed"] == 0 and m["config"]["budget_words"] == 200_000
    assert m["run_info"]["versions"]["python"]


def test_demo_corpus_is_clean(demo_corpus):
    train = (demo_corpus / "train.txt").read_text(encoding="utf-8").splitlines()
    dev = (demo_corpus / "dev.txt").read_text(encoding="utf-8").splitlines()
    for line in train + dev:
        assert line.strip() == line and line, repr(line)
        assert not SPEAKER_TAG.search(line), line
        assert "gutenberg" not in line.lower(), line
    assert not set(train) & set(dev), "dev and train must not share a line"
    assert len(set(train)) == len(train), "exact duplicates must be removed"


def test_same_seed_same_corpus_whatever_the_workers(tmp_path, data_dir):
    """The filters in this process or in a pool of two: the same corpus, byte for byte (the
    documents of CHILDES and OneStop; the large sources left out to keep the test short)."""
    small = ["budget_words=20000", "dev_words=1000", f"data_dir={str(data_dir)!r}",
             "sources.gutenberg.paths=[]", "sources.nltk.paths=[]"]
    built = []
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        build_corpus(load_config(CorpusConfig, CONFIGS / "demo.toml", small + [f"workers={workers}"]), out,
                     progress=False)
        built.append(((out / "train.txt").read_bytes(), (out / "dev.txt").read_bytes()))
    assert built[0] == built[1] and built[0][0]


def test_other_seed_other_corpus(tmp_path, data_dir):
    small = ["budget_words=20000", "dev_words=1000", f"data_dir={str(data_dir)!r}",
             "sources.gutenberg.paths=[]", "sources.nltk.paths=[]"]
    texts = []
    for seed in (0, 0, 1):
        out = tmp_path / f"seed{seed}_{len(texts)}"
        build_corpus(load_config(CorpusConfig, CONFIGS / "demo.toml", small + [f"seed={seed}"]), out, progress=False)
        texts.append((out / "train.txt").read_bytes())
    assert texts[0] == texts[1] and texts[0] != texts[2]


def _small_source_config(tmp_path: Path, path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'budget_words = 300\ndev_words = 20\n{extra}\n'
                   f'[sources.x]\nkind = "plain"\nshare = 1.0\npaths = ["{path}"]\n'
                   f'[sources.x.filters]\nmin_words = 1\nsegment_words = 0\n')
    return cfg


def test_malformed_line_is_named_or_counted(tmp_path, capsys):
    good = json.dumps({"id": "a", "text": "one two three four five six seven"})
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join([good, '{"id": "b", "text": "broken', good.replace('"a"', '"c"').replace("one", "uno")]) + "\n")
    cfg = _small_source_config(tmp_path, src)
    code = main(["corpus", str(cfg), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and str(src) in err and "line 2" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "manifest.json").exists()
    code = main(["corpus", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--set", "on_error=skip"])
    assert code == 0
    s = _manifest(tmp_path / "o")["sources"]["x"]
    assert s["dropped"].get("malformed_json") == 1 and s["docs_read"] == 3


@pytest.mark.parametrize("override, needle", [
    ('sources.x.paths=["/nonexistent/none-*.jsonl"]', "/nonexistent/none-*.jsonl"),
    ('sources.x.kind="newspaper"', "allowed values"),
])
def test_bad_sources_are_clear_errors(tmp_path, capsys, override, needle):
    src = tmp_path / "ok.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "one two three"}) + "\n")
    code = main(["corpus", str(_small_source_config(tmp_path, src)), "--out", str(tmp_path / "o"),
                 "--quiet", "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


def test_empty_file_is_an_error_naming_it(tmp_path, capsys):
    src = tmp_path / "empty.jsonl.xz"
    with lzma.open(src, "wt") as fh:
        fh.write("")
    code = main(["corpus", str(_small_source_config(tmp_path, src)), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "empty.jsonl.xz" in err


def test_budget_larger_than_the_sources_reports_the_shortfall(tmp_path, capsys):
    lines = [json.dumps({"id": str(i), "text": f"word{i} " * (5 + i % 7)}) for i in range(40)]
    src = tmp_path / "few.jsonl"
    src.write_text("\n".join(lines) + "\n")
    cfg = _small_source_config(tmp_path, src)
    code = main(["corpus", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--set", "budget_words=1000000"])
    out = capsys.readouterr().out
    m = _manifest(tmp_path / "o")
    total = sum(5 + i % 7 for i in range(40))
    assert code == 0 and "short" in out
    assert m["train_words"] + m["dev_words"] == total and m["shortfall_words"] == 1_000_000 - m["train_words"]


def test_failed_rebuild_leaves_the_old_corpus_as_it_was(tmp_path, capsys):
    """Issue 13 item 4: a rebuild that fails keeps the old run_info.json (matching manifest.json) and
    leaves no .work or staging folder behind."""
    lines = [json.dumps({"id": str(i), "text": f"word{i} and some more words here"}) for i in range(60)]
    src = tmp_path / "good.jsonl"
    src.write_text("\n".join(lines) + "\n")
    cfg = _small_source_config(tmp_path, src)
    out = tmp_path / "o"
    assert main(["corpus", str(cfg), "--out", str(out), "--quiet"]) == 0
    before = {name: (out / name).read_bytes() for name in ("train.txt", "dev.txt", "manifest.json", "run_info.json")}
    (out / ".tokens").mkdir()                               # the trainer's token cache is kept
    src.write_text("\n".join(lines[:30] + ['{"id": "x", "text": "broken'] + lines[30:]) + "\n")
    assert main(["corpus", str(cfg), "--out", str(out), "--quiet", "--set", "seed=1"]) == 2
    assert "line 31" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == [".tokens", "dev.txt", "manifest.json", "run_info.json", "train.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")] == [".o.lock"]   # the lock only
    m, info = _manifest(out), json.loads(before["run_info.json"])
    assert m["run_info"] == info                            # run_info.json still describes this corpus
    # a successful rebuild replaces the corpus and keeps the cache
    src.write_text("\n".join(lines[:20]) + "\n")
    assert main(["corpus", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert (out / ".tokens").is_dir() and _manifest(out)["run_info"] == json.loads((out / "run_info.json").read_text())
    assert _manifest(out)["train_words"] + _manifest(out)["dev_words"] == 20 * 6


def test_out_folder_of_other_files_is_refused(tmp_path, capsys):
    src = tmp_path / "good.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "one two three four"}) + "\n")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.md").write_text("mine")
    assert main(["corpus", str(_small_source_config(tmp_path, src)), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "notes.md" in capsys.readouterr().err and (tmp_path / "o" / "notes.md").read_text() == "mine"


def test_sources_that_yield_no_words_are_an_error_not_an_empty_corpus(tmp_path, capsys):
    """Issue 13 item 7: with on_error = "skip", sources of nothing but bad lines give no corpus and exit 2."""
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": "a", "text": "broken\n{"id": "b"}\n[1, 2]\n')
    code = main(["corpus", str(_small_source_config(tmp_path, src, 'on_error = "skip"')),
                 "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "no source yielded any words" in err and "x: 3 documents read" in err
    assert "malformed_json 1" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_mix2_on_slices_of_the_new_sources(tmp_path, data_dir):
    """strict_small_mix2.toml end to end on small slices: the CHILDES overlap dropped and counted,
    words by role / age band / corpus, TinyStories' casing restored, every licence named."""
    d = str(data_dir)
    overrides = [f"data_dir={d!r}", "budget_words=150000", "dev_words=3000", "workers=1",
                 "sources.childes_talkbank.sample_docs=0.05", 'sources.gutenberg.paths=["{data}/train/gutenberg-005.jsonl.xz"]',
                 "sources.gutenberg.sample_docs=0.1", 'sources.wikipedia.paths=["{data}/train/wikipedia-002.jsonl.xz"]',
                 "sources.wikipedia.sample_docs=0.03", "sources.nltk.sample_docs=0.05", "sources.tinystories.sample_docs=0.3"]
    m = build_corpus(load_config(CorpusConfig, CONFIGS / "strict_small_mix2.toml", overrides), tmp_path / "c", progress=False)
    assert 0.99 * 150_000 <= m["train_words"] <= 150_000
    s = m["sources"]
    for name, entry in s.items():
        assert entry["licence"] and "unknown" not in entry["licence"], name
        assert entry["docs_read"] == entry["docs_train"] + entry["docs_dev"] + sum(entry["dropped"].values()), name
    talkbank, export = s["childes_talkbank"], s["childes"]
    assert export["overlap"]["with"] == "childes_talkbank" and export["dropped"]["overlap"] == export["overlap"]["docs"] > 0
    assert talkbank["overlap"]["docs"] >= export["overlap"]["docs"] * 0.9
    assert talkbank["dropped"]["not_sampled"] > 3000 and s["wikipedia"]["dropped"]["not_sampled"] > 6000
    for key in ("words_by_role", "words_by_age_band", "words_by_corpus"):
        assert sum(talkbank[key].values()) == talkbank["words"], key
    assert talkbank["words_by_role"]["Mother"] > 0 and "Target_Child" not in talkbank["words_by_role"]
    assert set(export["words_by_role"]) == {"unknown"} and sum(export["words_by_corpus"].values()) == export["words"]
    assert s["tinystories"]["events"]["case_restored"] > 3_000 and s["tinystories"]["words"] > 0
    train = (tmp_path / "c" / "train.txt").read_text(encoding="utf-8")
    assert "â€" not in train and not re.search(r"\[\d+\]|Category:|\]\]", train)
