"""The sources added on 2026-12-01 (issue 17), on real lines of ../shared/data: TalkBank CHILDES
(roles, ages, the overlap with the childes-db export), Wikipedia's Markdown export, TinyStories'
lower-cased slice; plus licences, document sampling and the mojibake repair."""

from __future__ import annotations

import itertools
import json
import lzma
import re
from collections import Counter
from pathlib import Path

import pytest

from blalm.config import load_config
from blalm.data.config import CorpusConfig, FilterConfig
from blalm.data.documents import Document
from blalm.data.filters import childes, text, tinystories, wikipedia
from blalm.data.licences import source_licence
from blalm.data.readers import iter_documents
from blalm.data.sources import SourceProcessor
from blalm.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "corpus"
CHAT_CODES = re.compile(r"\[[!/?=:<>*+x]|\(\.+\)|(?<!\S)&|\+\.\.\.|(?<!\S)(?:xxx|yyy|www|0)(?!\S)|@o\b|\x15")


def first_rows(data_dir: Path, name: str, n: int, part: int = 0) -> list[dict]:
    with lzma.open(data_dir / "train" / f"{name}-{part:03d}.jsonl.xz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, n)]


def as_doc(row: dict) -> Document:
    return Document(row["id"], row["text"], row["id"], row.get("meta", {}))


@pytest.fixture(scope="module")
def talkbank(data_dir) -> list[dict]:
    return first_rows(data_dir, "childes_talkbank", 12)          # Bates: amy20, betty20, ...


@pytest.fixture(scope="module")
def tiny_rows(data_dir) -> list[dict]:
    with lzma.open(data_dir / "train" / "tinystories-000.jsonl.xz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# ------------------------------------------------------------------------ TalkBank CHILDES


def test_chat_participants_roles_and_ages_from_real_id_lines(talkbank):
    amy = childes.chat_participants(talkbank[0]["text"])
    assert amy["CHI"].role == "Child" and amy["CHI"].age_months == pytest.approx(20.0)   # "1;8."
    assert amy["MOT"].role == "Mother" and amy["MOT"].age_months is None
    assert childes.parse_chat_age("2;06.15") == pytest.approx(30 + 15 / 30.4375)
    assert childes.parse_chat_age("3;") == 36 and childes.parse_chat_age("") is None
    assert [childes.age_band(m) for m in (None, 5, 20, 30.5, 71, 80, 336)] == \
        ["unknown", "0y", "1y", "2y", "5y", "6y+", "unknown"]            # 28;0. is a slip for 28 months
    assert childes.is_target_child("CHI", amy) and not childes.is_target_child("MOT", amy)
    gia = {"GIA": childes.Participant("GIA", "Target_Child", None)}    # Bloom70 names its child GIA
    assert childes.is_target_child("GIA", gia)


def test_talkbank_transcripts_are_cleaned_with_roles_and_age_band(talkbank):
    process = SourceProcessor("childes", FilterConfig(), 0)
    roles: Counter = Counter()
    results = [process(as_doc(row)) for row in talkbank]
    assert sum(r.drop is None for r in results) >= 8
    assert {r.drop for r in results} <= {None, "too_short"}       # a toddler session: no 7-word utterance
    for row, result in zip(talkbank, results):
        assert len(result.roles) == len(result.segments)
        assert result.labels["corpus"] == "Bates" and result.labels["age_band"] in ("1y", "2y")
        assert result.segment_drops["child_utterance"] > 0 and result.segment_drops["too_short"] > 0
        for seg in result.segments:
            assert not CHAT_CODES.search(seg), seg
            assert not seg.startswith("*") and text.word_count(seg) >= 7, seg
        roles.update(result.roles)
    assert set(roles) <= {"Mother", "Father", "Investigator", "Adult", "Unidentified", "Sibling", "Brother", "Sister"}
    assert roles["Mother"] > 0 and "Child" not in roles and "Target_Child" not in roles
    keep = SourceProcessor("childes", FilterConfig(keep_child=True, min_words=0), 0)(as_doc(talkbank[0]))
    assert "Child" in keep.roles                  # the target child's lines, as configured


def test_the_same_transcript_in_both_childes_sources_is_found(data_dir, talkbank):
    exported = first_rows(data_dir, "childes", 2)                  # childes-db: Bates amy20, betty20
    tb = [childes.transcript_fingerprint(r["text"]) for r in talkbank]
    db = [childes.transcript_fingerprint(r["text"]) for r in exported]
    assert childes.fingerprint_overlap(db[0], tb[0])                # amy20 in both renderings
    assert childes.fingerprint_overlap(db[1], tb[1])                # betty20
    assert not childes.fingerprint_overlap(db[0], tb[1])            # same corpus, other child
    index = childes.FingerprintIndex(tb)
    assert index.matches(db[0]) == [0] and index.matches(db[1]) == [1]
    assert index.matches(childes.transcript_fingerprint("*MOT:\tnothing like these at all .")) == []


# ------------------------------------------------------------------------------ Wikipedia

RESIDUE = re.compile(r"\[\d+\]|\]\]|\[\[|\{\{|\}\}|Category:|\||(?<!\w)_\w|https?://|^-\s")


def test_wikipedia_export_residue_is_removed_from_real_articles(data_dir):
    rows = first_rows(data_dir, "wikipedia", 40)
    for row in rows:
        paragraphs = wikipedia.wikipedia_paragraphs(row["text"], row["meta"]["title"])
        for p in paragraphs:
            assert not RESIDUE.search(p), (row["id"], p)
            assert p.lower() not in wikipedia.BACK_MATTER and p == p.strip()
    hello = wikipedia.wikipedia_paragraphs(rows[0]["text"], rows[0]["meta"]["title"])
    assert hello[0].startswith('A "Hello, World!" program generally is a computer program')   # caps title
    assert hello[0].endswith("people learning to code.")                                      # [1][2] gone
    assert not any(p.startswith("with a moving strip") for p in hello)                        # caption tail
    assert "Foobar" not in hello and "Java Pet Store" not in hello                             # See also
    proud = wikipedia.wikipedia_paragraphs(rows[1]["text"], rows[1]["meta"]["title"])
    assert proud[0].startswith("&PROUD (And Proud) is an organization")
    assert not any("ShanghaiPRIDE" in p or "List of LGBT" in p for p in proud)                # footnotes, lists


def test_wikipedia_title_in_capitals_restored_on_real_leads(data_dir):
    mudd = first_rows(data_dir, "wikipedia", 1, part=2)[0]                   # the first article of part 2
    lead = wikipedia.wikipedia_paragraphs(mudd["text"], mudd["meta"]["title"])[0]
    assert mudd["meta"]["title"] == "Samuel Mudd" and lead.startswith("Samuel Alexander Mudd (December 20, 1833")
    cases = [("SANDRA ANNETTE BULLOCK (; born July 26, 1964) is an American actress.[1]", "Sandra Bullock",
              "Sandra Annette Bullock (born July 26, 1964) is an American actress."),
             ("A SANCTION may be either a permission or a restriction", "Sanction",
              "A sanction may be either a permission or a restriction"),
             ("The SAN FRANCISCO BAY RESTORATION AUTHORITY (SFBRA) is a government agency",
              "San Francisco Bay Restoration Authority",
              "The San Francisco Bay Restoration Authority (SFBRA) is a government agency"),
             ("ʿILM AL-ḤURŪF () or THE SCIENCE OF LETTERS is an Arabic esoteric science", "'Ilm al-Huruf",
              "Ilm al-Huruf or The Science of Letters is an Arabic esoteric science")]
    for raw, title, expected in cases:                                        # real leads of the export
        assert wikipedia.restore_title_case(wikipedia.clean_wiki_inline(raw), title) == expected
    # lines of the export: LaTeX math, a gallery, an infobox row go whole; dollar amounts stay
    assert wikipedia.clean_wiki_inline(r"Note that the formula for $\textstyle \sum{k=1}^n k^9$ in the first half") == ""
    assert wikipedia.clean_wiki_inline("File:Coin of Dharaghosha.jpg|Coin of the Audumbaras, 2nd century BCE") == ""
    assert wikipedia.clean_wiki_inline("Infobox tennis circuit season | name = 1877 Men's Tennis tour | image =") == ""
    assert wikipedia.clean_wiki_inline("It cost $5 in 1990.[3]") == "It cost $5 in 1990."
    assert wikipedia.restore_title_case("Founded by NASA in 1958.", "Jet Propulsion Laboratory") == \
        "Founded by NASA in 1958."                                           # a lone acronym stays


def test_wikipedia_kind_applies_the_paragraph_minimum_and_the_readability_filter(data_dir):
    docs = [as_doc(r) for r in first_rows(data_dir, "wikipedia", 60)]
    plain = SourceProcessor("wikipedia", FilterConfig(), 0)
    easy = SourceProcessor("wikipedia", FilterConfig(max_grade=10.0), 0)
    kept_all, kept_easy, drops = [], [], Counter()
    for doc in docs:
        kept_all += plain(doc).segments
        result = easy(doc)
        kept_easy += result.segments
        drops += result.segment_drops
    assert kept_all and all(text.word_count(s) >= 15 for s in kept_all)
    assert set(kept_easy) < set(kept_all) and drops["too_hard"] > 0
    assert all(text.flesch_kincaid_grade(s) <= 10.0 for s in kept_easy)

    def mean_sentence_words(segments):
        return sum(len(s.split()) for s in segments) / sum(len(text.split_sentences(s)) for s in segments)
    assert mean_sentence_words(kept_easy) < mean_sentence_words(kept_all)


# ---------------------------------------------------------------------------- TinyStories


def test_tinystories_lowercased_text_restored_on_real_paragraphs(tiny_rows):
    cased = [r["text"] for r in tiny_rows if not r["meta"]["lowercased"]]
    lowered = [r for r in tiny_rows if r["meta"]["lowercased"]]
    lexicon = tinystories.learn_case_lexicon(cased, [r["text"] for r in lowered])
    assert {"lily", "tom", "ben"} <= lexicon.names and "said" in lexicon.after_quote_lower
    second = tinystories.restore_case(lowered[1]["text"], lexicon)
    assert second.startswith('Lily went to her mom and said, "Mom, I found this needle. Can you share it')
    assert 'Her mom smiled and said, "Yes, Lily, we can' in second
    half = len(cased) // 2                                             # held out: learn on one half
    score = tinystories.casing_accuracy(cased[half:half + 600],
                                        tinystories.learn_case_lexicon(cased[:half], [t.lower() for t in cased[half:]]))
    assert score["accuracy"] >= 0.99 and score["wrongly_capitalised"] < 0.005


def test_tinystories_restore_case_touches_only_sentence_leads_i_and_names(tiny_rows):
    """A name before a curly apostrophe is a name (``jimmy’s mom``); a sentence start capitalises
    only the word that leads its token (``3-year-old`` keeps its case). Real lines of the data."""
    cased = [text.fix_mojibake(r["text"]) for r in tiny_rows if not r["meta"]["lowercased"]]
    lowered = [text.fix_mojibake(r["text"]) for r in tiny_rows if r["meta"]["lowercased"]]
    lexicon = tinystories.learn_case_lexicon(cased, lowered)
    lines = [ln for t in lowered for ln in t.split("\n")]
    jimmy = next(ln for ln in lines if "it was jimmy’s mom." in ln)
    assert "It was Jimmy’s mom. She had come" in tinystories.restore_case(jimmy, lexicon)
    boy = next(ln for ln in lines if "a small 3-year-old boy" in ln)
    lead = boy[boy.index("3-year-old"):]                     # the line cut to start at the number
    restored = tinystories.restore_case(lead, lexicon)
    assert restored.startswith("3-year-old boy saw the smelly dog. He had") and restored.lower() == lead


def test_tinystories_kind_restores_drops_or_keeps_the_lowercased_slice(tiny_rows):
    rows = [r for r in tiny_rows if r["meta"]["lowercased"]][:3] + [r for r in tiny_rows if not r["meta"]["lowercased"]][:3]
    docs = [as_doc(r) for r in rows]
    restore = SourceProcessor("tinystories", FilterConfig(), 0)
    assert restore.needs_prepare
    restore.prepare(as_doc(r) for r in tiny_rows)
    first = restore(docs[0])
    assert first.segments[0].startswith("A little girl named Lily found a needle") and first.events["case_restored"] == 1
    # a later line that starts a story loses its template opening too
    third = restore(docs[2]).segments[0]
    assert "once upon a time" not in third.lower() and "worked together. There was a little car named" in third
    assert SourceProcessor("tinystories", FilterConfig(lowercased="drop"), 0)(docs[0]).drop == "lowercased"
    kept = SourceProcessor("tinystories", FilterConfig(lowercased="keep"), 0)(docs[1]).segments[0]
    assert kept == kept.lower()
    assert restore(docs[3]).events["case_restored"] == 0                   # the cased slice is left as it is


def test_mojibake_in_real_tinystories_is_repaired(tiny_rows):
    broken = next(r["text"] for r in tiny_rows if "â€œ" in r["text"])
    fixed = text.fix_mojibake(broken)
    assert "â€" not in fixed and "“" in fixed and "”" in fixed
    assert text.fix_mojibake("plain text") == "plain text"


# ----------------------------------------------------------------- licences, sampling, config


def test_licences_of_the_shared_sources_and_a_configured_one(data_dir):
    files = lambda name: sorted((data_dir / "train").glob(f"{name}-*.jsonl.xz"))  # noqa: E731
    assert source_licence("c", "", files("childes_talkbank"))["licence"].startswith("CC BY-NC-SA 3.0")
    assert "MacWhinney" in source_licence("c", "", files("childes"))["citation"]
    assert source_licence("w", "", files("wikipedia"))["licence"] == "CC BY-SA 3.0"
    assert source_licence("t", "", files("tinystories"))["licence"] == "CDLA-Sharing-1.0"
    assert source_licence("o", "", files("onestop"))["licence"] == "CC BY-SA 4.0"
    assert source_licence("g", "", files("gutenberg"))["licence"].startswith("public domain")
    assert source_licence("x", "CC0", [Path("/my/own.txt")])["licence"] == "CC0"
    assert "sources.x.licence" in source_licence("x", "", [Path("/my/own.txt")])["licence"]


def test_document_sample_is_seeded_counted_and_undecoded(data_dir):
    path = [data_dir / "train" / "onestop-000.jsonl.xz"]
    drops: Counter = Counter()
    half = [d.id for d in iter_documents(path, "jsonl", drops=drops, sample=0.5, sample_seed="0:onestop")]
    assert 250 < len(half) < 500 and len(half) + drops["not_sampled"] == 756
    again = [d.id for d in iter_documents(path, "jsonl", sample=0.5, sample_seed="0:onestop")]
    other = [d.id for d in iter_documents(path, "jsonl", sample=0.5, sample_seed="1:onestop")]
    assert again == half and other != half


def test_overlap_and_sampling_settings_are_checked(tmp_path):
    cfg = tmp_path / "c.toml"
    base = ('[sources.a]\nkind = "childes"\npaths = []\nshare = 1.0\n'
            '[sources.b]\nkind = "plain"\npaths = []\nshare = 1.0\n')
    for extra, needle in [('drop_overlap_with = "nope"', "no such source"),
                          ('drop_overlap_with = "b"', "not of kind 'childes'"),
                          ('drop_overlap_with = "a"', "itself"),
                          ("sample_docs = 0.0", "sample_docs")]:
        cfg.write_text(base.replace("share = 1.0\n[sources.b]", f"share = 1.0\n{extra}\n[sources.b]"))
        with pytest.raises(ConfigError, match=needle):
            load_config(CorpusConfig, cfg, [])


def test_mix2_config_shares_follow_the_paper(data_dir):
    cfg = load_config(CorpusConfig, CONFIGS / "strict_small_mix2.toml", [])
    shares = {n: s.share * cfg.budget_words for n, s in cfg.sources.items()}
    assert cfg.budget_words == 10_000_000 and sum(shares.values()) == pytest.approx(10_000_000)
    assert shares["childes_talkbank"] + shares["childes"] == pytest.approx(2_000_000)   # CHILDES 2M
    assert shares["tinystories"] == pytest.approx(1_000_000) and shares["gutenberg"] == pytest.approx(1_500_000)
    # Wikipedia in Simple Wikipedia's 1.5M, and with OneStop and NLTK in FineWeb-Edu's + Cosmopedia's 4M
    assert shares["wikipedia"] + shares["onestop"] + shares["nltk"] == pytest.approx(5_500_000)
    assert cfg.sources["childes"].drop_overlap_with == "childes_talkbank"
