"""Per-source-kind processors (blalm.data.sources): real CHILDES, Gutenberg, OneStopEnglish and
NLTK documents from the data folder; small hand-made samples of the sources it lacks
(TinyStories, Simple Wikipedia, Cosmopedia, FineWeb-Edu, the official BabyLM corpus)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import lzma
import re
from collections import Counter
from pathlib import Path

import pytest

from blalm.data.config import FilterConfig
from blalm.data.documents import Document
from blalm.data.filters.childes import clean_chat, split_speaker
from blalm.data.filters.grammar import offline_normalise
from blalm.data.filters.ner import has_named_entity
from blalm.data.filters.text import word_count
from blalm.data.sources import KIND_DEFAULTS, Processed, SourceProcessor, resolve_filters
from blalm.errors import ConfigError

KINDS = ("childes", "gutenberg", "tinystories", "simple_wiki", "wikipedia", "cosmopedia", "fineweb_edu", "babylm",
         "plain")
NONE_FIELDS = [f.name for f in dataclasses.fields(FilterConfig) if f.default is None]


def read_docs(path: Path, limit: int | None = None, where=None) -> list[Document]:
    docs = []
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(itertools.islice(fh, limit)):
            row = json.loads(line)
            if where is None or where(row):
                docs.append(Document(row["id"], row["text"], f"{path}:{i + 1}", row.get("meta", {})))
    return docs


def check_segments(result: Processed) -> None:
    """The contract every processor keeps."""
    assert isinstance(result, Processed)
    if result.drop:
        assert result.segments == [] and re.fullmatch(r"[a-z0-9_]+", result.drop)
    for seg in result.segments:
        assert seg == seg.strip() and seg and "\n" not in seg and "\r" not in seg
    assert all(re.fullmatch(r"[a-z0-9_]+", k) and v > 0 for k, v in result.segment_drops.items())


# ------------------------------------------------------------------------------ defaults


def test_kind_defaults_cover_every_kind_and_field():
    assert set(KIND_DEFAULTS) == set(KINDS)
    for kind in KINDS:
        assert set(NONE_FIELDS) <= set(KIND_DEFAULTS[kind]), kind
        resolved = resolve_filters(kind, FilterConfig())
        assert all(getattr(resolved, name) is not None for name in NONE_FIELDS), kind
    assert KIND_DEFAULTS["childes"]["min_words"] == 7 and KIND_DEFAULTS["childes"]["keep_child"] is False
    assert KIND_DEFAULTS["gutenberg"]["max_segments_per_doc"] == 200
    assert KIND_DEFAULTS["simple_wiki"]["min_words"] == 15
    assert KIND_DEFAULTS["fineweb_edu"]["min_edu_score"] == 3.0
    assert KIND_DEFAULTS["cosmopedia"]["max_doc_words"] == 1500


def test_resolve_filters_keeps_user_values_and_copies():
    user = FilterConfig(min_words=3, keep_child=True)
    resolved = resolve_filters("childes", user)
    assert resolved.min_words == 3 and resolved.keep_child is True and resolved.grammar == "offline"
    assert user.grammar is None                         # the input is not modified
    assert resolve_filters("childes", resolved) == resolved
    with pytest.raises(ConfigError, match="unknown source kind"):
        resolve_filters("nope", FilterConfig())


def test_empty_document_is_dropped_for_every_kind():
    for kind in KINDS:
        res = SourceProcessor(kind, FilterConfig(), 0)(Document("e", "  \n ", "x:1"))
        check_segments(res)
        assert res.drop == "empty_document"


# ---------------------------------------------------------------------------- CHILDES (real)

_TAG = re.compile(r"\*[A-Za-z0-9_+\-]{1,12}:")
_CHAT = re.compile(r"\b(xxx|yyy|www)\b|[\[\]<>@_+&\x15]|\s[.?!,]")


@pytest.fixture(scope="module")
def childes_docs(data_dir):
    return read_docs(data_dir / "train" / "childes-000.jsonl.xz")


def _child_only_utterances(doc: Document) -> set[str]:
    """Normalised long utterances only the target child says in this transcript."""
    child, others = set(), set()
    for line in doc.text.split("\n"):
        speaker, utt = split_speaker(line)
        norm = offline_normalise(clean_chat(utt))
        if word_count(norm) >= 7:
            (child if speaker == "CHI" else others).add(norm)
    return child - others


def test_childes_real_transcripts(childes_docs):
    proc = SourceProcessor("childes", FilterConfig(), seed=0)
    keep = SourceProcessor("childes", FilterConfig(keep_child=True), seed=0)
    drops, kept_docs, n_segments = Counter(), 0, 0
    child_lines = child_found_default = child_found_keep = 0
    for doc in childes_docs:
        res = proc(doc)
        check_segments(res)
        drops.update(res.segment_drops)
        kept_docs += res.drop is None
        n_segments += len(res.segments)
        for seg in res.segments:
            assert not _TAG.search(seg), seg
            assert not _CHAT.search(seg), seg
            assert word_count(seg) >= 7, seg
            assert seg[0].isupper() or not seg[0].isalpha(), seg
            assert seg[-1] in ".?!", seg
        child = _child_only_utterances(doc) if "*CHI:" in doc.text else set()
        if child:
            child_lines += len(child)
            child_found_default += len(child & set(res.segments))
            child_found_keep += len(child & set(keep(doc).segments))
    assert len(childes_docs) == 973 and kept_docs > 900 and n_segments > 30_000
    assert drops["too_short"] > n_segments        # most utterances are short (paper: < 7 words dropped)
    assert drops["child_utterance"] > 2000
    assert child_lines > 50
    assert child_found_default == 0               # the child's own utterances are gone by default
    assert child_found_keep == child_lines        # and all there with keep_child


def test_childes_markup_and_grammar_on_a_hand_made_transcript():
    doc = Document("c/1", "@Begin\n@Participants:\tCHI Target_Child, MOT Mother\n"
                          "*MOT:\tit's a woof+woof and a big hoo_hoo for you ?\n%mor:\tpro|it\n"
                          "*MOT:\t&-uh <I want> [/] i want xxx the red ball@f now +...\n"
                          "*FAT:\tthat 0is the one that we saw at the zoo .\n"
                          "*CHI:\tand i want the big red ball right now please .\n"
                          "*MOT:\tno .\n@End", "c:1")
    res = SourceProcessor("childes", FilterConfig(), 0)(doc)
    check_segments(res)
    assert res.segments == ["It's a woof woof and a big hoo hoo for you?", "That the one that we saw at the zoo."]
    assert res.segment_drops == Counter({"too_short": 2, "child_utterance": 1})
    res = SourceProcessor("childes", FilterConfig(min_words=1, keep_child=True, grammar="none"), 0)(doc)
    assert res.segments == ["it's a woof woof and a big hoo hoo for you ?", "i want the red ball now",
                            "that the one that we saw at the zoo .",
                            "and i want the big red ball right now please .", "no ."]


def test_childes_all_short_is_a_document_drop():
    res = SourceProcessor("childes", FilterConfig(), 0)(Document("c/2", "*MOT:\tno .\n*MOT:\tyes ?", "c:2"))
    check_segments(res)
    assert res.drop == "too_short" and res.segment_drops == Counter({"too_short": 2})


# --------------------------------------------------------------------------- Gutenberg (real)


@pytest.fixture(scope="module")
def gutenberg_docs(data_dir):
    docs = read_docs(data_dir / "train" / "gutenberg-000.jsonl.xz", limit=3)
    docs += read_docs(data_dir / "train" / "gutenberg-003.jsonl.xz", limit=72,
                      where=lambda row: row["meta"]["title"] == "Five Children and It")   # no markers
    assert len(docs) == 4
    return docs


def test_gutenberg_real_books(gutenberg_docs):
    proc = SourceProcessor("gutenberg", FilterConfig(), seed=0)
    for doc in gutenberg_docs:
        res = proc(doc)
        check_segments(res)
        assert res.drop is None
        assert 50 < len(res.segments) <= 200, (doc.id, len(res.segments))
        assert res.segment_drops["over_sample_cap"] > 0          # these books hold more than 200 samples
        assert res.segment_drops["no_named_entity"] > 0
        for seg in res.segments:
            assert not re.search(r"gutenberg|\betext\b|\bebook\b|\[Illustration|CHAPTER [IVXL]+", seg, re.I), seg
            assert word_count(seg) >= 20 and has_named_entity(seg)
            assert len(seg.split()) <= 2 * 150 + 60                # paragraphs of ~150 words (+ one sentence)
        assert seg.split()[-1] != "End"


def test_gutenberg_sampling_is_deterministic_and_seeded(gutenberg_docs):
    doc = gutenberg_docs[0]
    a = SourceProcessor("gutenberg", FilterConfig(), seed=0)(doc).segments
    b = SourceProcessor("gutenberg", FilterConfig(), seed=0)(doc).segments
    c = SourceProcessor("gutenberg", FilterConfig(), seed=1)(doc).segments
    assert a == b and a != c and len(a) == len(c) == 200
    everything = SourceProcessor("gutenberg", FilterConfig(max_segments_per_doc=0), seed=0)(doc).segments
    order = {s: i for i, s in enumerate(everything)}
    assert set(a) <= set(everything) and [order[s] for s in a] == sorted(order[s] for s in a)
    assert len(everything) > 200


def test_gutenberg_filters_can_be_switched_off(gutenberg_docs):
    doc = gutenberg_docs[1]
    raw = SourceProcessor("gutenberg", FilterConfig(strip_boilerplate=False, require_named_entity=False,
                                                    max_segments_per_doc=0, min_words=0), 0)(doc)
    assert any("Gutenberg" in s for s in raw.segments)
    assert "no_named_entity" not in raw.segment_drops


# -------------------------------------------------------------------------- plain (real data)


def test_plain_onestop_level_tag_and_segments(data_dir):
    docs = read_docs(data_dir / "train" / "onestop-000.jsonl.xz")
    proc = SourceProcessor("plain", FilterConfig(), 0)
    tagged = 0
    for doc in docs:
        res = proc(doc)
        check_segments(res)
        assert res.drop is None
        if doc.text.split("\n")[0].strip() in ("Intermediate", "Int", "Ele", "Adv"):
            tagged += 1
            assert not res.segments[0].startswith("Intermediate"), res.segments[0][:60]
        assert all(word_count(s) >= 3 for s in res.segments)
    assert tagged >= 180


def test_plain_nltk_brown_and_reuters(data_dir):
    docs = read_docs(data_dir / "train" / "nltk-000.jsonl.xz", limit=700)
    proc = SourceProcessor("plain", FilterConfig(), 0)
    brown = [d for d in docs if d.meta.get("corpus") == "brown"][:20]
    reuters = [d for d in docs if d.meta.get("corpus") == "reuters"][:50]
    assert brown and reuters
    for doc in brown:                         # one sentence a line -> ~150-word segments
        res = proc(doc)
        check_segments(res)
        words = sum(len(s.split()) for s in res.segments)
        assert len(res.segments) >= words // 300 and all(len(s.split()) <= 360 for s in res.segments)
        assert sum(1 for s in res.segments if len(s.split()) >= 75) >= len(res.segments) - 1
    for doc in reuters:                       # the all-capitals headline is not part of the text
        headline = doc.text.split("\n")[0].strip()
        res = proc(doc)
        check_segments(res)
        if headline.isupper() and res.segments:
            assert not res.segments[0].startswith(headline)


# ------------------------------------------------------------------ hand-made samples: others


def test_tinystories_samples():
    proc = SourceProcessor("tinystories", FilterConfig(), 0)
    story = ("Once upon a time, there was a little girl named Lily.\nShe loved to play outside.\n\n"
             "One day, she found a shiny rock.")
    res = proc(Document("ts/1", story, "ts:1"))
    check_segments(res)
    assert res.segments == ["There was a little girl named Lily. She loved to play outside. One day, "
                            "she found a shiny rock."]
    keep = SourceProcessor("tinystories", FilterConfig(remove_template_openings=False), 0)
    assert keep(Document("ts/1", story, "ts:1")).segments[0].startswith("Once upon a time, there was")
    assert proc(Document("ts/2", "One day,", "ts:2")).drop == "empty_after_cleaning"


def test_simple_wiki_samples():
    article = ("Paris\n\nParis is the capital city of France and the largest city in that country by population.\n"
               "== History ==\n"
               "People have lived there for a very long time.\n"
               "The city was founded on an island in the river Seine by a Celtic tribe called the Parisii.\n")
    res = SourceProcessor("simple_wiki", FilterConfig(), 0)(Document("w/1", article, "w:1"))
    check_segments(res)
    assert res.segments == [
        "Paris is the capital city of France and the largest city in that country by population.",
        "The city was founded on an island in the river Seine by a Celtic tribe called the Parisii."]
    assert res.segment_drops == Counter({"too_short": 1})


def test_cosmopedia_samples():
    proc = SourceProcessor("cosmopedia", FilterConfig(), 0)
    how_to = ("# How to Plant a Seed\n\n**Step 1:** Fill a small pot with soil.\n"
              "- Push the seed into the soil with your finger.\n\nWater it a little every day and keep it "
              "in a sunny place. After a week you will see a tiny green plant.")
    res = proc(Document("c/1", how_to, "c:1", {"audience": "grade_school_students", "format": "wikihow"}))
    check_segments(res)
    assert res.segments == ["Step 1: Fill a small pot with soil. Push the seed into the soil with your finger. "
                            "Water it a little every day and keep it in a sunny place. After a week you will "
                            "see a tiny green plant."]
    college = proc(Document("c/2", how_to, "c:2", {"audience": "college_students"}))
    assert college.drop == "not_k12"
    proof = proc(Document("c/3", "Theorem 1. Every even number is a sum of two odd numbers.", "c:3",
                          {"audience": "high_school_students"}))
    assert proof.drop == "domain_specific"
    long_doc = proc(Document("c/4", "word " * 1501, "c:4", {"audience": "children"}))
    assert long_doc.drop == "too_long"
    # over twice the segment size: split by paragraphs into ~300-word segments
    para = " ".join(["The plant grows toward the light."] * 12)     # 72 words
    res = proc(Document("c/5", "\n".join([para] * 12), "c:5", {"audience": "young_children"}))
    check_segments(res)
    assert len(res.segments) == 3 and all(250 <= len(s.split()) <= 400 for s in res.segments)


from test_filters import EDU_TEXT, SPAM_TEXT  # noqa: E402  (the same hand-written texts)




def test_fineweb_edu_samples():
    proc = SourceProcessor("fineweb_edu", FilterConfig(), 0)
    good = proc(Document("f/1", EDU_TEXT, "f:1"))
    check_segments(good)
    assert good.drop is None and 1 <= len(good.segments) <= 3
    assert " ".join(good.segments) == " ".join(EDU_TEXT.split())
    assert proc(Document("f/2", SPAM_TEXT, "f:2")).drop == "low_edu_score"
    lenient = SourceProcessor("fineweb_edu", FilterConfig(edu_scorer="none"), 0)
    assert lenient(Document("f/2", SPAM_TEXT, "f:2")).drop is None


def test_babylm_samples():
    lines = ("*CHI:\tmore cookie@f [!] .\n*MOT:\tyou want xxx more ?\n\n= = = Alice = = =\n"
             "Alice was beginning to get very tired.\n*MOT:\tyyy .\n")
    proc = SourceProcessor("babylm", FilterConfig(), 0)
    res = proc(Document("b/1", lines, "b:1"))
    check_segments(res)
    assert res.segments == ["more cookie .", "you want more ?", "= = = Alice = = =",
                            "Alice was beginning to get very tired."]
    assert res.segment_drops == Counter({"empty_after_cleaning": 1})
    strict = SourceProcessor("babylm", FilterConfig(keep_child=False, min_words=3), 0)(Document("b/1", lines, "b:1"))
    assert strict.segments == ["you want more ?", "Alice was beginning to get very tired."]
    assert strict.segment_drops == Counter({"child_utterance": 1, "empty_after_cleaning": 1, "too_short": 1})
