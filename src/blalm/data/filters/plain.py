"""Light cleaning for the ``plain`` kind (OneStopEnglish, NLTK corpora, any text) and the ``babylm``
kind (the official BabyLM corpus ``*.train`` files).

``plain``: ``drop_level_tag`` removes OneStopEnglish's reading-level tag when it is alone on the
first line (``Intermediate``/``Elementary``/``Advanced`` or ``Int``/``Ele``/``Adv``, any case);
``plain_paragraphs`` then unwraps hard-wrapped lines into paragraphs (Brown's one sentence a line
becomes running text; a Reuters all-capitals headline stays apart) and drops all-capitals heading
lines (Reuters headlines, ``INTRODUCTION``). Nothing else is removed: short lines in lower case
stay (the Gutenberg kind's stricter title rule would eat legitimate short lines of arbitrary text).
``tidy_transcript`` then removes transcript debris (Switchboard's time stamps and ``[noise]``,
``[silence]`` event tags) and undoes tokenised spacing (Brown's ``word ,`` and ``` `` ... '' ```).

``babylm``: one line one segment. ``clean_babylm_line`` gives a line with a CHILDES speaker tag
(``*CHI:\\tmore cookie .``) the CHILDES treatment (tag removed, CHAT markup cleaned); every other
line is kept as it is (whitespace collapsed). The speaker is returned so the caller can drop the
child's lines or apply a word minimum.
"""

from __future__ import annotations

from blalm.data.filters.childes import clean_chat, split_speaker
from blalm.data.filters.text import collapse_spaces, is_heading, normalise_whitespace, unwrap_paragraphs

import re

__all__ = ["LEVEL_TAGS", "drop_level_tag", "plain_paragraphs", "tidy_transcript", "clean_babylm_line"]

LEVEL_TAGS = frozenset({"intermediate", "elementary", "advanced", "int", "ele", "adv"})


def drop_level_tag(text: str) -> str:
    """Remove a first line that is only a reading-level tag."""
    text = normalise_whitespace(text).lstrip("\n")
    first, sep, rest = text.partition("\n")
    if first.strip().rstrip(".:").lower() in LEVEL_TAGS:
        return rest
    return text


_TIME_STAMP = re.compile(r"(?<!\S)\d+\.\d{4,}(?!\S)")
_EVENT_TAG = re.compile(r"\[(?:noise|silence|laughter|vocalized-noise|[a-z]+_[a-z_]+|[a-z]+)\]")
_SPACE_BEFORE = re.compile(r" +([,.;:!?%)\]}]|n't\b|'(?:s|re|ve|ll|d|m)\b)")
_SPACE_AFTER = re.compile(r"([(\[{$]) +")


def tidy_transcript(text: str) -> str:
    """Transcript time stamps and event tags removed; tokenised spacing and quotes undone."""
    text = _EVENT_TAG.sub(" ", _TIME_STAMP.sub(" ", text))
    text = text.replace("``", '"').replace("''", '"')
    text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", collapse_spaces(text)))
    return text


def plain_paragraphs(text: str) -> list[str]:
    """Level tag dropped, lines unwrapped into paragraphs, all-capitals heading paragraphs dropped,
    transcripts and tokenised text tidied."""
    paragraphs = (tidy_transcript(p) for p in unwrap_paragraphs(drop_level_tag(text)) if not is_heading(p))
    return [p for p in paragraphs if p]


def clean_babylm_line(line: str) -> tuple[str | None, str]:
    """``(speaker, text)``: a tagged CHILDES line cleaned, any other line as it is (speaker ``None``)."""
    speaker, rest = split_speaker(line)
    if speaker is None:
        return None, collapse_spaces(line)
    return speaker, clean_chat(rest)


