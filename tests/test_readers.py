"""Streaming source readers (blalm.data.readers): real data, hand-made samples of the paper's
sources the data folder lacks, bad inputs, and flat memory."""

from __future__ import annotations

import bz2
import collections
import gzip
import json
import lzma
import os
import random
import tracemalloc
from pathlib import Path

import pytest

from blalm.data import readers
from blalm.data.readers import detect_format, expand_paths, iter_documents
from blalm.errors import InputError


def write_jsonl(path: Path, rows: list[dict], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


# ---------------------------------------------------------------------------- real data


def test_childes_real_data(data_dir):
    paths = expand_paths(["{data}/train/childes-*.jsonl.xz"], data_dir, where="source 'childes'")
    assert paths == [Path(os.path.abspath(data_dir)) / "train" / "childes-000.jsonl.xz"]
    docs = iter_documents(paths, "auto")
    first = next(docs)
    assert first.id == "childes/6973"
    assert first.origin == f"{paths[0]}:1"
    assert first.meta["collection"] == "Bates"
    assert first.meta["source"] == "childes"          # other top-level fields land in meta
    assert "text" not in first.meta and "id" not in first.meta
    assert first.text.startswith("*MOT:\twhat's that ?\n*CHI:")
    second = next(docs)
    assert second.origin == f"{paths[0]}:2" and second.id != first.id
    assert 2 + sum(1 for _ in docs) == 973             # stats.json: train/childes documents


def test_onestop_count_streaming(data_dir):
    stats = json.loads((data_dir / "stats.json").read_text())
    paths = expand_paths(["{data}/train/onestop-*"], data_dir, where="source 'onestop'")
    drops = collections.Counter()
    n = 0
    levels = collections.Counter()
    for doc in iter_documents(paths, "jsonl", drops=drops):
        n += 1
        levels[doc.meta["level"]] += 1
    assert n == stats["train/onestop"]["documents"] == 756
    assert set(levels) == {"Ele", "Int", "Adv"}
    assert not drops


def test_expand_paths_folder_glob_dedup(data_dir):
    train = Path(os.path.abspath(data_dir)) / "train"
    from_folder = expand_paths(["{data}/train"], data_dir, where="x")
    assert from_folder == sorted(train.iterdir())
    both = expand_paths(["{data}/train/gutenberg-00[0-2].jsonl.xz", "{data}/train/gutenberg-*",
                         str(train / "gutenberg-001.jsonl.xz")], data_dir, where="x")
    assert [p.name for p in both] == [f"gutenberg-00{i}.jsonl.xz" for i in range(6)]
    recursive = expand_paths(["{data}/**/childes-000.jsonl.xz"], data_dir, where="x")
    assert [p.parent.name for p in recursive] == ["dev", "train"]


def test_expand_paths_nothing_matches(tmp_path):
    with pytest.raises(InputError) as exc:
        expand_paths(["{data}/train/tinystories-*.jsonl"], tmp_path, where="source 'tinystories'")
    msg = str(exc.value)
    assert "source 'tinystories'" in msg and "tinystories-*.jsonl" in msg
    assert "BLALM_DATA_DIR" in msg and "data_dir" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="matches no file"):
        expand_paths([str(tmp_path / "empty")], tmp_path, where="source 'x'")
    with pytest.raises(InputError, match="no-such-file.txt"):
        expand_paths([str(tmp_path / "no-such-file.txt")], tmp_path, where="source 'x'")
    assert expand_paths([], tmp_path, where="source 'x'") == []


def test_detect_format():
    assert detect_format(Path("a.jsonl")) == "jsonl"
    assert detect_format(Path("a.JSONL.XZ")) == "jsonl"
    assert detect_format(Path("a.json.gz")) == "jsonl"
    assert detect_format(Path("a.jsonl.bz2")) == "jsonl"
    assert detect_format(Path("childes.train")) == "babylm"
    assert detect_format(Path("childes.train.gz")) == "babylm"
    assert detect_format(Path("TinyStories-train.txt")) == "text"
    assert detect_format(Path("notes.md.xz")) == "text"


