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

TalkBank CHAT files (the ``childes_talkbank`` source) carry ``@ID`` header lines,
``@ID:\tlanguage|corpus|code|age|sex|group|SES|role|education|custom|``: ``chat_participants``
reads each speaker's role and age from them, ``age_band`` puts the target child's age in a
one-year band for the manifest, and ``transcript_fingerprint`` gives a set of utterance keys that
two renderings of the same transcript share (the childes-db export and the TalkBank file write the
same utterances with different markup), so that ``fingerprint_overlap`` can find the same
transcript in both sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from blalm.data.filters.text import collapse_spaces, normalise_whitespace, word_count

__all__ = [
    "SPEAKER_TAG", "CHILD_SPEAKERS", "split_speaker", "has_speaker_tag", "is_child",
    "is_chat_header", "clean_chat", "utterance_words", "Participant", "parse_chat_age",
    "chat_participants", "is_target_child", "age_band", "utterance_keys", "transcript_fingerprint", "fingerprint_overlap", "FingerprintIndex",
    "target_child_age",
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


_PLAIN_TOKEN = re.compile(r"[A-Za-z']+|[.,?!]")   # a word or a punctuation token: nothing to clean
_LENGTHENING = re.compile(r"(?<=\w):+")


def _clean_token(tok: str) -> str:
    if _PLAIN_TOKEN.fullmatch(tok):
        return "" if tok.lower() in _UNINTELLIGIBLE else tok
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
    tok = _LENGTHENING.sub("", tok)                 # lengthening no: -> no
    if tok.lower().strip(".,?!") in _UNINTELLIGIBLE:
        return ""
    tok = tok.replace("+", " ").replace("_", " ")   # woof+woof, hoo_hoo
    return tok


def clean_chat(utterance: str) -> str:
    """Remove CHAT markup from one utterance (tag already removed); ``""`` when no word is left."""
    s = _BULLET.sub(" ", utterance) if "\x15" in utterance else utterance
    if "[" in s:
        for _ in range(10):                         # nested / repeated codes: apply until stable
            new = _REPLACEMENT.sub(lambda m: " " + m.group(1) + " ", s)
            new = _RETRACE.sub(" ", new)
            if new == s:
                break
            s = new
        s = _ANY_CODE.sub(" ", s)
    if "<" in s or ">" in s:
        s = s.replace("<", " ").replace(">", " ")
    out = collapse_spaces(" ".join(_clean_token(t) for t in s.split()))
    return out if _HAS_WORD.search(out) else ""


def utterance_words(utterance: str) -> int:
    """Words of a cleaned utterance (punctuation tokens are not words)."""
    return word_count(utterance)


# --------------------------------------------------------------------------------------------
# @ID headers: speaker roles and ages


@dataclass(frozen=True)
class Participant:
    code: str               # the speaker code of the main tiers (``CHI``, ``MOT``)
    role: str               # ``Target_Child``, ``Mother``, ``Investigator``, ... ("" when not given)
    age_months: float | None  # ``2;06.15`` -> 30.5; None when not given


_AGE = re.compile(r"^\s*(\d+);(\d{1,2})?(?:\.(\d{1,2})?)?\s*$")
_ID_LINE = re.compile(r"^@ID:\s*(.*)$")


def parse_chat_age(age: str) -> float | None:
    """CHAT age ``Y;MM.DD`` (months and days optional) in months; ``None`` when empty or malformed."""
    m = _AGE.match(age or "")
    if not m:
        return None
    years, months, days = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    return 12 * years + months + days / 30.4375


def _id_participant(line: str) -> Participant | None:
    """The :class:`Participant` of one ``@ID`` line (``None`` when it names no speaker code)."""
    m = _ID_LINE.match(line.strip())
    fields = (m.group(1) if m else "").split("|")
    if len(fields) < 8 or not fields[2].strip():
        return None
    return Participant(fields[2].strip(), fields[7].strip(), parse_chat_age(fields[3]))


@dataclass(frozen=True)
class ChatTranscript:
    participants: dict[str, Participant]          # speaker code -> participant, from the @ID lines
    utterances: list[tuple[str | None, str]]      # (speaker, utterance) of the main tiers in order


def parse_chat(text: str) -> ChatTranscript:
    """A CHAT transcript read once: its ``@ID`` participants and its main-tier utterances (other
    headers, dependent tiers and blank lines skipped; a continuation line joined to its utterance)."""
    participants: dict[str, Participant] = {}
    utterances: list[tuple[str | None, str]] = []
    for line in normalise_whitespace(text).split("\n"):
        if line.startswith("@ID"):
            if (p := _id_participant(line)) is not None:
                participants[p.code] = p
            continue
        if not line.strip() or is_chat_header(line):
            continue
        if line[:1] == " " and utterances and not line.lstrip().startswith("*"):
            speaker, utt = utterances[-1]
            utterances[-1] = (speaker, utt + " " + line.strip())   # CHAT continuation line
            continue
        utterances.append(split_speaker(line))
    return ChatTranscript(participants, utterances)


def chat_participants(text: str) -> dict[str, Participant]:
    """Speaker code -> :class:`Participant` from the ``@ID`` lines of a CHAT transcript."""
    return parse_chat(text).participants


def is_target_child(speaker: str | None, participants: dict[str, Participant]) -> bool:
    """The target child: the ``CHI`` code, or a speaker whose ``@ID`` role is ``Target_Child``."""
    if speaker is None:
        return False
    if is_child(speaker):
        return True
    p = participants.get(speaker)
    return p is not None and p.role == "Target_Child"


AGE_BANDS_YEARS = 6     # bands 0-5 years, then "6+"
MAX_CHILD_AGE_MONTHS = 12 * 12   # older "target children" are transcription slips (``28;0.`` for 28 months)


def age_band(age_months: float | None) -> str:
    """One-year band of a target child's age: ``"0y"`` ... ``"5y"``, ``"6y+"``, ``"unknown"``."""
    if age_months is None or age_months < 0 or age_months > MAX_CHILD_AGE_MONTHS:
        return "unknown"
    years = int(age_months // 12)
    return f"{AGE_BANDS_YEARS}y+" if years >= AGE_BANDS_YEARS else f"{years}y"


def target_child_age(participants: dict[str, Participant]) -> float | None:
    """The target child's age in months from the ``@ID`` lines (``None`` when not given)."""
    for p in participants.values():
        if is_target_child(p.code, participants):
            if p.age_months is not None:
                return p.age_months
    return None


# --------------------------------------------------------------------------------------------
# the same transcript in two sources

_PLAIN_WORDS = re.compile(r"(?<!\S)[a-z']+(?!\S)")
FINGERPRINT_MIN_WORDS = 3
_KEY_MASK = (1 << 64) - 1


def _utterance_key(utterance: str) -> int | None:
    """A 64-bit key of an utterance's plain words (lower-cased; tokens with markup left out), or
    ``None`` when fewer than ``FINGERPRINT_MIN_WORDS`` such words remain. The key is Python's string
    hash: the same within one process and its forked workers, which is all an overlap test needs
    (the test compares sets of keys, so the corpus does not depend on the hash seed)."""
    words = _PLAIN_WORDS.findall(utterance.lower())
    if len(words) < FINGERPRINT_MIN_WORDS:
        return None
    return hash(" ".join(words)) & _KEY_MASK


def utterance_keys(utterances: Iterable[str]) -> np.ndarray:
    """Sorted, unique 64-bit keys of utterances (speaker tags removed) with enough plain words."""
    keys = {key for utt in utterances if (key := _utterance_key(utt)) is not None}
    return np.array(sorted(keys), dtype=np.uint64)


def transcript_fingerprint(text: str) -> np.ndarray:
    """:func:`utterance_keys` of the main tiers of a transcript (every speaker; headers and
    dependent tiers skipped). CHAT codes such as ``[/]``, ``&uh`` or ``woof+(woof)`` are left out
    of the key, so the childes-db rendering and the TalkBank file of one transcript share most of
    their keys."""
    return utterance_keys(split_speaker(line)[1] for line in text.split("\n") if line.startswith("*"))


OVERLAP_MIN_SHARED = 5
OVERLAP_MIN_CONTAINMENT = 0.4


def fingerprint_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two fingerprints are the same transcript: at least ``OVERLAP_MIN_SHARED`` shared
    utterances, and at least ``OVERLAP_MIN_CONTAINMENT`` of the smaller one's utterances shared.
    (On the two CHILDES sources the best share of each childes-db transcript is bimodal: under 0.3
    for a different transcript, 0.5-1.0 for the same one, none in between; docs/results/data.md.)"""
    if not len(a) or not len(b):
        return False
    return bool(_same_transcript(len(np.intersect1d(a, b, assume_unique=True)), min(len(a), len(b))))


def _same_transcript(shared, smaller):
    """The overlap rule on counts (numbers or arrays): ``shared`` utterances of the smaller
    fingerprint's ``smaller``."""
    return (shared >= OVERLAP_MIN_SHARED) & (shared >= OVERLAP_MIN_CONTAINMENT * smaller)


class FingerprintIndex:
    """The fingerprints of one source's transcripts, searchable: ``matches(fp)`` gives the indices
    of the transcripts that :func:`fingerprint_overlap` calls the same as ``fp``."""

    def __init__(self, fingerprints: list[np.ndarray]):
        self.fingerprints = fingerprints
        sizes = [len(f) for f in fingerprints]
        keys = np.concatenate(fingerprints) if fingerprints else np.zeros(0, dtype=np.uint64)
        owners = np.repeat(np.arange(len(fingerprints)), sizes)
        order = np.argsort(keys, kind="stable")
        self.keys, self.owners = keys[order], owners[order]

    def shared(self, fp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(owners, counts)``: the transcripts sharing keys with ``fp``, and how many each."""
        if not len(fp) or not len(self.keys):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        lo = np.searchsorted(self.keys, fp, side="left")
        hi = np.searchsorted(self.keys, fp, side="right")
        counts = hi - lo
        # the positions lo..hi-1 of every key, flattened: the owners of fp's keys in the index
        positions = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        return np.unique(self.owners[positions], return_counts=True)

    def share(self, fp: np.ndarray, owner: int, shared: int) -> float:
        """The share of the smaller of ``fp`` and transcript ``owner`` that the two share."""
        return shared / max(1, min(len(fp), len(self.fingerprints[owner])))

    def matches(self, fp: np.ndarray) -> list[int]:
        owners, shared = self.shared(fp)
        if not len(owners):
            return []
        sizes = np.array([len(self.fingerprints[j]) for j in owners])
        same = _same_transcript(shared, np.minimum(sizes, len(fp)))
        return [int(j) for j in owners[same]]
