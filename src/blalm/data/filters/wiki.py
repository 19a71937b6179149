"""Simple Wikipedia: paragraphs of at least 15 words (paper §3.2: "We retain only paragraphs with
at least 15 words to remove boilerplate and fragmented content").

``wiki_paragraphs(text)`` reads every non-empty line as a paragraph (blank lines separate
paragraphs too) and drops section headings: MediaWiki ``== History ==``, the BabyLM corpus style
``= = = History = = =``, Markdown ``## History``, and a short line (up to 6 words) without sentence
punctuation (``See also``, ``References``). The word minimum itself is applied by the processor
(``filters.min_words``), so its drops are counted.
"""

from __future__ import annotations

import re

from blalm.data.filters.text import lines_as_paragraphs

__all__ = ["is_section_heading", "wiki_paragraphs"]

_WIKI_HEADING = re.compile(r"^\s*(?:(?:=\s*){1,6}[^=].*?(?:\s*=){1,6}|#{1,6}\s+.*)\s*$")
_TERMINAL = re.compile(r"[.!?:;][\"'”’)\]]*$")


def is_section_heading(line: str) -> bool:
    s = line.strip()
    if not s:
        return False
    if _WIKI_HEADING.match(s):
        return True
    return len(s.split()) <= 6 and not _TERMINAL.search(s)


def wiki_paragraphs(text: str) -> list[str]:
    """Non-heading paragraphs, single-spaced, in order."""
    return [p for p in lines_as_paragraphs(text) if not is_section_heading(p)]