# ---------------------------------------------------------------------------- samples of the paper's sources

STORIES = [
    "Once upon a time, there was a little dog named Max.\nMax liked to run in the park.",
    "Lily had a red ball. She gave it to her friend Tom.\n\nTom said thank you.",
    "One day, a cat found a box. The cat sat in the box all day.",
]


def test_tinystories_txt(tmp_path):
    text = ("\n" + STORIES[0] + "\n<|endoftext|>\n" + STORIES[1] + "\n<|endoftext|>\n   \n<|endoftext|>\n"
            + STORIES[2] + "<|endoftext|>\n\n")
    path = tmp_path / "TinyStories-valid.txt"
    path.write_text(text, encoding="utf-8")
    docs = list(iter_documents([path], "tinystories_txt"))
    assert [d.text for d in docs] == STORIES              # stripped; the whitespace-only one skipped
    assert [d.origin for d in docs] == [f"{path}:2", f"{path}:5", f"{path}:11"]
    assert docs[0].id == "TinyStories-valid.txt:2"
    # "auto" does not sniff the separator: a .txt is one text document
    (whole,) = iter_documents([path], "auto")
    assert whole.text.count("<|endoftext|>") == 4 and whole.id == path.name


def test_tinystories_jsonl_story_field(tmp_path):
    rows = [{"story": s, "instruction": {"words": ["dog"]}, "source": "GPT-4"} for s in STORIES]
    path = write_jsonl(tmp_path / "tinystories.jsonl", rows)
    docs = list(iter_documents([path], "auto", text_field="story"))
    assert [d.text for d in docs] == STORIES
    assert [d.id for d in docs] == ["tinystories.jsonl:1", "tinystories.jsonl:2", "tinystories.jsonl:3"]
    assert docs[0].meta == {"instruction": {"words": ["dog"]}, "source": "GPT-4"}
    with pytest.raises(InputError, match=r"line 1: no text field 'text' \(its fields: story"):
        list(iter_documents([path], "jsonl"))  # the default text_field does not fit


def test_fineweb_edu_jsonl(tmp_path):
    rows = [{"text": "Photosynthesis is how plants make food from light.", "id": "<urn:uuid:1>",
             "url": "https://example.org/a", "score": 3.4, "int_score": 3},
            {"text": "Buy cheap watches now!!!", "id": "<urn:uuid:2>",
             "url": "https://example.org/b", "score": 0.6, "int_score": 1}]
    path = write_jsonl(tmp_path / "fineweb-edu-000.jsonl", rows)
    docs = list(iter_documents([path], "jsonl"))
    assert [d.id for d in docs] == ["<urn:uuid:1>", "<urn:uuid:2>"]
    assert docs[0].meta == {"url": "https://example.org/a", "score": 3.4, "int_score": 3}
    assert docs[1].meta["int_score"] == 1 and docs[1].text == "Buy cheap watches now!!!"


def test_simple_wikipedia_jsonl(tmp_path):
    article = ("The Moon is Earth's only natural satellite.\n\n"
               "It is the fifth largest moon in the Solar System.\n\nPeople first walked on it in 1969.")
    rows = [{"id": 12, "url": "https://simple.wikipedia.org/wiki/Moon", "title": "Moon", "text": article}]
    path = write_jsonl(tmp_path / "simplewiki.jsonl", rows)
    (doc,) = iter_documents([path], "jsonl")
    assert doc.id == "12"                                 # ids are strings
    assert doc.text == article and doc.text.count("\n\n") == 2
    assert doc.meta == {"url": "https://simple.wikipedia.org/wiki/Moon", "title": "Moon"}
    assert doc.origin == f"{path}:1"


