"""Project Gutenberg: boilerplate stripping (header, licence, front matter, markup).

``strip_boilerplate(text)`` returns the book's body as text (line structure kept, blocks separated
by blank lines). In order:

1. **Body bounds.** The body starts after the ``*** START OF THE/THIS PROJECT GUTENBERG EBOOK ...
   ***`` marker (which may wrap onto a second line); for old files without it, after the
   ``*END*THE SMALL PRINT! ...*END*`` line; failing both, after the paragraph holding the last
   header field (``Title:``, ``Author:``, ``Release Date:``, ``Character set encoding:``,
   ``Produced by`` ...) in the first 40% of the file. The body ends at the first footer line after
   its start: ``*** END OF ...``, ``End of (the/this) Project Gutenberg ...``, ``End Project
   Gutenberg's ...``, or, in the last 20% of the file, a line opening ``(The) Project Gutenberg
   Etext/EBook of ...``.
2. **Markup.** ``[Illustration: ...]`` (also over several lines), ``[Frontispiece ...]``,
   ``[Footnote ...]``, ``[Transcriber's note ...]``, ``[Sidenote ...]``, footnote anchors ``[1]``;
   ``_italic_`` and ``=bold=`` marks (the words stay); rows of ``*`` or ``-`` (section breaks).
3. **Blocks** (blank-line separated): a table of contents (a ``CONTENTS`` / ``TABLE OF CONTENTS`` /
   ``LIST OF ILLUSTRATIONS`` heading and the blocks after it up to the first block of prose:
   12+ words, at least half of them starting in lower case); chapter headings alone on a line
   (``CHAPTER IV.``, ``Chapter 1. Polly Arrives``, ``BOOK II``, ``STAVE ONE``, a lone roman numeral);
   ``THE END``; production credits and notices (``Produced by ...``, ``E-text prepared by ...``,
   ``Transcribed from ...``, ``Copyright ...``); blocks holding a URL; transcriber's notes (the
   heading and the block after it); and, as the last safety net, every block that still mentions
   Project Gutenberg, ``gutenberg.org``/``.net``, ``pgdp.net`` or Distributed Proofreaders.

``gutenberg_paragraphs`` then unwraps the lines into paragraphs, drops the front matter before
the first paragraph of prose (``drop_front_matter``: title pages, "Author of ..." lists) and the
short title lines left over (``drop_headings``: ``A MYSTERIOUS DOG``, ``Polly Arrives``).
Publishers' advertisements at the end of some books are not recognised.
"""

from __future__ import annotations

import re

from blalm.data.filters.text import collapse_spaces, is_heading, normalise_whitespace, unwrap_paragraphs

__all__ = ["strip_boilerplate", "body_bounds", "remove_markup", "drop_headings", "drop_front_matter",
           "gutenberg_paragraphs", "mentions_gutenberg", "is_chapter_heading"]

_START = re.compile(r"\*{3}\s*START\s+OF\b", re.IGNORECASE)
_SMALL_PRINT_END = re.compile(r"^.*\*\s*END\s*\*?\s*THE\s+SMALL\s+PRINT.*$", re.IGNORECASE | re.MULTILINE)
_HEADER_FIELD = re.compile(
    r"^\s*(Title|Author|Authors|Editor|Translator|Illustrator|Release Date|Posting Date|"
    r"Last Updated|First Posted|Language|Character set encoding|Edition|Produced by|"
    r"\[?E-?(?:Book|text)\s*#)\b.*$", re.IGNORECASE | re.MULTILINE)
_FOOTER = re.compile(
    r"^\W*(?:\*{3}\s*END\s+OF\b|End\s+(?:of\s+)?(?:the\s+|this\s+)?Project\s+Gutenberg)",
    re.IGNORECASE | re.MULTILINE)
_LATE_FOOTER = re.compile(r"^\W*(?:The\s+)?Project\s+Gutenberg(?:'s)?\s+(?:E-?text|E-?book)",
                          re.IGNORECASE | re.MULTILINE)
