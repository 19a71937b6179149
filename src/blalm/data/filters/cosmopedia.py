"""Cosmopedia (WikiHow, Math, ...): K-12 relevance and domain-specific passages (paper §3.2: "We
filter for content relevant to K–12 learners and remove excessively long or domain-specific
passages"). Over-long passages are dropped by the processor (``filters.max_doc_words``).

**K-12 relevance** (``is_k12(text, meta)``). Cosmopedia rows carry an ``audience`` field. Values seen
in the released data: ``young_children``, ``children``, ``grade_school_students``,
``middle_school_students``, ``high_school_students`` (spelt ``high_school_studnets`` in v2),
``general``, ``college_students`` (also ``college_studnets``), ``researchers``, and a few odd ones
(``alien``, ``requires_details``). Our rule:

1. ``audience`` in ``K12_AUDIENCES`` -> relevant; in ``NON_K12_AUDIENCES`` -> not relevant;
2. otherwise (``general``, odd values, or no audience, e.g. a user's own data without the
   field): a ``prompt`` (Cosmopedia's generation prompt names its target reader) that mentions
   college/university/graduate students, researchers or professionals -> not relevant; a
   prompt or text start that mentions grades, K-12, school children, kids or pupils -> relevant;
3. no cue either way: relevant when the text reads at Flesch-Kincaid grade 10 or below
   (``MAX_FALLBACK_GRADE``), i.e. a K-12 reader can follow it. This keeps the plain how-to
   articles of the WikiHow subset, whose audience is mostly ``general``.

**Domain-specific** (``domain_marker(text)``): the first of ``DOMAIN_MARKERS`` found: code fences
and programming, LaTeX environments and display math, theorem/lemma/corollary/proof language,
research apparatus (``et al.``, DOI, arXiv) and advanced mathematical symbols (∀ ∃ ∫ ∑ ∂ ⊆).
Inline school arithmetic (``$3 + 4 = 7$``) is not a marker.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from blalm.data.filters.text import flesch_kincaid_grade, lines_as_paragraphs

__all__ = ["K12_AUDIENCES", "NON_K12_AUDIENCES", "DOMAIN_MARKERS", "MAX_FALLBACK_GRADE", "is_k12",
           "domain_marker", "cosmopedia_paragraphs"]

K12_AUDIENCES = frozenset({"young_children", "children", "grade_school_students", "middle_school_students",
                           "high_school_students", "high_school_studnets", "k12", "k-12", "students"})
NON_K12_AUDIENCES = frozenset({"college_students", "college_studnets", "researchers", "professionals",
                               "professional", "experts", "graduate_students", "adults"})
MAX_FALLBACK_GRADE = 10.0

_K12_CUE = re.compile(
    r"\b(k-?12|kindergarten|grade[- ]school(?:ers)?|elementary[- ]school|primary[- ]school|"
    r"middle[- ]school|high[- ]school|junior high|(?:\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|"
    r"fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth)[- ]grade(?:rs)?|grade\s+\d{1,2}|"
    r"young (?:children|learners|readers|students)|school ?children|kids|pupils|children)\b",
    re.IGNORECASE)
_NON_K12_CUE = re.compile(
    r"\b(college|university|undergraduate|graduate|postgraduate|ph\.?d|researchers?|"
    r"professionals?|experts?|academics?)\b", re.IGNORECASE)

DOMAIN_MARKERS: tuple[tuple[str, str], ...] = (   # (name, regular expression; ^ matches at line starts)
    ("code_fence", r"```"),
    ("code", r"^\s*(?:def |class |import |from \S+ import |#include|public static|function\s*\(|SELECT\s)"),
    ("latex_environment", r"\\begin\{|\\end\{|\\documentclass"),
    ("display_math", r"\$\$|\\\[|\\\]"),
    ("theorem", r"(?i:\b(?:theorem|lemma|corollary|proposition|q\.e\.d)\b|^\s*proof\b[.:])"),
    ("research", r"(?i:\bet al\.|\bdoi:|\barxiv\b)"),
    ("advanced_symbols", r"[∀∃∫∑∂⊆⊂∇∮]"),
)
_DOMAIN = [(name, re.compile(pattern, re.MULTILINE)) for name, pattern in DOMAIN_MARKERS]


def is_k12(text: str, meta: Mapping[str, Any] | None = None) -> bool:
    """K-12 relevance by ``meta["audience"]``, then prompt/text cues, then readability (module doc)."""
    meta = meta or {}
    audience = str(meta.get("audience") or "").strip().lower()
    if audience in K12_AUDIENCES:
        return True
    if audience in NON_K12_AUDIENCES:
        return False
    prompt = str(meta.get("prompt") or "")
    if _NON_K12_CUE.search(prompt):
        return False
    if _K12_CUE.search(prompt + "\n" + text[:2000]):
        return True
    return flesch_kincaid_grade(text[:5000]) <= MAX_FALLBACK_GRADE


def domain_marker(text: str) -> str | None:
    """The name of the first domain-specific marker in ``text``, or ``None``."""
    for name, pattern in _DOMAIN:
        if pattern.search(text):
            return name
    return None


_MD_HEADING = re.compile(r"^\s*#{1,6}\s+")
_MD_BULLET = re.compile(r"^\s*[-*+•]\s+")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*(?=\S)|(?<=\S)\*)")


def cosmopedia_paragraphs(text: str) -> list[str]:
    """Markdown-light text -> paragraphs: heading lines dropped (titles are fragments), list bullets
    and ``**``/``*``/``__`` emphasis marks removed, every other non-empty line one paragraph."""
    out = []
    for line in lines_as_paragraphs(text):
        if _MD_HEADING.match(line):
            continue
        line = _MD_BULLET.sub("", line)
        line = _MD_EMPHASIS.sub("", line).strip()
        if line:
            out.append(line)
    return out
