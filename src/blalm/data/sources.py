"""Per-source-kind processors: the paper's §3.2 filters chained for each kind of source.

The corpus builder calls ``SourceProcessor(kind, resolve_filters(kind, cfg.filters), seed)`` once
per source and then the processor once per document; the result (``Processed``) holds the kept
segments (each becomes one output line) or the reason the whole document was dropped, plus the
segments dropped by reason.

What happens to a document, in order (each step only when its option is on):

1. document checks: empty (``empty_document``), ``max_doc_words`` (``too_long``), ``k12_only``
   (``not_k12``, then ``domain_specific``);
2. the kind's reader turns the text into *units* (utterances, lines or paragraphs), see below;
   nothing left -> ``empty_after_cleaning``;
3. ``edu_scorer``: the cleaned document is scored; under ``min_edu_score`` -> ``low_edu_score``;
4. units are grouped into segments of about ``segment_words`` words (``0``: one unit a segment;
   paragraphs are only split when one alone exceeds twice that);
5. per segment: ``min_words`` (``too_short``), ``require_named_entity`` (``no_named_entity``),
   then grammar normalisation (``grammar``) and ``max_segments_per_doc`` (``over_sample_cap``,
   a seeded subsample that keeps document order; for the grouped kinds the filters run over the
   segments in a seeded random order until the cap is reached, which draws the same kind of
   uniform sample of the surviving segments at a fraction of the cost).

For the utterance/paragraph kinds (``childes``, ``babylm``, ``simple_wiki``) step 5's word minimum,
entity check and grammar apply to the units *before* grouping: the paper's minimums are per
utterance (7 words) and per paragraph (15 words). When every segment of a document is dropped,
the document counts as dropped with the most frequent segment reason (``segment_drops`` still
gives the breakdown).

The kinds' readers:

- ``childes``: one utterance a line; CHAT headers (``@Begin``) and dependent tiers (``%mor:``)
  skipped, continuation lines joined; speaker tag removed; the target child's lines
  (``*CHI:``) dropped unless ``keep_child`` (``child_utterance``); CHAT markup cleaned
  (``empty_after_cleaning`` when nothing is left). Lines without a tag are utterances too.
- ``babylm``: one line one unit; tagged CHILDES lines cleaned like ``childes`` (child lines
  kept by default: the official corpus is used as it is), other lines as they are.
- ``gutenberg``: boilerplate stripped (``strip_boilerplate``), lines unwrapped, front matter and
  title lines dropped.
- ``tinystories``: the story's lines joined with spaces (one unit); template opening removed.
- ``simple_wiki``: lines are paragraphs; section headings dropped.
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
from typing import Callable

from blalm.data.config import FilterConfig
from blalm.data.documents import Document, count_words
from blalm.data.filters.childes import clean_chat, is_chat_header, is_child, split_speaker
from blalm.data.filters.cosmopedia import cosmopedia_paragraphs, domain_marker, is_k12
from blalm.data.filters.edu import make_edu_scorer
from blalm.data.filters.grammar import make_grammar_normaliser
from blalm.data.filters.gutenberg import gutenberg_paragraphs
from blalm.data.filters.ner import has_named_entity
from blalm.data.filters.plain import clean_babylm_line, plain_paragraphs
from blalm.data.filters.sampling import sample_segments
from blalm.data.filters.text import (collapse_spaces, group_segments, lines_as_paragraphs,
                                     normalise_whitespace, unwrap_paragraphs, word_count)
from blalm.data.filters.tinystories import remove_template_opening
from blalm.data.filters.wiki import wiki_paragraphs
from blalm.errors import ConfigError

__all__ = ["KIND_DEFAULTS", "resolve_filters", "Processed", "SourceProcessor", "UNIT_LEVEL_KINDS"]

# every FilterConfig field that may be None, at its neutral value (the filter does nothing)
_NEUTRAL: dict[str, object] = {
    "min_words": 0, "max_doc_words": 0, "segment_words": 0, "max_segments_per_doc": 0,
    "keep_child": True,   # neutral = nothing dropped; only the childes kind drops the child's lines
    "grammar": "none", "strip_boilerplate": False, "require_named_entity": False,
    "remove_template_openings": False, "k12_only": False, "edu_scorer": "none", "min_edu_score": 0.0,
}

KIND_DEFAULTS: dict[str, dict[str, object]] = {
    kind: {**_NEUTRAL, **overrides} for kind, overrides in {
        "childes": {"min_words": 7, "keep_child": False, "grammar": "offline", "segment_words": 0},
        "gutenberg": {"strip_boilerplate": True, "require_named_entity": True, "max_segments_per_doc": 200,
                      "segment_words": 150, "min_words": 20},
        "tinystories": {"remove_template_openings": True, "segment_words": 0, "min_words": 1},
        "simple_wiki": {"min_words": 15, "segment_words": 0},
        "cosmopedia": {"k12_only": True, "max_doc_words": 1500, "segment_words": 300},
        "fineweb_edu": {"edu_scorer": "offline", "min_edu_score": 3.0, "segment_words": 200},
        "babylm": {"min_words": 0, "segment_words": 0, "keep_child": True},
        "plain": {"min_words": 3, "segment_words": 150},
    }.items()
}

UNIT_LEVEL_KINDS = frozenset({"childes", "babylm", "simple_wiki"})


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


_Units = tuple[list[str], Counter]


class SourceProcessor:
    """Applies the filters of one source kind to documents (see the module docstring)."""

    def __init__(self, kind: str, filters: FilterConfig, seed: int):
        self.kind = kind
        self.filters = resolve_filters(kind, filters)
        self.seed = seed
        f = self.filters
        self.grammar = make_grammar_normaliser(str(f.grammar), f.languagetool_url)
        self.edu_scorer = make_edu_scorer(str(f.edu_scorer), f.edu_endpoint, f.edu_model, f.edu_api_key_env)
        readers: dict[str, Callable[[Document], _Units]] = {
            "childes": self._childes, "babylm": self._babylm, "gutenberg": self._gutenberg,
            "tinystories": self._tinystories, "simple_wiki": self._simple_wiki,
            "cosmopedia": self._cosmopedia, "fineweb_edu": self._fineweb_edu, "plain": self._plain,
        }
        self._read = readers[kind]

    # -- readers: document -> units ---------------------------------------------------------
    def _childes(self, doc: Document) -> _Units:
        drops: Counter = Counter()
        raw: list[tuple[str | None, str]] = []
        for line in normalise_whitespace(doc.text).split("\n"):
            if not line.strip() or is_chat_header(line):
                continue
            if line[:1] == " " and raw and not line.lstrip().startswith("*"):
                speaker, utt = raw[-1]
                raw[-1] = (speaker, utt + " " + line.strip())   # CHAT continuation line
                continue
            raw.append(split_speaker(line))
        units = []
        min_words = int(self.filters.min_words or 0)
        for speaker, utt in raw:
            if is_child(speaker) and not self.filters.keep_child:
                drops["child_utterance"] += 1
                continue
            if min_words and len(_COMPOUND_JOINERS.sub(" ", utt).split()) < min_words:
                drops["too_short"] += 1  # cleaning never adds words beyond these: skip it (speed)
                continue
            cleaned = clean_chat(utt)
            if not cleaned:
                drops["empty_after_cleaning"] += 1
                continue
            units.append(cleaned)
        return units, drops

    def _babylm(self, doc: Document) -> _Units:
        drops: Counter = Counter()
        units = []
        for line in normalise_whitespace(doc.text).split("\n"):
            if not line.strip():
                continue
            speaker, text = clean_babylm_line(line)
            if is_child(speaker) and not self.filters.keep_child:
                drops["child_utterance"] += 1
                continue
            if not text:
                drops["empty_after_cleaning"] += 1
                continue
            units.append(text)
        return units, drops

    def _gutenberg(self, doc: Document) -> _Units:
        if self.filters.strip_boilerplate:
            return gutenberg_paragraphs(doc.text), Counter()
        return unwrap_paragraphs(doc.text), Counter()

    def _tinystories(self, doc: Document) -> _Units:
        story = collapse_spaces(doc.text)
        if self.filters.remove_template_openings:
            story = remove_template_opening(story)
        return ([story] if story else []), Counter()

    def _simple_wiki(self, doc: Document) -> _Units:
        return wiki_paragraphs(doc.text), Counter()

    def _cosmopedia(self, doc: Document) -> _Units:
        return cosmopedia_paragraphs(doc.text), Counter()

    def _fineweb_edu(self, doc: Document) -> _Units:
        return lines_as_paragraphs(doc.text), Counter()

    def _plain(self, doc: Document) -> _Units:
        return plain_paragraphs(doc.text), Counter()

    # -- shared steps ---------------------------------------------------------------------
    def _filter(self, items: list[str], drops: Counter) -> list[str]:
        f = self.filters
        kept = []
        for item in items:
            if f.min_words and word_count(item) < f.min_words:
                drops["too_short"] += 1
            elif f.require_named_entity and not has_named_entity(item):
                drops["no_named_entity"] += 1
            else:
                kept.append(item)
        if kept and f.grammar != "none":
            fixed = self.grammar(kept)
            kept = [s for s in fixed if s.strip()]
            if len(kept) < len(fixed):
                drops["empty_after_cleaning"] += len(fixed) - len(kept)
        return kept

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

        units, drops = self._read(doc)
        units = [u for u in (collapse_spaces(u) for u in units) if u]
        if not units:
            return Processed([], _dominant(drops) or "empty_after_cleaning", drops)
        if self.edu_scorer is not None:
            if self.edu_scorer.score("\n".join(units)) < float(f.min_edu_score or 0.0):
                return Processed([], "low_edu_score", drops)

        cap = int(f.max_segments_per_doc or 0)
        if self.kind in UNIT_LEVEL_KINDS:
            segments = self._group(self._filter(units, drops))
        elif cap:
            segments = self._filter_sample(self._group(units), cap, doc.id, drops)
        else:
            segments = self._filter(self._group(units), drops)

        if cap and len(segments) > cap:
            drops["over_sample_cap"] += len(segments) - cap
            segments = sample_segments(segments, cap, self.seed, doc.id)
        segments = [s for s in (collapse_spaces(s) for s in segments) if s]
        if not segments:
            return Processed([], _dominant(drops) or "empty_after_cleaning", drops)
        return Processed(segments, None, drops)


_COMPOUND_JOINERS = re.compile(r"[+_]")


def _dominant(drops: Counter) -> str | None:
    """The most frequent drop reason (ties: alphabetical), or ``None``."""
    if not drops:
        return None
    return sorted(drops.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
