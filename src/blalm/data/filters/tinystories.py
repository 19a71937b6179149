"""TinyStories: remove template openings (paper §3.2: "We remove template-like introductions (e.g.,
"Once upon a time…") to reduce repetition and increase stylistic variety").

``remove_template_opening(story)`` cuts the first matching opening of ``TEMPLATE_OPENINGS`` at the
start of the story (case-insensitive; leading quotes and spaces allowed) and re-capitalises what
follows. Openings that carry the sentence's verb keep it: ``Once upon a time, there was a girl``
-> ``There was a girl``; ``Once there were two cats`` -> ``There were two cats``. The list is tried
in order (longest first); pass your own ``openings`` to change it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["TEMPLATE_OPENINGS", "STORY_START_OPENINGS", "remove_template_opening", "CaseLexicon",
           "learn_case_lexicon", "restore_case", "casing_accuracy"]

# (regular expression matched at the start, replacement); the replacement's case is fixed afterwards
TEMPLATE_OPENINGS: tuple[tuple[str, str], ...] = (
    (r"once\s+upon\s+a\s+time\s*,?\s+there\s+(was|were|lived|lives|is|are)\b", r"there \1"),
    (r"once\s+upon\s+a\s+time\s*,?\s+in\s+a\s+(?=\w)", "in a "),
    (r"once\s+upon\s+a\s+time\s*[,.!…]*\s*", ""),
    (r"once\s+there\s+(was|were|lived|is|are)\b", r"there \1"),
    (r"one\s+(?:sunny\s+|bright\s+|beautiful\s+|fine\s+)?day\s*,\s*", ""),
    (r"one\s+(?:sunny\s+|bright\s+|beautiful\s+|fine\s+)?day\s+(?=\w)", ""),
    (r"once\s*,\s*", ""),
)
# the openings that start a story (not a paragraph inside one): tried at a later line of a text
STORY_START_OPENINGS: tuple[tuple[str, str], ...] = TEMPLATE_OPENINGS[:4]


def remove_template_opening(story: str,
                            openings: tuple[tuple[str, str], ...] = TEMPLATE_OPENINGS) -> str:
    """The story without its template opening (unchanged when none matches)."""
    m = re.match(r"^[\s\"'“‘]*", story)
    lead = m.end() if m else 0
    head = story[:lead].strip()
    rest = story[lead:]
    for pattern, replacement in openings:
        new, count = re.subn(r"^(?:" + pattern + ")", replacement, rest, count=1, flags=re.IGNORECASE)
        if count:
            new = new.lstrip(" ,")
            if new[:1].isalpha():
                new = new[0].upper() + new[1:]
            return head + new
    return story


# --------------------------------------------------------------------------------------------
# the lower-cased slice: casing restored
#
# Part of the TinyStories data we have was lower-cased by its publisher (``meta.lowercased``).
# ``restore_case(text, names)`` capitalises what English capitalises that can be told from the
# text alone: a sentence's first word (at the start, after ``.``/``!``/``?``, and at an opening
# quote, where speech starts; only a word that leads its token: ``3-year-old`` stays), the pronoun
# ``i`` (``i'm``, ``i'll``, ...), and the words of ``names`` (``lily's``, ``lily’s`` too): words seen
# capitalised in the middle of sentences elsewhere in the source (the cased slice), as learnt by ``learn_case_lexicon``. After a quote that ends with ``!``/``?``/``.``, the
# next word starts a sentence unless the cased text mostly writes it in lower case there
# (``"Wow!" said Tom``): the lexicon learns those words too (``after_quote_lower``).
# ``casing_accuracy`` measures the restoration against cased originals (docs/results/data.md).

_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
_QUOTE_END = re.compile(r"[.!?,…][\"”’']$")
_STEM = re.compile(r"['’]")                      # "lily’s": the name before the apostrophe
_ALNUM = re.compile(r"[0-9A-Za-z]")
_OPENERS = "\"“‘'("
_PRONOUN_I = frozenset({"i", "i'm", "i'll", "i've", "i'd", "i’m", "i’ll", "i’ve", "i’d"})


@dataclass(frozen=True)
class CaseLexicon:
    names: frozenset[str]               # lower-cased words written with a capital mid-sentence
    after_quote_lower: frozenset[str]   # words written in lower case right after a closed quote


def _positions(text: str):
    """``(match, starts_sentence, after_closed_quote)`` for every whitespace token of ``text``."""
    start, after_quote = True, False
    for m in re.finditer(r"\S+", text):
        tok = m.group(0)
        yield m, start or tok[:1] in _OPENERS, after_quote
        start = bool(_SENTENCE_END.search(tok)) and not _QUOTE_END.search(tok)
        after_quote = bool(_QUOTE_END.search(tok)) and tok[-2:-1] in ".!?…"


_NAMING = re.compile(r"\b(?:named|called)\s+([a-z]+)\b")


def learn_case_lexicon(cased_texts, lowered_texts=(), min_count: int = 2, min_share: float = 0.9) -> CaseLexicon:
    """What the cased texts capitalise: words written with a capital in at least ``min_share`` of
    their (at least ``min_count``) mid-sentence uses, and words mostly in lower case after a quote.
    Lower-cased texts add the names they introduce (``a car named beep``) that the cased texts
    never write in lower case mid-sentence."""
    upper: Counter = Counter()
    lower: Counter = Counter()
    quote_upper: Counter = Counter()
    quote_lower: Counter = Counter()
    for text in cased_texts:
        for m, starts, after_quote in _positions(text):
            word = _WORD.search(m.group(0))
            if word is None:
                continue
            w = word.group(0)
            if after_quote and not m.group(0)[:1] in _OPENERS:
                (quote_upper if w[0].isupper() else quote_lower)[w.lower()] += 1
            if starts or after_quote:
                continue
            if w[0].isupper() and not w.isupper():
                upper[w.lower()] += 1
            elif w.islower():
                lower[w] += 1
    names = {w for w, c in upper.items() if c >= min_count and c >= min_share * (c + lower[w])
             and w not in _PRONOUN_I}
    for text in lowered_texts:
        names.update(w for w in _NAMING.findall(text) if not lower[w] and w not in _PRONOUN_I)
    after_quote_lower = {w for w, c in quote_lower.items() if c > quote_upper[w]}
    return CaseLexicon(frozenset(names), frozenset(after_quote_lower))


def _capitalise(token: str, word: re.Match) -> str:
    i = word.start()
    return token[:i] + token[i].upper() + token[i + 1:]


def restore_case(text: str, lexicon: CaseLexicon) -> str:
    """Casing put back into lower-cased text (see above); whitespace kept as it is."""
    out, last = [], 0
    for m, starts, after_quote in _positions(text):
        tok = m.group(0)
        word = _WORD.search(tok)
        if word is not None:
            w = word.group(0).lower()
            if after_quote and not starts:
                starts = w not in lexicon.after_quote_lower
            leads = not _ALNUM.search(tok[:word.start()])   # "3-year-old": "year" does not lead
            if (starts and leads) or w in _PRONOUN_I or _STEM.split(w)[0] in lexicon.names:
                tok = _capitalise(tok, word)
        out.append(text[last:m.start()] + tok)
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def casing_accuracy(originals, lexicon: CaseLexicon) -> dict[str, float]:
    """Restore the lower-cased ``originals`` and compare word by word: the share of words exactly
    right (``accuracy``), of words capitalised that the original has in lower case
    (``wrongly_capitalised``), and of the original's capitalised words missed (``missed_capitals``)."""
    words = right = wrong_cap = capitals = missed = 0
    for text in originals:
        for orig, new in zip(text.split(), restore_case(text.lower(), lexicon).split()):
            words += 1
            right += orig == new
            if orig != new and orig == orig.lower():
                wrong_cap += 1
            if orig != orig.lower():
                capitals += 1
                missed += orig != new
    return {"words": float(words), "accuracy": right / max(words, 1),
            "wrongly_capitalised": wrong_cap / max(words, 1), "missed_capitals": missed / max(capitals, 1)}
