"""CHILDES (CHAT) filters: speaker tags, transcription markup, the utterance word minimum.

The paper (§3.2) removes speaker tags (``*MOT:``, ``*COL:``), drops utterances with fewer than 7
words and normalises grammar (``blalm.data.filters.grammar``). The childes-db export we read has
one utterance a line, ``*SPK:\\tutterance .``; the official BabyLM corpus has the same lines. The
speaker set is open: any ``*XXX:`` tag (letters, digits, ``_``, ``+``, ``-``; 1-12 characters)
followed by a tab or spaces.

``clean_chat`` removes CHAT transcription markup (MacWhinney, *The CHILDES Project*, CHAT manual):

- unintelligible / untranscribed words ``xxx``, ``yyy``, ``www`` (and the old ``xx``, ``yy``);
- fillers, fragments and events written with ``&`` (``&-uh``, ``&+fr``, ``&=laughs``, ``&~``);
- retracings: ``<I want> [/] I want`` and ``it [//] he did`` keep only the corrected material (the
  retraced word or ``<...>`` group before ``[/]``, ``[//]``, ``[///]``, ``[/-]``, ``[/?]`` is dropped);
- replacements: ``goed [: went]`` becomes ``went`` (``[:: ...]`` too);
- every other ``[...]`` code (``[*]``, ``[!]``, ``[= text]``, ``[x 3]``, ``[>]``, ``[+ ...]``) and the
  ``<`` ``>`` scope brackets (their content stays);
- terminators and linkers written with ``+`` (``+...``, ``+/.``, ``+//?``, ``+"/.``, ``+,``, ``++``, ``+<``);
- omitted words ``0is`` / ``0det`` and a lone ``0`` (action without speech);
- ``@`` form markers: ``doggie@f`` -> ``doggie``, ``a@l`` -> ``a``, ``hola@s:spa`` -> ``hola``;
- compounds and linked words: ``woof+woof`` -> ``woof woof``, ``hoo_hoo`` -> ``hoo hoo``;
- pauses ``(.)`` ``(..)`` ``(1.5)``, incomplete-word parentheses ``(be)cause`` -> ``because``,
  lengthening ``no:`` -> ``no``, and CA / intonation symbols (``↑ ↓ ≠ „ ‡ ⌈ ⌉`` ...);
- media time bullets (``\\x15123_456\\x15``).

Sentence punctuation (``.`` ``?`` ``!``) stays as separate tokens; the grammar step attaches it.
"""

from __future__ import annotations

import re

from blalm.data.filters.text import collapse_spaces, word_count

__all__ = [
    "SPEAKER_TAG", "CHILD_SPEAKERS", "split_speaker", "has_speaker_tag", "is_child",
    "is_chat_header", "clean_chat", "utterance_words",
]

SPEAKER_TAG = re.compile(r"^\s*\*([A-Za-z0-9_+\-]{1,12}):(?:[ \t]+|$)")
CHILD_SPEAKERS = frozenset({"CHI"})  # the target child; other children (SIS, BRO, ...) are kept

_HEADER = re.compile(r"^\s*(@[A-Za-z][\w ]*[:\t]?|@(Begin|End|UTF8)\b|%[a-z]{2,5}:)")
_BULLET = re.compile(r"\x15[^\x15]*\x15")
_GROUP_OR_WORD = r"(?:<[^<>]*>|[^\s\[\]<>]+)"
_REPLACEMENT = re.compile(_GROUP_OR_WORD + r"\s*\[::?\s*([^\]]*)\]")
_RETRACE = re.compile(_GROUP_OR_WORD + r"\s*\[/{1,3}[?\-]?\]")
_ANY_CODE = re.compile(r"\[[^\]]*\]")
_PAUSE = re.compile(r"^\(\d*\.*\d*\)$")
_FORM_MARKER = re.compile(r"@[\w:$*+\-]*")
_CA_SYMBOLS = re.compile("[↑↓≠∬„‡⌈⌉⌊⌋∆∇°▔▁☺♋⁎§≈≋∙ʔʕ⇗↗→↘⇘∞↻⇌ˈˌ^~]")
_UNINTELLIGIBLE = frozenset({"xxx", "yyy", "www", "xx", "yy"})
_HAS_WORD = re.compile(r"[^\W_]")


def split_speaker(line: str) -> tuple[str | None, str]:
    """``"*MOT:\\twhat's that ?"`` -> ``("MOT", "what's that ?")``; a line without a tag -> ``(None, line)``."""
    m = SPEAKER_TAG.match(line)
    if not m:
        return None, line.strip()
    return m.group(1), line[m.end():].strip()


def has_speaker_tag(line: str) -> bool:
    return SPEAKER_TAG.match(line) is not None


def is_child(speaker: str | None) -> bool:
    """The target child's own utterance (``*CHI:``)."""
    return speaker is not None and speaker.upper() in CHILD_SPEAKERS


def is_chat_header(line: str) -> bool:
    """CHAT file headers (``@Begin``, ``@Participants:``) and dependent tiers (``%mor:``)."""
    return _HEADER.match(line) is not None


def _clean_token(tok: str) -> str:
    if tok.startswith("&"):
        return ""                                   # &-uh, &+fr, &=laughs
    if tok.startswith("+") and not _HAS_WORD.search(tok):
        return ""                                   # +... +/. +//? +"/. +, ++ +<
    if _PAUSE.match(tok):
        return ""                                   # (.) (..) (1.5)
    if tok.startswith("0") and (len(tok) == 1 or tok[1].isalpha()):
        return ""                                   # 0is, 0det, 0
    tok = _FORM_MARKER.sub("", tok)                 # doggie@f, a@l, hola@s:spa
    tok = _CA_SYMBOLS.sub("", tok)
    tok = tok.replace("(", "").replace(")", "")     # (be)cause -> because
    tok = re.sub(r"(?<=\w):+", "", tok)             # lengthening no: -> no
    if tok.lower().strip(".,?!") in _UNINTELLIGIBLE:
        return ""
    tok = tok.replace("+", " ").replace("_", " ")   # woof+woof, hoo_hoo
    return tok


def clean_chat(utterance: str) -> str:
    """Remove CHAT markup from one utterance (tag already removed); ``""`` when no word is left."""
    s = _BULLET.sub(" ", utterance)
    for _ in range(10):                             # nested / repeated codes: apply until stable
        new = _REPLACEMENT.sub(lambda m: " " + m.group(1) + " ", s)
        new = _RETRACE.sub(" ", new)
        if new == s:
            break
        s = new
    s = _ANY_CODE.sub(" ", s)
    s = s.replace("<", " ").replace(">", " ")
    out = collapse_spaces(" ".join(_clean_token(t) for t in s.split()))
    return out if _HAS_WORD.search(out) else ""


def utterance_words(utterance: str) -> int:
    """Words of a cleaned utterance (punctuation tokens are not words)."""
    return word_count(utterance)