def test_cosmopedia_jsonl_and_gz(tmp_path):
    rows = [{"prompt": f"Write a wikiHow article about {topic}.", "text": f"How to {topic}\n\nStep 1: ...",
             "seed_data": "wikihow", "format": "wikihow", "audience": aud, "text_token_length": 412 + i}
            for i, (topic, aud) in enumerate([("plant a tree", "young_children"),
                                              ("bake bread", "general"),
                                              ("solve x + 2 = 5", "grade_school_students")])]
    plain = write_jsonl(tmp_path / "cosmopedia-wikihow.jsonl", rows)
    packed = write_jsonl(tmp_path / "cosmopedia-wikihow.jsonl.gz", rows, opener=gzip.open)
    bzipped = write_jsonl(tmp_path / "cosmopedia-wikihow.jsonl.bz2", rows, opener=bz2.open)
    a = list(iter_documents([plain], "auto"))
    b = list(iter_documents([packed], "auto"))
    c = list(iter_documents([bzipped], "jsonl"))
    assert [d.text for d in a] == [d.text for d in b] == [d.text for d in c] == [r["text"] for r in rows]
    assert [d.meta for d in a] == [d.meta for d in b]
    assert a[2].meta["audience"] == "grade_school_students" and a[2].meta["text_token_length"] == 414
    assert a[0].meta["prompt"].startswith("Write a wikiHow") and a[0].meta["format"] == "wikihow"
    assert b[1].id == "cosmopedia-wikihow.jsonl.gz:2" and b[1].origin == f"{packed}:2"
    # several files in one call stream in order
    assert len(list(iter_documents([plain, packed], "auto"))) == 6


def test_babylm_train(tmp_path):
    lines = ["*MOT:\twhere's the ball ?", "*CHI:\tball !", "*MOT: yes , the ball .", "",
             "*FAT:\tdo you want to throw it ?", "*CHI:\tno .", "*MOT:\tokay .", "*CHI:\tthrow !"]
    path = tmp_path / "childes.train"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))  # Windows line ends too
    docs = list(iter_documents([path], "auto", lines_per_document=3))
    assert [d.text for d in docs] == ["\n".join(lines[0:3]), "\n".join(lines[4:7]), lines[7]]
    assert [d.id for d in docs] == ["childes.train:1", "childes.train:5", "childes.train:8"]
    assert docs[1].origin == f"{path}:5" and docs[0].meta == {"file": "childes.train"}
    assert "\r" not in "".join(d.text for d in docs)
    (one,) = iter_documents([path], "babylm")             # default 1000 lines a document
    assert one.text.count("\n") == 6


def test_text_folder_nested(tmp_path):
    root = tmp_path / "corpus"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("First file.\n\nSecond paragraph.\n", encoding="utf-8")
    (root / "b" / "c.txt").write_text("Nested file.", encoding="utf-8")
    (root / "b" / "deep" / "d.md").write_text("# Deep\nnested markdown\n", encoding="utf-8")
    (root / "b" / ".hidden").write_text("editor state", encoding="utf-8")
    paths = expand_paths(["{data}/corpus"], tmp_path, where="source 'plain'")
    assert [p.relative_to(root).as_posix() for p in paths] == ["a.txt", "b/c.txt", "b/deep/d.md"]
    docs = list(iter_documents(paths, "auto"))
    assert [d.id for d in docs] == ["a.txt", "c.txt", "d.md"]
    assert docs[0].text == "First file.\n\nSecond paragraph.\n"
    assert docs[1].origin == str(root / "b" / "c.txt")
    # a glob that matches a folder expands it too
    assert expand_paths([str(root / "b*")], tmp_path, where="x") == paths[1:]


def test_big_text_file_is_split_at_blank_lines(tmp_path):
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "looked", "at", "birds"]
    paras = [" ".join(rng.choice(words) for _ in range(200)) + "\n" for _ in range(12000)]
    text = "\n".join(paras)                                # ~11.5 MB, paragraphs end at blank lines
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    docs = list(iter_documents([path], "text"))
    assert len(docs) == 2
    assert "".join(d.text for d in docs) == text          # nothing lost, nothing added
    assert len(docs[0].text) <= readers.TEXT_CHUNK_BYTES + 2000 and docs[0].text.endswith("\n\n")
    assert docs[0].id == "big.txt:1" and docs[1].id.startswith("big.txt:")
    assert docs[1].origin == f"{path}:{docs[1].id.split(':')[1]}"
    # no blank line at all: cut at a line boundary at twice the chunk size, still bounded
    path.write_text("".join(paras) * 2, encoding="utf-8")  # ~23 MB, not one blank line
    sizes = [len(d.text) for d in iter_documents([path], "text")]
    assert len(sizes) == 2 and max(sizes) <= 2 * readers.TEXT_CHUNK_BYTES + 2000
    assert sum(sizes) == path.stat().st_size