_PG_MENTION = re.compile(r"project\s+gutenberg|gutenberg\.(?:org|net)|pgdp\.net|distributed\s+proof",
                         re.IGNORECASE)

_BRACKET_MARKUP = re.compile(
    r"\[\s*(?:Illustration|Illustrations|Frontispiece|Footnote|Transcriber['’]?s?\s+Notes?|"
    r"Transcriber|Sidenote|Side-note|Pg\s*\d|Page\s+\d|Blank Page|Note:)[^\]]{0,3000}\]",
    re.IGNORECASE)
_FOOTNOTE_ANCHOR = re.compile(r"\[(?:\d{1,3}|[A-Z])\]")
_ITALIC = re.compile(r"(?<![\w_])_([^_]{1,400}?)_(?![\w_])", re.DOTALL)
_BOLD = re.compile(r"(?<![\w=])=([^=\n]{1,200}?)=(?![\w=])")
_RULE_LINE = re.compile(r"^\s*(?:(?:\*\s*){3,}|[-=_~.·•]{3,}|(?:[-=_~]\s+){3,}[-=_~]?)\s*$", re.MULTILINE)

_TOC_HEADING = re.compile(r"^\s*(?:TABLE\s+OF\s+CONTENTS|CONTENTS|LIST\s+OF\s+ILLUSTRATIONS|ILLUSTRATIONS)"
                          r"\s*[.:]?\s*$", re.IGNORECASE)
_NUMBER = (r"(?:[IVXLCDM]+|\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
           r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty[\w-]*|thirty[\w-]*|"
           r"forty[\w-]*|fifty[\w-]*|the\s+\w+|first|second|third|fourth|fifth|sixth|seventh|eighth|"
           r"ninth|tenth|last)")
_CHAPTER = re.compile(
    r"^\s*(?:CHAPTER|Chapter|CHAP\.|Chap\.|BOOK|Book|PART|Part|STAVE|Stave|CANTO|Canto|VOLUME|Volume|"
    r"SECTION|Section|EPISODE|Episode)\s+" + _NUMBER + r"\b[.:]?(?:\s+.{0,80})?$", re.IGNORECASE)
_ROMAN_ALONE = re.compile(r"^\s*[IVXLC]{1,7}\.?\s*$")
_THE_END = re.compile(r"^\s*(?:THE\s+END|The\s+End|FINIS|Finis)\s*[.!]?\s*$")
_CREDITS = re.compile(
    r"^\s*(?:Produced\s+by|E-?text\s+prepared\s+by|E-?book\s+prepared\s+by|Prepared\s+by|"
    r"This\s+(?:e-?text|e-?book|etext|file|book)\s+was\s+(?:produced|prepared|created|scanned|"
    r"transcribed|made)|Transcribed\s+(?:from|by)|Digitized\s+by|Scanned\s+by|Modified\s+for|"
    r"HTML\s+version\s+by|Proofread\s+by|Updated\s+editions\s+will|Images\s+of\s+the\s+original|"
    r"Note:\s+(?:Project|Images|This)|Special\s+thanks|Copyright\b|All\s+rights\s+reserved)", re.IGNORECASE)
_URL = re.compile(r"https?://|www\.\w", re.IGNORECASE)
_TRANSCRIBER = re.compile(r"^\s*\[?\s*Transcriber['’]?s?\s+(?:Notes?|comments?|remarks?)", re.IGNORECASE)
_TERMINAL = re.compile(r"[.!?][\"'”’)\]]*$")


def mentions_gutenberg(text: str) -> bool:
    return _PG_MENTION.search(text) is not None


