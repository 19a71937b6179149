"""The corpus stage's typed config (``configs/corpus/*.toml``).

A corpus is a word budget split over named sources. Each source has a *kind* (which reader
defaults and which filters of the paper's §3.2 apply), its input paths, a *share* of the budget
(paper Table 1) and filter options. Filter options left unset take the kind's default (see
``blalm.data.sources``), so a config only states what it changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from blalm.config import check

SourceKind = Literal[
    "childes",      # CHILDES transcripts in CHAT style (``*MOT:\tutterance``)
    "gutenberg",    # Project Gutenberg books
    "tinystories",  # TinyStories
    "simple_wiki",  # Simple English Wikipedia articles
    "wikipedia",    # regular Wikipedia exported to Markdown (export residue removed)
    "cosmopedia",   # Cosmopedia (WikiHow, Math, ...)
    "fineweb_edu",  # FineWeb-Edu
    "babylm",       # official BabyLM corpus ``*.train`` files (CHILDES lines keep their tags there)
    "plain",        # any other text (OneStopEnglish, NLTK corpora, ...): light cleaning only
]

ReaderFormat = Literal[
    "auto",       # by file name: .jsonl/.json(.xz/.gz/.bz2) -> jsonl, .train -> babylm, else text
    "jsonl",      # one JSON object a line, the text in ``text_field``
    "babylm",     # plain text, one utterance or line a line; documents of ``lines_per_document`` lines
    "text",       # plain text files; one file one document
    "tinystories_txt",  # plain text, stories separated by ``<|endoftext|>``
]


@dataclass
class FilterConfig:
    """Filter options. ``None`` means the source kind's default (``blalm.data.sources.KIND_DEFAULTS``)."""

    min_words: int | None = None          # drop segments (utterances, paragraphs) with fewer words
    max_doc_words: int | None = None      # drop whole documents longer than this (Cosmopedia cap); 0 = none
    segment_words: int | None = None      # group paragraphs into segments of about this many words; 0 = one paragraph a segment
    max_segments_per_doc: int | None = None  # keep at most this many segments per document, sampled (Gutenberg: 200)
    keep_child: bool | None = None        # CHILDES: keep the target child's own utterances (*CHI:)
    grammar: Literal["none", "offline", "languagetool"] | None = None  # CHILDES grammar normalisation
    languagetool_url: str = ""            # e.g. http://localhost:8081 (a LanguageTool server); required for grammar="languagetool"
    strip_boilerplate: bool | None = None  # Gutenberg header/licence, tables of contents, illustration markup
    require_named_entity: bool | None = None  # Gutenberg: drop samples without a named entity
    remove_template_openings: bool | None = None  # TinyStories: cut "Once upon a time"-style openings
    k12_only: bool | None = None          # Cosmopedia: keep only K-12 relevant texts
    edu_scorer: Literal["none", "offline", "openai"] | None = None  # FineWeb-Edu educational-value scorer
    edu_endpoint: str = ""                # OpenAI-compatible base URL (…/v1) for edu_scorer="openai"
    edu_model: str = "meta-llama/Llama-3.3-70B-Instruct"
    edu_api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key
    min_edu_score: float | None = None    # keep FineWeb-Edu documents scoring at least this (0-5)
    max_grade: float | None = None        # drop segments above this Flesch-Kincaid grade (readability); 0 = none
    lowercased: Literal["restore", "drop", "keep"] | None = None  # TinyStories text flagged meta.lowercased

    def validate(self) -> None:
        for name in ("min_words", "max_doc_words", "segment_words", "max_segments_per_doc", "max_grade"):
            value = getattr(self, name)
            check(value is None or value >= 0, f"filters.{name} must be >= 0, got {value}")
        check(self.grammar != "languagetool" or bool(self.languagetool_url),
              "filters.grammar = 'languagetool' needs filters.languagetool_url (e.g. http://localhost:8081)")
        check(self.edu_scorer != "openai" or bool(self.edu_endpoint),
              "filters.edu_scorer = 'openai' needs filters.edu_endpoint (an OpenAI-compatible base URL)")


