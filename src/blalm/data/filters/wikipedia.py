"""Wikipedia articles exported to Markdown: the export's residue removed, paragraphs out.

The ``wikipedia`` source (regular English Wikipedia, a 2019 export to Markdown) stands in for the
paper's Simple English Wikipedia, which is not reachable here. ``wikipedia_paragraphs(text, title)``
reads an article line by line and keeps running text only:

- *headings* (a bare short line without sentence punctuation: ``History``, ``Early life``) are
  dropped, and the *back-matter sections* (``BACK_MATTER``: References, See also, External links,
  Notes, Further reading, Bibliography, ...) are dropped whole, up to the next other heading;
- ``Category:`` lines, *footnote definitions* (``[12] Smith, J. ...`` at the line start) and a
  ``[TABLE]`` placeholder are dropped, and so are *tables* (pipe ``| a | b |``, grid ``+---+``, and
  the simple tables that Pandoc indents, whose columns are runs of spaces) and indented code;
- *list items* (``-   item``, ``1.  item``, nested ones too) lose their bullet and become paragraphs
  of their own (most are shorter than Simple Wikipedia's 15-word minimum and go with it);
- inside a paragraph (``clean_wiki_inline``): footnote markers (``[1]``, ``[a]``, ``[citation
  needed]``), an image caption's tail before its closing ``]]`` (``...LED lights]] The``), image file
  names, template leftovers (``{{'s}}`` -> ``'s``, ``|access-date=...}}``, stray ``{{``/``}}``),
  Markdown emphasis (``_word_``, ``**word**``, MediaWiki ``''``), and the empty brackets and commas
  that removed templates leave (``(; born 1964)`` -> ``(born 1964)``, ``()``, ``, , .``);
- bold text, which the export writes in capitals (the lead's title: ``SAMUEL ALEXANDER MUDD
  (December 20, 1833 ...``), is put back in the title's case (``restore_title_case``; words the
  title lacks get a capital initial, small words such as ``of`` stay lower case; a lone word in
  capitals that the title lacks is taken for an acronym and stays);
- gallery and template lines (``File:x.jpg|caption``, ``#invoke:``, infobox ``| key = value``
  rows: any line with a ``|``) and LaTeX formulas are dropped, HTML tags and URLs removed, and
  ``Category:`` links at a paragraph's end cut off.

The 15-word paragraph minimum is the processor's ``filters.min_words`` (counted as drops), and the
optional readability filter (``filters.max_grade``) its own step, so both are measured.
"""

from __future__ import annotations

import re
import unicodedata

from blalm.data.filters.text import collapse_spaces, normalise_whitespace

__all__ = ["BACK_MATTER", "wikipedia_paragraphs", "clean_wiki_inline", "restore_title_case",
           "is_wiki_heading", "list_item_text"]

BACK_MATTER = frozenset({
    "references", "see also", "external links", "notes", "further reading", "bibliography",
    "footnotes", "sources", "citations", "works cited", "notes and references", "references and notes",
    "explanatory notes", "general references", "cited sources", "literature", "external link",
    "reference", "note", "sources and further reading", "notes and citations", "online sources",
})

_TERMINAL = re.compile(r"[.!?:;,][\"'”’)\]_*]*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])(?:\s+|$)")
_FOOTNOTE_LINE = re.compile(r"^\s*\[\d+\]")
_TABLE_LINE = re.compile(r"^\s*(?:\||\+[-=+:]|[-=]{3,}(?:\s+[-=]{3,})*\s*$)")
_COLUMN_GAP = re.compile(r"\S {3,}\S")

_MARKERS = re.compile(r"\[(?:\d+|[a-z]|note \d+|nb \d+|_?citation\\? needed_?|clarification needed|"
                      r"who\?|when\?|which\?|dubious|failed verification|better source needed)\]")
