"""Per-source-kind processors: the paper's §3.2 filters chained for each kind of source.

The corpus builder calls ``SourceProcessor(kind, resolve_filters(kind, cfg.filters), seed)`` once
per source and then the processor once per document; the result (``Processed``) holds the kept
segments (each becomes one output line) or the reason the whole document was dropped, plus the
segments dropped by reason.

What happens to a document, in order (each step only when its option is on):

1. document checks: empty (``empty_document``), ``max_doc_words`` (``too_long``), ``k12_only``
   (``not_k12``, then ``domain_specific``); UTF-8 punctuation mis-read as Windows-1252 repaired
   (``â€œ`` -> ``“``, ``filters.text.fix_mojibake``);
2. the kind's reader turns the text into *units* (utterances, lines or paragraphs), see below;
   nothing left -> ``empty_after_cleaning``;
3. ``edu_scorer``: the cleaned document is scored; under ``min_edu_score`` -> ``low_edu_score``;
4. units are grouped into segments of about ``segment_words`` words (``0``: one unit a segment;
   paragraphs are only split when one alone exceeds twice that);
5. per segment: ``min_words`` (``too_short``), ``max_grade`` (``too_hard``: Flesch-Kincaid grade
   above it, the readability formula of the offline FineWeb-Edu scorer), ``require_named_entity`` (``no_named_entity``),
   then grammar normalisation (``grammar``) and ``max_segments_per_doc`` (``over_sample_cap``,
   a seeded subsample that keeps document order; for the grouped kinds the filters run over the
   segments in a seeded random order until the cap is reached, which draws the same kind of
   uniform sample of the surviving segments at a fraction of the cost).

For the utterance/paragraph kinds (``childes``, ``babylm``, ``simple_wiki``, ``wikipedia``) step 5's word minimum,
entity check and grammar apply to the units *before* grouping: the paper's minimums are per
utterance (7 words) and per paragraph (15 words). When every segment of a document is dropped,
the document counts as dropped with the most frequent segment reason (``segment_drops`` still
gives the breakdown).

The kinds' readers:

- ``childes``: one utterance a line; CHAT headers (``@Begin``) and dependent tiers (``%mor:``)
  skipped, continuation lines joined; speaker tag removed; the target child's lines
  (``*CHI:``, or a speaker whose ``@ID`` role is ``Target_Child``) dropped unless ``keep_child``
  (``child_utterance``); CHAT markup cleaned (``empty_after_cleaning`` when nothing is left).
  Lines without a tag are utterances too. Each kept utterance carries its speaker's ``@ID`` role
  (``Processed.roles``; ``unknown`` without one) and the document its target child's age band
  and corpus (``Processed.labels``: from the ``@ID`` lines, else ``meta.target_child_age_days``
  and ``meta.corpus``/``meta.collection``), for the manifest's word counts. With
  ``fingerprints=True`` the processor also returns the transcript's utterance keys
  (``Processed.fingerprint``) for the corpus builder's overlap test between two CHILDES sources.
- ``babylm``: one line one unit; tagged CHILDES lines cleaned like ``childes`` (child lines
  kept by default: the official corpus is used as it is), other lines as they are.
- ``gutenberg``: boilerplate stripped (``strip_boilerplate``), lines unwrapped, front matter and
  title lines dropped.
- ``tinystories``: the story's lines joined with spaces (one unit); template opening removed (at
  the start, and at a later line that starts a new story with "Once upon a time"). A document
  flagged ``meta.lowercased`` (text its publisher lower-cased) is, by ``filters.lowercased``,
  restored (``"restore"``: sentence starts, ``i``, and the names of the lexicon that ``prepare``
  learns from the source's cased documents; counted in ``Processed.events``), dropped
  (``"drop"``: reason ``lowercased``) or kept as it is (``"keep"``).
- ``simple_wiki``: lines are paragraphs; section headings dropped.
- ``wikipedia``: the Markdown export of regular Wikipedia (``blalm.data.filters.wikipedia``):
  headings, back-matter sections, tables, footnotes and ``Category:`` lines dropped, list bullets
  removed, inline residue cleaned, the lead's bold title in the title's case (``meta.title``);
  paragraphs then meet the 15-word minimum like Simple Wikipedia's.
- ``cosmopedia``: lines are paragraphs (Markdown headings, bullets and emphasis removed); one
  segment for the whole text unless it exceeds twice ``segment_words``, then paragraphs are
  grouped.
- ``fineweb_edu``: lines are paragraphs (web text).
- ``plain``: OneStopEnglish level tag dropped, lines unwrapped (Brown's one sentence a line
  becomes running text), all-capitals heading lines dropped.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from blalm.data.config import FilterConfig
from blalm.data.documents import Document, count_words
from blalm.data.filters.childes import (age_band, clean_chat, is_target_child, parse_chat, target_child_age,
                                        utterance_keys)
from blalm.data.filters.cosmopedia import cosmopedia_paragraphs, domain_marker, is_k12
from blalm.data.filters.edu import make_edu_scorer
from blalm.data.filters.grammar import make_grammar_normaliser
from blalm.data.filters.gutenberg import gutenberg_paragraphs
from blalm.data.filters.ner import has_named_entity
from blalm.data.filters.plain import clean_babylm_line, plain_paragraphs
from blalm.data.filters.sampling import sample_segments
from blalm.data.filters.text import (collapse_spaces, fix_mojibake, flesch_kincaid_grade, group_segments,
                                     lines_as_paragraphs, normalise_whitespace, unwrap_paragraphs,
                                     word_count)
from blalm.data.filters.tinystories import (STORY_START_OPENINGS, TEMPLATE_OPENINGS, CaseLexicon, learn_case_lexicon,
                                            remove_template_opening, restore_case)
from blalm.data.filters.wiki import wiki_paragraphs
from blalm.data.filters.wikipedia import wikipedia_paragraphs
from blalm.errors import ConfigError

__all__ = ["KIND_DEFAULTS", "resolve_filters", "Processed", "SourceProcessor", "UNIT_LEVEL_KINDS"]

# every FilterConfig field that may be None, at its neutral value (the filter does nothing)
_NEUTRAL: dict[str, object] = {
    "min_words": 0, "max_doc_words": 0, "segment_words": 0, "max_segments_per_doc": 0,
    "keep_child": True,   # neutral = nothing dropped; only the childes kind drops the child's lines
    "grammar": "none", "strip_boilerplate": False, "require_named_entity": False,
    "remove_template_openings": False, "k12_only": False, "edu_scorer": "none", "min_edu_score": 0.0,
    "max_grade": 0.0, "lowercased": "keep",
}

KIND_DEFAULTS: dict[str, dict[str, object]] = {
    kind: {**_NEUTRAL, **overrides} for kind, overrides in {
        "childes": {"min_words": 7, "keep_child": False, "grammar": "offline", "segment_words": 0},
        "gutenberg": {"strip_boilerplate": True, "require_named_entity": True, "max_segments_per_doc": 200,
                      "segment_words": 150, "min_words": 20},
        "tinystories": {"remove_template_openings": True, "segment_words": 0, "min_words": 1,
                        "lowercased": "restore"},   # restore: 99.5% of words right (docs/results/data.md)
        "simple_wiki": {"min_words": 15, "segment_words": 0},
        "wikipedia": {"min_words": 15, "segment_words": 0},
        "cosmopedia": {"k12_only": True, "max_doc_words": 1500, "segment_words": 300},
        "fineweb_edu": {"edu_scorer": "offline", "min_edu_score": 3.0, "segment_words": 200},
        "babylm": {"min_words": 0, "segment_words": 0, "keep_child": True},
        "plain": {"min_words": 3, "segment_words": 150},
    }.items()
}

UNIT_LEVEL_KINDS = frozenset({"childes", "babylm", "simple_wiki", "wikipedia"})


def resolve_filters(kind: str, filters: FilterConfig) -> FilterConfig:
    """A copy of ``filters`` with every ``None`` field set from ``KIND_DEFAULTS[kind]``."""
    if kind not in KIND_DEFAULTS:
        raise ConfigError(f"unknown source kind {kind!r}: use one of {', '.join(sorted(KIND_DEFAULTS))}")
    defaults = KIND_DEFAULTS[kind]
    changes = {name: value for name, value in defaults.items() if getattr(filters, name) is None}
    return dataclasses.replace(filters, **changes)


@dataclass
class Processed:
    segments: list[str]                 # kept segments in document order: one line each, stripped, non-empty
    drop: str | None = None             # whole document dropped, with this reason (then segments == [])
    segment_drops: Counter[str] = field(default_factory=Counter)   # segments dropped by reason
    roles: list[str] = field(default_factory=list)      # childes: each segment's speaker role (else empty)
    labels: dict[str, str] = field(default_factory=dict)  # childes: the document's "age_band" and "corpus"
    fingerprint: np.ndarray | None = None  # childes with fingerprints=True: the transcript's utterance keys
    events: Counter[str] = field(default_factory=Counter)  # things done to the document (case_restored)


@dataclass
class _Read:
    """What a kind's reader makes of a document: units (with their speakers' roles for childes)."""

    units: list[str]
    drops: Counter = field(default_factory=Counter)
    roles: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    fingerprint: np.ndarray | None = None
    events: Counter = field(default_factory=Counter)
    drop: str | None = None             # the whole document (tinystories: lowercased = "drop")


class SourceProcessor:
    """Applies the filters of one source kind to documents (see the module docstring).

    ``fingerprints=True`` (childes) adds each transcript's utterance keys to the result. A
    tinystories processor with ``lowercased = "restore"`` wants ``prepare(documents)`` first (the
    source's documents, to learn the case lexicon; ``needs_prepare`` says so); without it only
    sentence starts and ``i`` are restored.
    """

    def __init__(self, kind: str, filters: FilterConfig, seed: int, *, fingerprints: bool = False):
        self.kind = kind
        self.filters = resolve_filters(kind, filters)
        self.seed = seed
        self.fingerprints = fingerprints
        self.case_lexicon = CaseLexicon(frozenset(), frozenset())
        f = self.filters
        self.grammar = make_grammar_normaliser(str(f.grammar), f.languagetool_url)
        self.edu_scorer = make_edu_scorer(str(f.edu_scorer), f.edu_endpoint, f.edu_model, f.edu_api_key_env)
        readers: dict[str, Callable[[Document], _Read]] = {
            "childes": self._childes, "babylm": self._babylm, "gutenberg": self._gutenberg,
            "tinystories": self._tinystories, "simple_wiki": self._simple_wiki, "wikipedia": self._wikipedia,
            "cosmopedia": self._cosmopedia, "fineweb_edu": self._fineweb_edu, "plain": self._plain,
        }
        self._read = readers[kind]

    @property
    def needs_prepare(self) -> bool:
        return self.kind == "tinystories" and self.filters.lowercased == "restore"

    def prepare(self, documents: Iterable[Document]) -> None:
        """Learn the tinystories case lexicon from the source's documents (cased and lower-cased)."""
        cased, lowered = [], []
        for doc in documents:
            (lowered if doc.meta.get("lowercased") is True else cased).append(doc.text or "")
        self.case_lexicon = learn_case_lexicon(cased, lowered)

    # -- readers: document -> units ---------------------------------------------------------
    def _childes(self, doc: Document) -> _Read:
        transcript = parse_chat(doc.text)
        participants, raw = transcript.participants, transcript.utterances
        read = _Read([], roles=[], labels=_childes_labels(doc, participants))
        if self.fingerprints:
            read.fingerprint = utterance_keys(utt for _, utt in raw)
        min_words = int(self.filters.min_words or 0)
        for speaker, utt in raw:
            if not self.filters.keep_child and is_target_child(speaker, participants):
                read.drops["child_utterance"] += 1
                continue
            if min_words and len(_COMPOUND_JOINERS.sub(" ", utt).split()) < min_words:
                read.drops["too_short"] += 1  # cleaning never adds words beyond these: skip it (speed)
                continue
            cleaned = clean_chat(utt)
            if not cleaned:
                read.drops["empty_after_cleaning"] += 1
                continue
            read.units.append(cleaned)
            role = participants[speaker].role if speaker in participants else ""
            read.roles.append(role or "unknown")
        return read

    def _babylm(self, doc: Document) -> _Read:
        read = _Read([])
        for line in normalise_whitespace(doc.text).split("\n"):
            if not line.strip():
                continue
            speaker, text = clean_babylm_line(line)
            if not self.filters.keep_child and is_target_child(speaker, {}):
                read.drops["child_utterance"] += 1
                continue
            if not text:
                read.drops["empty_after_cleaning"] += 1
                continue
            read.units.append(text)
        return read

    def _gutenberg(self, doc: Document) -> _Read:
        if self.filters.strip_boilerplate:
            return _Read(gutenberg_paragraphs(doc.text))
        return _Read(unwrap_paragraphs(doc.text))

    def _tinystories(self, doc: Document) -> _Read:
        read = _Read([])
        lines = [ln for ln in normalise_whitespace(doc.text).split("\n") if ln.strip()]
        if doc.meta.get("lowercased") is True:
            if self.filters.lowercased == "drop":
                read.drop = "lowercased"
                return read
            if self.filters.lowercased == "restore":
                lines = [restore_case(ln, self.case_lexicon) for ln in lines]
                read.events["case_restored"] += 1
        if self.filters.remove_template_openings:
            lines = [remove_template_opening(ln, TEMPLATE_OPENINGS if k == 0 else STORY_START_OPENINGS)
                     for k, ln in enumerate(lines)]
        story = collapse_spaces(" ".join(lines))
        read.units = [story] if story else []
        return read

    def _simple_wiki(self, doc: Document) -> _Read:
        return _Read(wiki_paragraphs(doc.text))

    def _wikipedia(self, doc: Document) -> _Read:
        return _Read(wikipedia_paragraphs(doc.text, str(doc.meta.get("title") or "")))

    def _cosmopedia(self, doc: Document) -> _Read:
        return _Read(cosmopedia_paragraphs(doc.text))

    def _fineweb_edu(self, doc: Document) -> _Read:
        return _Read(lines_as_paragraphs(doc.text))

    def _plain(self, doc: Document) -> _Read:
        return _Read(plain_paragraphs(doc.text))

    # -- shared steps ---------------------------------------------------------------------
    def _filter_indexed(self, items: list[str], drops: Counter) -> list[tuple[int, str]]:
        """``(index, item)`` of the items that pass the per-segment filters (grammar applied)."""
        f = self.filters
        kept: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            if f.min_words and word_count(item) < f.min_words:
                drops["too_short"] += 1
            elif f.max_grade and flesch_kincaid_grade(item) > f.max_grade:
                drops["too_hard"] += 1
            elif f.require_named_entity and not has_named_entity(item):
                drops["no_named_entity"] += 1
            else:
                kept.append((i, item))
        if kept and f.grammar != "none":
            fixed = self.grammar([item for _, item in kept])
            pairs = [(i, s) for (i, _), s in zip(kept, fixed)]
            kept = [(i, s) for i, s in pairs if s.strip()]
            if len(kept) < len(pairs):
                drops["empty_after_cleaning"] += len(pairs) - len(kept)
        return kept

    def _filter(self, items: list[str], drops: Counter) -> list[str]:
        return [item for _, item in self._filter_indexed(items, drops)]

    def _filter_sample(self, items: list[str], cap: int, doc_id: str, drops: Counter) -> list[str]:
        """Filter, then keep a uniform random ``cap`` of the survivors in document order — computed
        by filtering items in a seeded random order until ``cap`` pass, so that a long book costs
        the (slow) named-entity check on about ``cap`` samples, not on all of them."""
        if len(items) <= cap:
            return self._filter(items, drops)
        order = list(range(len(items)))
        random.Random(f"{self.seed}:{doc_id}").shuffle(order)
        kept: dict[int, str] = {}
        examined = 0
        for i in order:
            if len(kept) == cap:
                break
            examined += 1
            for item in self._filter([items[i]], drops):
                kept[i] = item
        drops["over_sample_cap"] += len(items) - examined
        return [kept[i] for i in sorted(kept)]

    def _group(self, units: list[str]) -> list[str]:
        n = int(self.filters.segment_words or 0)
        if self.kind == "cosmopedia" and n > 0:
            if sum(len(u.split()) for u in units) <= 2 * n:
                return [" ".join(units)]
        return group_segments(units, n)

    def _segments(self, doc: Document, read: _Read) -> tuple[list[str], list[str]]:
        """Steps 4-5 of the module docstring: the kept segments and (childes) their roles."""
        f, drops = self.filters, read.drops
        cap = int(f.max_segments_per_doc or 0)
        roles: list[str] = []
        if self.kind in UNIT_LEVEL_KINDS:
            kept = self._filter_indexed(read.units, drops)
            if read.roles is not None and not f.segment_words:
                segments = [s for _, s in kept]          # one unit one segment: roles stay aligned
                roles = [read.roles[i] for i, _ in kept]
            else:
                segments = self._group([s for _, s in kept])
        elif cap:
            segments = self._filter_sample(self._group(read.units), cap, doc.id, drops)
        else:
            segments = self._filter(self._group(read.units), drops)
        if cap and len(segments) > cap:
            drops["over_sample_cap"] += len(segments) - cap
            segments = sample_segments(segments, cap, self.seed, doc.id)
        pairs = [(collapse_spaces(s), roles[k] if roles else "") for k, s in enumerate(segments)]
        pairs = [(s, r) for s, r in pairs if s]
        return [s for s, _ in pairs], ([r for _, r in pairs] if roles else [])

    def __call__(self, doc: Document) -> Processed:
        f = self.filters
        text = doc.text or ""
        if not text.strip():
            return Processed([], "empty_document")
        if f.max_doc_words and count_words(text) > f.max_doc_words:
            return Processed([], "too_long")
        if f.k12_only:
            if not is_k12(text, doc.meta):
                return Processed([], "not_k12")
            if domain_marker(text) is not None:
                return Processed([], "domain_specific")

        if (repaired := fix_mojibake(text)) is not text:
            doc = dataclasses.replace(doc, text=repaired)
        read = self._read(doc)
        extras = {"labels": read.labels, "fingerprint": read.fingerprint, "events": read.events}
        if read.drop:
            return Processed([], read.drop, read.drops, **extras)
        pairs = [(u, read.roles[k] if read.roles else "") for k, u in
                 enumerate(collapse_spaces(u) for u in read.units)]
        pairs = [(u, r) for u, r in pairs if u]
        read.units = [u for u, _ in pairs]
        read.roles = [r for _, r in pairs] if read.roles is not None else None
        if not read.units:
            return Processed([], _dominant(read.drops) or "empty_after_cleaning", read.drops, **extras)
        if self.edu_scorer is not None:
            if self.edu_scorer.score("\n".join(read.units)) < float(f.min_edu_score or 0.0):
                return Processed([], "low_edu_score", read.drops, **extras)
        segments, roles = self._segments(doc, read)
        if not segments:
            return Processed([], _dominant(read.drops) or "empty_after_cleaning", read.drops, **extras)
        return Processed(segments, None, read.drops, roles=roles, **extras)


def _childes_labels(doc: Document, participants: dict) -> dict[str, str]:
    """The document's target-child age band and corpus, from the ``@ID`` lines or the metadata."""
    age = target_child_age(participants)
    if age is None:
        try:
            age = float(doc.meta.get("target_child_age_days")) / 30.4375
        except (TypeError, ValueError):
            age = None
    # TalkBank files name their corpus in meta.corpus; the childes-db export in meta.collection
    # (its meta.corpus is a numeric id)
    corpus = doc.meta.get("corpus") if participants else doc.meta.get("collection") or doc.meta.get("corpus")
    return {"age_band": age_band(age), "corpus": str(corpus or "unknown")}


_COMPOUND_JOINERS = re.compile(r"[+_]")


def _dominant(drops: Counter) -> str | None:
    """The most frequent drop reason (ties: alphabetical), or ``None``."""
    if not drops:
        return None
    return sorted(drops.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