@dataclass
class SourceConfig:
    kind: SourceKind
    paths: list[str] = field(default_factory=list)  # files, folders or globs; "{data}" is the data dir. Empty = not available
    share: float = 0.0            # relative share of the budget (normalised over all sources)
    absorb: bool = True           # may take budget that sources running short hand on
    format: ReaderFormat = "auto"
    text_field: str = "text"      # jsonl: field holding the text
    id_field: str = "id"          # jsonl: field holding the document id (line number when absent)
    lines_per_document: int = 1000  # babylm: consecutive lines grouped into one document
    sample_docs: float = 1.0      # read only this seeded fraction of the documents (a source far larger than its share)
    licence: str = ""             # the text's licence, for the manifest; "" = known for the shared data's files
    drop_overlap_with: str = ""   # childes: drop transcripts that the named (childes) source also holds
    filters: FilterConfig = field(default_factory=FilterConfig)

    def validate(self) -> None:
        check(self.share >= 0, f"share must be >= 0, got {self.share}")
        check(self.lines_per_document >= 1, f"lines_per_document must be >= 1, got {self.lines_per_document}")
        check(0 < self.sample_docs <= 1, f"sample_docs must be in (0, 1], got {self.sample_docs}")
        check(not self.drop_overlap_with or self.kind == "childes",
              f"drop_overlap_with is for kind 'childes' sources (transcripts), not {self.kind!r}")


@dataclass
class CorpusConfig:
    budget_words: int = 10_000_000   # training split: never more words than this (whitespace-separated)
    dev_words: int = 100_000         # held-out dev split, carved out before the training split
    seed: int = 0
    data_dir: str = ""               # replaces "{data}" in paths; default: $BLALM_DATA_DIR or ../shared/data
    dedup: bool = True               # exact deduplication of segments across all sources
    on_error: Literal["fail", "skip"] = "fail"  # malformed input: stop with file:line, or count it as a drop
    workers: int = 0                 # processes running the filters; 0 = one per CPU core (the result is the same)
    sources: dict[str, SourceConfig] = field(default_factory=dict)

    def validate(self) -> None:
        check(self.budget_words > 0, f"budget_words must be > 0, got {self.budget_words}")
        check(self.dev_words >= 0, f"dev_words must be >= 0, got {self.dev_words}")
        check(self.workers >= 0, f"workers must be >= 0 (0 = one per CPU core), got {self.workers}")
        check(bool(self.sources), "no [sources.NAME] tables: a corpus needs at least one source")
        check(sum(s.share for s in self.sources.values()) > 0, "all source shares are 0: give at least one a share > 0")
        for name, src in self.sources.items():
            other = src.drop_overlap_with
            check(not other or other in self.sources,
                  f"sources.{name}.drop_overlap_with = {other!r}: no such source (the sources: "
                  f"{', '.join(self.sources)})")
            check(other != name, f"sources.{name}.drop_overlap_with names the source itself")
            check(not other or not self.sources[other].drop_overlap_with,
                  f"sources.{name}.drop_overlap_with = {other!r}, which drops overlaps itself: "
                  f"one of the two sources keeps the shared transcripts")
            check(not other or self.sources[other].kind == "childes",
                  f"sources.{name}.drop_overlap_with = {other!r}: that source is not of kind 'childes'")


def default_data_dir() -> Path:
    """$BLALM_DATA_DIR, else ``../shared/data`` beside the working directory or the checkout."""
    env = os.environ.get("BLALM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    candidates = [Path.cwd() / ".." / "shared" / "data",
                  Path(__file__).resolve().parents[3] / ".." / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    return candidates[0]


def resolve_data_dir(cfg_value: str) -> Path:
    return Path(cfg_value).expanduser() if cfg_value else default_data_dir()