def body_bounds(text: str) -> tuple[int, int, str]:
    """``(start, end, how)`` of the body in ``normalise_whitespace(text)``; ``how`` names the rule used."""
    n = len(text)
    start, how = 0, "none"
    m = _START.search(text)
    if m:
        close = text.find("***", m.end(), m.end() + 400)
        stop = close + 3 if close >= 0 else m.end()
        nl = text.find("\n", stop)
        start, how = (nl + 1 if nl >= 0 else n), "marker"
    else:
        sp = list(_SMALL_PRINT_END.finditer(text, 0, int(n * 0.6) + 1))
        if sp:
            start, how = sp[-1].end(), "small_print"
        else:
            fields = [f for f in _HEADER_FIELD.finditer(text, 0, int(n * 0.4) + 1)]
            if fields:
                blank = re.compile(r"\n\s*\n").search(text, fields[-1].end())
                start, how = (blank.end() if blank else fields[-1].end()), "header_fields"
    end = n
    f = _FOOTER.search(text, start)
    if f:
        end = f.start()
    late = _LATE_FOOTER.search(text, max(start, int(n * 0.8)))
    if late and late.start() < end:
        end = late.start()
    return start, end, how


def remove_markup(text: str) -> str:
    """Illustration/footnote/transcriber brackets, footnote anchors, ``_italic_``/``=bold=`` marks, rules."""
    text = _BRACKET_MARKUP.sub("", text)
    text = _FOOTNOTE_ANCHOR.sub("", text)
    text = _ITALIC.sub(r"\1", text)
    text = _BOLD.sub(r"\1", text)
    text = _RULE_LINE.sub("", text)
    return text


def is_chapter_heading(line: str) -> bool:
    s = line.strip()
    return bool(s) and len(s) <= 90 and bool(_CHAPTER.match(s) or _ROMAN_ALONE.match(s) or _THE_END.match(s))


def _is_prose(block: str) -> bool:
    words = block.split()
    if len(words) < 12:
        return False
    lower = sum(1 for w in words if w.lstrip("\"'“‘(")[:1].islower())
    return lower >= 0.5 * len(words)


def strip_boilerplate(text: str) -> str:
    """The book's body without Project Gutenberg boilerplate, front matter markup and headings."""
    text = normalise_whitespace(text)
    start, end, _ = body_bounds(text)
    body = remove_markup(text[start:end])
    blocks = [b for b in re.split(r"\n\s*\n", body) if b.strip()]
    check_mentions = mentions_gutenberg(body)
    kept: list[str] = []
    i = 0
    while i < len(blocks):
        block = blocks[i]
        lines = [ln for ln in block.split("\n") if ln.strip()]
        first = lines[0] if lines else ""
        if _TOC_HEADING.match(first):
            # the table of contents runs up to the first block of prose
            i += 1
            limit = i + 400
            while i < len(blocks) and i < limit and not _is_prose(blocks[i]):
                i += 1
            continue
        if _TRANSCRIBER.match(first):
            i += 2 if len(collapse_spaces(block).split()) <= 4 else 1
            continue
        if _CREDITS.match(first) or _URL.search(block) or (check_mentions and mentions_gutenberg(block)):
            i += 1
            continue
        lines = [ln for ln in lines if not is_chapter_heading(ln)]
        if lines:
            kept.append("\n".join(lines))
        i += 1
    return "\n\n".join(kept)


def drop_front_matter(paragraphs: list[str], max_scan: int = 60) -> list[str]:
    """Drop what comes before the first paragraph of prose (title pages, "Author of ..." lists,
    publishers' lines), looking at most ``max_scan`` paragraphs ahead; unchanged if none is prose."""
    for k, par in enumerate(paragraphs[:max_scan]):
        if _is_prose(par):
            return paragraphs[k:]
    return paragraphs


def drop_headings(paragraphs: list[str], max_title_words: int = 8) -> list[str]:
    """Drop title-like paragraphs: all-capitals (up to 15 words), or short (up to ``max_title_words``)
    without terminal punctuation (``Polly Arrives``, ``by Louisa May Alcott``)."""
    out = []
    for par in paragraphs:
        p = par.strip()
        if not p or is_heading(p) or is_chapter_heading(p):
            continue
        if len(p.split()) <= max_title_words and not _TERMINAL.search(p):
            continue
        out.append(p)
    return out


def gutenberg_paragraphs(text: str) -> list[str]:
    """The full Gutenberg cleaning: ``strip_boilerplate``, unwrap lines, drop front matter and headings."""
    return drop_headings(drop_front_matter(unwrap_paragraphs(strip_boilerplate(text))))