_IMAGE_FILE = re.compile(r"(?<!\S)\S+\.(?:jpe?g|png|gif|svg|tiff?|webp)(?![\w.])", re.IGNORECASE)
_GALLERY_OR_TEMPLATE = re.compile(r"(?:^|\s)(?:File|Image):|#invoke:|\||\$\\|\\(?:frac|tfrac|dfrac|textstyle|displaystyle|"
                                  r"mathrm|mathbf|sqrt|sum|int|left|right|cdot|times)\b")
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,300}>")
_URL = re.compile(r"[\[(]?(?:https?://|www\.)\S+")
_STRAY_UNDERSCORE = re.compile(r"(?<!\w)_+|_+(?!\w)")
_TEMPLATE_POSSESSIVE = re.compile(r"\{\{'s\}\}")
_TEMPLATE_APOSTROPHE = re.compile(r"\{\{'\}\}")
_TEMPLATE_ARGS = re.compile(r"\S*\|[^\s|]*=\S*?\}\}")
_BRACES = re.compile(r"\{\{|\}\}|\]\]|\[\[")
_EMPHASIS_US = re.compile(r"(?<![\w])_+([^_\n]*?)_+(?![\w])")
_EMPHASIS_STAR = re.compile(r"\*{1,3}([^*\n]+?)\*{1,3}")
_WIKI_QUOTES = re.compile(r"'{2,}")
_LEADING_PUNCT_IN_PARENS = re.compile(r"\(\s*[;,]\s*")
_EMPTY_BRACKETS = re.compile(r"\(\s*(?:[;,]\s*)*\)|\[\s*\]|\"\"")
_REPEATED_PUNCT = re.compile(r"([,;])(?:\s*[,;])+")
_EMPTY_COMMAS = re.compile(r"(?:\s*,)+\s*(?=[.;:)])")
_SPACE_BEFORE = re.compile(r"\s+([,.;:)])")


def is_wiki_heading(line: str) -> bool:
    """A bare heading line of the export: short (up to 8 words), no sentence punctuation at its end,
    not a list item, table row or footnote."""
    s = line.strip()
    if not s or _LIST_ITEM.match(line) or _TABLE_LINE.match(line) or _FOOTNOTE_LINE.match(line):
        return False
    return len(s.split()) <= 8 and not _TERMINAL.search(s)


def list_item_text(line: str) -> str | None:
    """The text of a list item without its bullets (``-   -   item`` -> ``item``), else ``None``."""
    if not _LIST_ITEM.match(line):
        return None
    text = line
    while (m := _LIST_ITEM.match(text)) is not None:
        text = text[m.end():]
    return text.strip()


def clean_wiki_inline(paragraph: str) -> str:
    """One paragraph's inline residue removed (see the module docstring); single-spaced. A
    gallery or template line (``File:x.jpg|caption``, ``#invoke:``, ``| name = ... | image =``)
    comes back empty, and so does any line with a ``|``, which running text does not have, or with
    LaTeX math (``$\\textstyle \\sum ...$``)."""
    s = paragraph
    if "]]" in s and "[[" not in s:
        s = s[s.rindex("]]") + 2:]          # an image caption's tail (or several) before the text
    if _GALLERY_OR_TEMPLATE.search(s):
        return ""
    if "Category:" in s:
        s = _before_categories(s)
    s = _MARKERS.sub("", s)
    s = _URL.sub(" ", _IMAGE_FILE.sub(" ", s))
    if "{{" in s or "}}" in s:
        s = _TEMPLATE_APOSTROPHE.sub("'", _TEMPLATE_POSSESSIVE.sub("'s", s))
        s = _TEMPLATE_ARGS.sub(" ", s)
    s = _HTML_TAG.sub(" ", _BRACES.sub(" ", s))
    s = _EMPHASIS_STAR.sub(r"\1", _EMPHASIS_US.sub(r"\1", s))
    s = _STRAY_UNDERSCORE.sub("", _WIKI_QUOTES.sub("", s))
    s = _EMPTY_BRACKETS.sub("", _LEADING_PUNCT_IN_PARENS.sub("(", s))
    s = _EMPTY_COMMAS.sub("", _REPEATED_PUNCT.sub(r"\1", s))
    return _SPACE_BEFORE.sub(r"\1", collapse_spaces(s))


def _before_categories(text: str) -> str:
    """The text before a run of ``Category:`` links, cut back to its last sentence end."""
    head = text[:text.index("Category:")]
    end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    return head[:end + 1] if end >= 0 else ""


# ---------------------------------------------------------------------------------------------
# the lead's bold title in capitals

_SMALL_WORDS = frozenset("a an and as at by de del der di du for from in la le of on or the to van von y".split())
_TOKEN = re.compile(r"\S+")


