"""Shared text helpers: whitespace, unwrapping hard-wrapped lines, sentences, segments, readability.

All functions are pure (text in, text or numbers out). The conventions the other filters rely on:

- ``normalise_whitespace`` turns ``\\r\\n``/``\\r`` into ``\\n``, tabs and odd spaces (NBSP, zero-width,
  ...) into plain spaces and strips trailing spaces; blank lines (paragraph breaks) are kept.
- ``unwrap_paragraphs`` turns hard-wrapped text (Project Gutenberg, Reuters, one sentence a line
  as in Brown) into one string per paragraph. Paragraphs are separated by blank lines; inside a
  block of lines, a new paragraph also starts at a heading line (all capitals), at a line that
  is indented deeper than the previous one right after a sentence end (Reuters style), and after
  a short unpunctuated first line over longer ones (a title: ``PM denies knowledge of AWB
  kickbacks`` above its article).
- ``lines_as_paragraphs`` is the other reading: every non-empty line is a paragraph (web text,
  Wikipedia, Cosmopedia).
- ``group_segments`` packs paragraphs into segments of about N words: paragraphs are never split
  unless one alone holds more than 2N words; that one is cut at sentence ends (and a single
  "sentence" over 2N words, e.g. text without punctuation, is cut every N words).
- ``word_count`` counts whitespace tokens holding at least one letter or digit, so a lone
  ``.`` or ``?`` (tokenised CHILDES, Brown) is not a word. The corpus budget itself uses
  ``blalm.data.documents.count_words`` (every whitespace token).
"""

from __future__ import annotations

import re

__all__ = [
    "normalise_whitespace", "collapse_spaces", "unwrap_paragraphs", "lines_as_paragraphs",
    "split_sentences", "group_segments", "word_count", "is_heading", "syllables",
    "readability", "flesch_kincaid_grade", "flesch_reading_ease", "fix_mojibake",
]

_ODD_SPACES = re.compile(r"[\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\f\v]")
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
_MULTI_SPACE = re.compile(r" {2,}")
_NON_WORD_TOKEN = re.compile(r"(?<!\S)(?:[^\w\s]|_)+(?!\S)")   # a token without a letter or digit

# sentence ends: . ! ? (possibly repeated) plus closing quotes/brackets, then space, then something
# that can open a sentence (a capital, a digit, an opening quote or bracket)
_SENT_END = re.compile(r"([.!?]+[\"'”’)\]]*)(\s+)(?=[\"'“‘(\[]*[A-Z0-9])")
_ABBREVIATIONS = frozenset("""
mr mrs ms dr st jr sr prof capt col gen lt sgt rev hon mt messrs mme mlle vs etc e.g i.e
no nos vol vols fig figs ch chap p pp op cf al approx dept est inc ltd co corp ave jan feb mar
apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m
""".split())


def normalise_whitespace(text: str) -> str:
    """Unify line ends and spaces; keep line structure (blank lines included); strip line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ZERO_WIDTH.sub("", text)
    text = _ODD_SPACES.sub(" ", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


# UTF-8 punctuation read as Windows-1252 (``â€œ`` for ``“``), as some of the TinyStories data has it;
# a lone ``â€`` is ``”``, whose third byte (0x9d) Windows-1252 lacks and so was lost
_MOJIBAKE = (("â€œ", "“"), ("â€™", "’"), ("â€˜", "‘"), ("â€”", "—"), ("â€“", "–"), ("â€¦", "…"),
             ("â€Š", " "), ("â€", "”"))


def fix_mojibake(text: str) -> str:
    """Undo UTF-8 punctuation mis-read as Windows-1252 (``â€œHi!â€`` -> ``“Hi!”``)."""
    if "â€" not in text:
        return text
    for bad, good in _MOJIBAKE:
        text = text.replace(bad, good)
    return text


def collapse_spaces(text: str) -> str:
    """One line, single spaces, stripped."""
    return " ".join(text.split())


def word_count(text: str) -> int:
    """Whitespace tokens that hold at least one letter or digit."""
    return len(text.split()) - len(_NON_WORD_TOKEN.findall(text))


def is_heading(line: str, max_words: int = 15) -> bool:
    """An all-capitals line with letters (``CHAPTER IV.``, ``A MYSTERIOUS DOG``, a Reuters headline)."""
    stripped = line.strip()
    if not stripped or stripped != stripped.upper() or stripped == stripped.lower():
        return False      # has a lower-case letter, or no cased letter at all
    return len(stripped.split()) <= max_words and sum(c.isalpha() for c in stripped) >= 2


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _join_lines(lines: list[str]) -> str:
    """Join hard-wrapped lines into one paragraph, re-joining words split at a line-final hyphen."""
    out = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if not out:
            out = line
        elif out.endswith("--") or out.endswith("—"):
            out += line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[:1].islower():
            out += line  # "self-\nfitting" -> "self-fitting": keep the hyphen (compounds)
        else:
            out += " " + line
    return _MULTI_SPACE.sub(" ", out)


def _is_title_line(first: str, second: str, width: int) -> bool:
    """A block's first line that is a title over its text (``PM denies knowledge of AWB kickbacks``):
    short, no punctuation at its end, clearly shorter than the block's lines, next line capitalised."""
    f = first.strip()
    return (len(f.split()) <= 10 and not re.search(r"[.!?:;,\-—][\"'”’)\]]*$", f)
            and len(f) < 0.7 * width and second.strip()[:1].isupper())