# ---------------------------------------------------------------------------- bad inputs


def test_malformed_json_line(tmp_path):
    path = tmp_path / "gutenberg-000.jsonl"
    path.write_text('{"id": "a", "text": "one"}\n{"id": "b" "text": "two"}\n\n{"id": "c", "text": "three"}\n',
                    encoding="utf-8")
    with pytest.raises(InputError) as exc:
        list(iter_documents([path], "jsonl"))
    msg = str(exc.value)
    assert msg.startswith(f"{path} line 2: malformed JSON (Expecting ',' delimiter: column 12)")
    assert 'on_error = "skip"' in msg
    drops = collections.Counter()
    docs = list(iter_documents([path], "jsonl", on_error="skip", drops=drops))
    assert [d.id for d in docs] == ["a", "c"] and docs[1].origin == f"{path}:4"
    assert drops == {"malformed_json": 1}


def test_not_an_object_and_missing_text(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('[1, 2]\n{"text": 5}\n{"title": "t"}\n{"text": "ok"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.jsonl line 1: a JSON array where a JSON object was expected"):
        list(iter_documents([path], "jsonl"))
    path.write_text('{"text": 5}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 1: the text field 'text' holds a JSON number"):
        list(iter_documents([path], "jsonl"))
    path.write_text('[1, 2]\n{"text": 5}\n{"title": "t"}\n{"text": "ok"}\n', encoding="utf-8")
    drops = collections.Counter()
    docs = list(iter_documents([path], "jsonl", on_error="skip", drops=drops))
    assert [d.text for d in docs] == ["ok"]
    assert drops == {"not_an_object": 1, "missing_text": 2}


def test_bad_utf8_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = [json.dumps({"text": f"doc {i}"}).encode() for i in range(1, 5)]
    good[2] = b'{"text": "caf\xe9"}'                       # latin-1 byte on line 3
    path.write_bytes(b"\n".join(good) + b"\n")
    with pytest.raises(InputError) as exc:
        list(iter_documents([path], "jsonl"))
    assert str(exc.value).startswith(f"{path} line 3: not valid UTF-8 (byte 0xe9")
    drops = collections.Counter()
    docs = list(iter_documents([path], "jsonl", on_error="skip", drops=drops))
    assert [d.text for d in docs] == ["doc 1", "doc 2", "doc 4"] and drops == {"bad_utf8": 1}
    # the same in the line-based formats
    train = tmp_path / "bad.train"
    train.write_bytes(b"*MOT:\thi .\n*CHI:\thi .\n*MOT:\tcaf\xe9 ?\n*CHI:\tyes .\n")
    with pytest.raises(InputError, match=r"bad\.train line 3: not valid UTF-8"):
        list(iter_documents([train], "babylm"))
    drops.clear()
    (doc,) = iter_documents([train], "babylm", on_error="skip", drops=drops)
    assert doc.text == "*MOT:\thi .\n*CHI:\thi .\n*CHI:\tyes ." and drops == {"bad_utf8": 1}
    stories = tmp_path / "bad.txt"
    stories.write_bytes(b"A good story.\n<|endoftext|>\nA b\xffd story.\nStill b\xffd.\n<|endoftext|>\nAnother.\n")
    with pytest.raises(InputError, match=r"bad\.txt line 3: not valid UTF-8 \(byte 0xff"):
        list(iter_documents([stories], "tinystories_txt"))
    drops.clear()
    docs = list(iter_documents([stories], "tinystories_txt", on_error="skip", drops=drops))
    assert [d.text for d in docs] == ["A good story.", "Another."] and drops == {"bad_utf8": 1}


@pytest.mark.parametrize("fmt,name", [("jsonl", "e.jsonl"), ("babylm", "e.train"), ("text", "e.txt"),
                                      ("tinystories_txt", "e.txt"), ("auto", "e.jsonl.xz")])
def test_empty_file(tmp_path, fmt, name):
    zero = tmp_path / name
    zero.write_bytes(b"")
    blank = tmp_path / ("blank-" + name)
    if name.endswith(".xz"):
        blank.write_bytes(lzma.compress(b"  \n\n\t\n"))
    else:
        blank.write_bytes(b"  \n\n\t\n")
    for path in (zero, blank):
        with pytest.raises(InputError) as exc:
            list(iter_documents([path], fmt))
        assert str(exc.value).startswith(f"{path}: empty file")
    drops = collections.Counter()
    assert list(iter_documents([zero, blank], fmt, on_error="skip", drops=drops)) == []
    assert drops == {"empty_file": 2}


def test_missing_file_always_fails(tmp_path):
    path = tmp_path / "gone.jsonl"
    for on_error in ("fail", "skip"):
        with pytest.raises(InputError, match=r"gone\.jsonl: file not found"):
            list(iter_documents([path], "auto", on_error=on_error))


def test_unknown_format_and_bad_arguments(tmp_path):
    with pytest.raises(InputError) as exc:
        iter_documents([tmp_path / "a.txt"], "csv")      # raised at call time, not at first next()
    assert "'csv'" in str(exc.value)
    for fmt in ("auto", "jsonl", "babylm", "text", "tinystories_txt"):
        assert fmt in str(exc.value)
    with pytest.raises(InputError, match="on_error"):
        iter_documents([], "jsonl", on_error="ignore")
    with pytest.raises(InputError, match="lines_per_document"):
        iter_documents([], "babylm", lines_per_document=0)


def test_truncated_and_corrupt_compressed(tmp_path):
    payload = "".join(json.dumps({"text": f"line {i} of a long file"}) + "\n" for i in range(20000))
    packed = lzma.compress(payload.encode())
    path = tmp_path / "part-000.jsonl.xz"
    path.write_bytes(packed[: len(packed) // 2])
    docs = iter_documents([path], "jsonl")
    n = 0
    with pytest.raises(InputError) as exc:
        for _ in docs:
            n += 1
    assert 0 < n < 20000                                   # streamed up to the cut
    assert str(exc.value).startswith(f"{path}: corrupt or truncated .xz file")
    with pytest.raises(InputError, match="corrupt or truncated .xz file"):  # not a failure to skip
        list(iter_documents([path], "jsonl", on_error="skip"))
    not_gz = tmp_path / "fake.jsonl.gz"
    not_gz.write_bytes(b'{"text": "plain, not gzip"}\n')
    with pytest.raises(InputError, match=r"fake\.jsonl\.gz: corrupt or truncated \.gz file"):
        list(iter_documents([not_gz], "auto"))
    not_bz2 = tmp_path / "fake.train.bz2"
    not_bz2.write_bytes(b"*MOT:\thello .\n")
    with pytest.raises(InputError, match=r"corrupt or truncated \.bz2 file"):
        list(iter_documents([not_bz2], "auto"))


# ---------------------------------------------------------------------------- memory


def test_memory_stays_flat(tmp_path):
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz     "
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(20000):
            text = "".join(rng.choice(alphabet) for _ in range(100)) * 10
            fh.write(json.dumps({"id": f"d{i}", "text": text, "score": i % 5}) + "\n")
    assert path.stat().st_size > 20_000_000
    n = 0
    tracemalloc.start()
    try:
        for doc in iter_documents([path], "auto"):
            n += len(doc.text) > 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 20000
    assert peak < 3_000_000, f"peak traced memory {peak} bytes while streaming a 20 MB file"