def _fold(word: str) -> str:
    """Lower case without accents or punctuation (``ḤURŪF,`` -> ``huruf``)."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if c.isdigit() or c.lower() != c.upper())


def _is_caps_word(token: str) -> bool:
    """Two or more cased letters, all capitals."""
    return token.isupper() and sum(map(str.isupper, token)) >= 2


_TWO_CAPITALS = re.compile(r"(?:[A-Z]|[^\x00-\x7f]){2}")
_WORD_IN_TOKEN = re.compile(r"[^\W\d_]+(?:['’\-.][^\W\d_]+)*")


def _recase_word(word: str, title_forms: dict[str, str], first_in_run: bool, lower_title_word: bool) -> str:
    """One word of a capitalised run in the title's case, else with a capital initial (small words
    inside a run in lower case)."""
    form = title_forms.get(_fold(word))
    if form is not None:
        if form.isupper():
            return word                 # the title is in capitals itself (&PROUD, NASA)
        if first_in_run and lower_title_word:
            return form.lower()         # "A SANCTION" -> "A sanction": titles capitalise their first letter
        return form
    if _fold(word) in _SMALL_WORDS and not first_in_run:
        return word.lower()
    lowered = word.lower()
    first = next((k for k, c in enumerate(lowered) if c != c.upper()), 0)
    return lowered[:first] + lowered[first:first + 1].upper() + lowered[first + 1:]


def restore_title_case(paragraph: str, title: str) -> str:
    """Runs of words in capitals in the lead put in the title's case.

    A run is converted when it holds two or more words in capitals (``SAN DIEGO HISTORY CENTER``)
    or one word of the title (``SANDE`` in the article "Sande, Vest-Agder"); a lone word in
    capitals that the title lacks (``SFBRA``) is an acronym and stays. Words of a title written in
    capitals itself (``&PROUD``) stay as they are.
    """
    if not _TWO_CAPITALS.search(paragraph):
        return paragraph                    # no word in capitals (fast path)
    title_words = _WORD_IN_TOKEN.findall(title)
    title_forms: dict[str, str] = {}
    for word in title_words:
        title_forms.setdefault(_fold(word), word)
    # a title in sentence case ("Sanction", "Orders of magnitude") capitalises only its first letter
    sentence_case = bool(title_words) and all(w == w.lower() for w in [title_words[0][1:]] + title_words[1:])
    tokens = list(_TOKEN.finditer(paragraph))
    out, last, i = [], 0, 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and _is_caps_word(tokens[j].group(0)) and (j == i or tokens[j].group(0)[0] != "("):
            j += 1
        run = tokens[i:j]
        single_title_word = (len(run) == 1 and _fold(run[0].group(0)) in title_forms)
        if len(run) >= 2 or single_title_word:
            before = tokens[i - 1].group(0).lower().strip("\"'“(") if i > 0 else ""
            lower_first = sentence_case and before in ("a", "an", "the")
            for k, tok in enumerate(run):
                m = _WORD_IN_TOKEN.search(tok.group(0))
                if m is None:
                    continue
                new = _recase_word(m.group(0), title_forms, k == 0,
                                   lower_first and _fold(m.group(0)) == _fold(title_words[0]))
                out.append(paragraph[last:tok.start() + m.start()] + new)
                last = tok.start() + m.end()
        i = max(j, i + 1)
    out.append(paragraph[last:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# the article


def _units(text: str) -> list[str]:
    """Raw paragraph texts in order (headings, back matter, tables, footnotes, categories dropped;
    list items unbulleted)."""
    units: list[str] = []
    skipping = False
    for line in normalise_whitespace(text).split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if is_wiki_heading(line) and not line.startswith(" "):
            skipping = collapse_spaces(stripped).lower().rstrip(":") in BACK_MATTER
            continue
        if skipping or stripped.startswith("Category:") or stripped == "[TABLE]":
            continue
        if _FOOTNOTE_LINE.match(line) or _TABLE_LINE.match(line):
            continue
        item = list_item_text(line)
        if item is not None:
            units.append(item)
        elif line.startswith(" ") and _COLUMN_GAP.search(stripped):
            continue                       # a simple table's row (columns as runs of spaces)
        elif line.startswith("    "):
            continue                       # indented code
        else:
            units.append(stripped)
    return units


def wikipedia_paragraphs(text: str, title: str = "") -> list[str]:
    """An exported article's running text, one paragraph a string (see the module docstring)."""
    out: list[str] = []
    for unit in _units(text):
        paragraph = clean_wiki_inline(unit)
        if paragraph:
            out.append(restore_title_case(paragraph, title))
    return out