def unwrap_paragraphs(text: str) -> list[str]:
    """Hard-wrapped text -> paragraphs (one string each, single-spaced, no newlines)."""
    text = normalise_whitespace(text)
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        current: list[str] = []
        prev: str | None = None
        width = max(len(ln.strip()) for ln in lines)
        prev_heading = False
        for k, line in enumerate(lines):
            heading = is_heading(line)
            new_par = False
            if prev is not None:
                ended = bool(re.search(r"[.!?:][\"'”’)\]]*$", prev.strip()))
                if heading or prev_heading:
                    new_par = True
                elif ended and _indent(line) > _indent(prev) + 1:
                    new_par = True
                elif k == 1 and _is_title_line(prev, line, width):
                    new_par = True
            if new_par and current:
                paragraphs.append(_join_lines(current))
                current = []
            current.append(line)
            prev, prev_heading = line, heading
        if current:
            paragraphs.append(_join_lines(current))
    return [p for p in paragraphs if p]


def lines_as_paragraphs(text: str) -> list[str]:
    """Every non-empty line is one paragraph (single-spaced)."""
    return [collapse_spaces(ln) for ln in normalise_whitespace(text).split("\n") if ln.strip()]


def split_sentences(text: str) -> list[str]:
    """Split at ``.``/``!``/``?`` followed by a space and a capital, digit or opening quote.

    Common abbreviations (``Mr.``, ``Dr.``, ``e.g.``) and initials (``L. M. Alcott``) do not end a
    sentence. Good enough for segmenting and for the named-entity heuristics; not a parser.
    """
    text = collapse_spaces(text)
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.end(1)
        if m.group(1).startswith("."):
            stop = m.start(1)
            space = text.rfind(" ", start, stop)
            last = text[(space + 1 if space >= 0 else start):stop].strip("\"'“‘(")
            if last.lower() in _ABBREVIATIONS or (len(last) == 1 and last.isupper() and last != "I"):
                continue
        sentences.append(text[start:end].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def _pack(units: list[tuple[str, int]], n_words: int) -> list[str]:
    """Greedy packing of (text, words) units into chunks whose word count is as close to
    ``n_words`` as possible."""
    chunks: list[str] = []
    buf: list[str] = []
    buf_words = 0
    for unit, w in units:
        if buf and buf_words + w > n_words and abs(buf_words + w - n_words) > abs(buf_words - n_words):
            chunks.append(" ".join(buf))
            buf, buf_words = [], 0
        buf.append(unit)
        buf_words += w
    if buf:
        chunks.append(" ".join(buf))
    return chunks


def _split_long(paragraph: str, n_words: int) -> list[str]:
    """A paragraph over 2N words -> sentence chunks of about N words (a huge sentence: every N words)."""
    pieces: list[tuple[str, int]] = []
    for sent in split_sentences(paragraph):
        words = sent.split()
        if len(words) > 2 * n_words:
            pieces.extend((" ".join(words[i:i + n_words]), len(words[i:i + n_words]))
                          for i in range(0, len(words), n_words))
        else:
            pieces.append((sent, len(words)))
    return _pack(pieces, n_words)


def group_segments(paragraphs: list[str], n_words: int) -> list[str]:
    """Group paragraphs into segments of about ``n_words`` words; ``n_words == 0``: one paragraph
    a segment. A paragraph is never split unless it alone has more than ``2 * n_words`` words."""
    units: list[tuple[str, int]] = []
    for par in paragraphs:
        words = par.split()
        if words:
            units.append((" ".join(words), len(words)))
    if n_words <= 0:
        return [u for u, _ in units]
    segments: list[str] = []
    run: list[tuple[str, int]] = []
    for par, w in units:
        if w > 2 * n_words:
            segments.extend(_pack(run, n_words))
            run = []
            segments.extend(_split_long(par, n_words))
        else:
            run.append((par, w))
    segments.extend(_pack(run, n_words))
    return segments


# --- readability --------------------------------------------------------------------------

_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_ALPHA_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")


def syllables(word: str) -> int:
    """Vowel-group estimate of a word's syllables (silent final -e dropped); at least 1."""
    w = word.lower().strip("'’")
    if not w:
        return 0
    count = len(_VOWEL_GROUPS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    return max(1, count)


def readability(text: str) -> dict[str, float]:
    """Counts behind the Flesch formulas: ``words``, ``sentences``, ``syllables`` (alphabetic words only)."""
    words = _ALPHA_WORD.findall(text)
    n_sent = max(1, len(split_sentences(text)))
    return {"words": float(len(words)), "sentences": float(n_sent),
            "syllables": float(sum(syllables(w) for w in words))}


def flesch_kincaid_grade(text: str) -> float:
    """Flesch-Kincaid grade level: 0.39 words/sentence + 11.8 syllables/word - 15.59 (0 for no words)."""
    r = readability(text)
    if r["words"] == 0:
        return 0.0
    return 0.39 * r["words"] / r["sentences"] + 11.8 * r["syllables"] / r["words"] - 15.59


def flesch_reading_ease(text: str) -> float:
    """Flesch reading ease: 206.835 - 1.015 words/sentence - 84.6 syllables/word (0 for no words)."""
    r = readability(text)
    if r["words"] == 0:
        return 0.0
    return 206.835 - 1.015 * r["words"] / r["sentences"] - 84.6 * r["syllables"] / r["words"]
