"""Grammar normalisation of transcribed speech (paper §3.2: "We normalize speech using LanguageTool").

Two normalisers, both ``list[str] -> list[str]`` (one output per input utterance, same order):

- ``offline_normalise`` (no server): attaches punctuation written as separate tokens
  (``what's that ?`` -> ``what's that?``, `` ,`` -> ``,``; clitics ``'s``/``n't`` stay attached),
  capitalises the first letter and the pronoun ``i`` (``i``, ``i'm``, ``i'll``, ``i've``, ``i'd``) and
  adds a final period when the utterance has no terminal punctuation. It fixes form, not grammar.
- ``LanguageToolClient``: a client of a LanguageTool server's HTTP API (``POST {url}/v2/check``,
  form fields ``text`` and ``language``). The first replacement of every match is applied, right
  to left. Several utterances go in one request (joined by a blank line, the separator LanguageTool
  reads as a paragraph break so that no rule spans two utterances; offsets are mapped back, and
  a match that crosses a separator is ignored), so a transcript costs one request (or a few when
  longer than ``max_chars``). Spelling matches (``issueType == "misspelling"``, the
  ``MORFOLOGIK_*`` rules) are skipped by default: child-directed speech is full of words and names
  a spelling dictionary does not know (``woof``, ``uhoh``, ``Baby G``). The offline normaliser runs
  first, so LanguageTool sees clean spacing and only the real grammar corrections are its own.
  LanguageTool counts offsets in UTF-16 code units (Java strings); they are converted to Python
  string indices. Only the standard library is used (``urllib``).

Start a local server with e.g. ``java -cp languagetool-server.jar org.languagetool.server.HTTPServer
--port 8081 --allow-origin`` and set ``filters.languagetool_url = "http://localhost:8081"``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable, Sequence

from blalm.data.filters.text import collapse_spaces
from blalm.errors import BlalmError

__all__ = [
    "offline_normalise", "offline_normalise_batch", "Replacement", "apply_replacements",
    "LanguageToolClient", "make_grammar_normaliser", "GrammarNormaliser",
]

GrammarNormaliser = Callable[[Sequence[str]], list[str]]

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:%)\]}”’]+)")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{“‘])\s+")
_CLITIC = re.compile(r"(?<=\w)\s+(n't|'s|'re|'ve|'ll|'d|'m)\b", re.IGNORECASE)
_PRONOUN_I = re.compile(r"(?<![\w'’])i(?=(?:['’](?:m|ll|ve|d)\b)|(?![\w'’]))")
_TERMINAL = re.compile(r"[.!?…][\"'”’)\]]*$")
_REPEATED_TERMINAL = re.compile(r"([.!?])(?:\s*[.!?])+$")


def _one_terminal(m: re.Match) -> str:
    tail = m.group(0).replace(" ", "")
    if tail in ("...", "?!", "!?"):
        return tail
    return "?" if "?" in tail else "!" if "!" in tail else "."


def offline_normalise(text: str) -> str:
    """Form fixes for one utterance; see the module docstring. ``""`` stays ``""``."""
    s = collapse_spaces(text)
    if not s:
        return ""
    s = _CLITIC.sub(r"\1", s)
    s = _SPACE_BEFORE_PUNCT.sub(r"\1", s)
    s = _SPACE_AFTER_OPEN.sub(r"\1", s)
    s = _PRONOUN_I.sub("I", s)
    s = re.sub(r"^[,;:\s]+", "", s)          # an utterance cannot start with a comma
    if not s:
        return ""
    for i, ch in enumerate(s):
        if ch.isalpha():
            s = s[:i] + ch.upper() + s[i + 1:]
            break
    s = _REPEATED_TERMINAL.sub(_one_terminal, s)
    s = re.sub(r"[,;:]+$", "", s).rstrip()
    if not _TERMINAL.search(s):
        s += "."
    return s


def offline_normalise_batch(texts: Sequence[str]) -> list[str]:
    return [offline_normalise(t) for t in texts]


@dataclass(frozen=True)
class Replacement:
    offset: int   # Python string index
    length: int
    value: str


def apply_replacements(text: str, replacements: Sequence[Replacement]) -> str:
    """Apply non-overlapping replacements right to left (an overlapping one, in that order, is skipped)."""
    out = text
    limit = len(text) + 1
    for rep in sorted(replacements, key=lambda r: (r.offset, r.length), reverse=True):
        if rep.offset < 0 or rep.offset + rep.length > len(text) or rep.offset + rep.length > limit:
            continue
        out = out[:rep.offset] + rep.value + out[rep.offset + rep.length:]
        limit = rep.offset
    return out


def _utf16_to_index(text: str) -> list[int]:
    """``table[u]`` = the Python index of UTF-16 offset ``u`` (for every code-unit boundary)."""
    table: list[int] = []
    for i, ch in enumerate(text):
        table.append(i)
        if ord(ch) > 0xFFFF:
            table.append(i)  # the low surrogate maps to the same character
    table.append(len(text))
    return table


class LanguageToolClient:
    """A client of a LanguageTool server (``POST {url}/v2/check``)."""

    def __init__(self, url: str, language: str = "en-US", timeout: float = 60.0,
                 max_chars: int = 50_000, separator: str = "\n\n", skip_misspellings: bool = True,
                 retries: int = 2):
        if not url:
            raise BlalmError("grammar = 'languagetool' needs filters.languagetool_url (e.g. http://localhost:8081)")
        self.url = url.rstrip("/")
        self.language = language
        self.timeout = timeout
        self.max_chars = max_chars
        self.separator = separator
        self.skip_misspellings = skip_misspellings
        self.retries = retries
        self.requests = 0  # requests sent (for tests and progress reports)

    # -- HTTP ---------------------------------------------------------------------------
    def _fix_hint(self) -> str:
        return ("start a LanguageTool server there (e.g. `java -cp languagetool-server.jar "
                "org.languagetool.server.HTTPServer --port 8081`) or set filters.grammar = \"offline\"")

    def check(self, text: str) -> list[dict]:
        """The server's ``matches`` for ``text`` (raw JSON objects, offsets in UTF-16 units)."""
        endpoint = f"{self.url}/v2/check"
        body = urllib.parse.urlencode({"text": text, "language": self.language}).encode("utf-8")
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(endpoint, data=body, method="POST", headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "Accept": "application/json"})
            try:
                self.requests += 1
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                break
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                if exc.code >= 500 and attempt < self.retries:
                    last_error = exc
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise BlalmError(f"LanguageTool server at {self.url} answered HTTP {exc.code} for "
                                 f"{endpoint}: {detail.strip()}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last_error = exc
                if attempt < self.retries:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                reason = getattr(exc, "reason", exc)
                raise BlalmError(f"cannot reach the LanguageTool server at {self.url} ({reason}): "
                                 f"{self._fix_hint()}") from None
            except json.JSONDecodeError:
                raise BlalmError(f"LanguageTool server at {self.url} sent a reply that is not JSON "
                                 f"for {endpoint}: is this a LanguageTool server?") from None
        else:  # pragma: no cover - loop always breaks or raises
            raise BlalmError(f"cannot reach the LanguageTool server at {self.url} ({last_error})")
        matches = payload.get("matches") if isinstance(payload, dict) else None
        if not isinstance(matches, list):
            raise BlalmError(f"LanguageTool server at {self.url} sent no 'matches' list for {endpoint}: "
                             "is this a LanguageTool server (API v2)?")
        return matches

    def _wanted(self, match: dict) -> bool:
        reps = match.get("replacements") or []
        if not reps or not isinstance(reps[0], dict) or "value" not in reps[0]:
            return False
        if self.skip_misspellings:
            rule = match.get("rule") or {}
            if rule.get("issueType") == "misspelling" or str(rule.get("id", "")).startswith("MORFOLOGIK"):
                return False
        return True

    # -- corrections ------------------------------------------------------------------------
    def correct(self, text: str) -> str:
        return self.correct_batch([text])[0]

    def correct_batch(self, texts: Sequence[str]) -> list[str]:
        """Correct every text; texts are sent together (``separator``-joined) in as few requests as
        ``max_chars`` allows. Texts holding the separator are sent as they are and mapped back the same."""
        out = list(texts)
        batch: list[int] = []
        size = 0
        for i, t in enumerate(texts):
            if not t.strip():
                continue
            if batch and size + len(self.separator) + len(t) > self.max_chars:
                self._correct_group(texts, batch, out)
                batch, size = [], 0
            batch.append(i)
            size += len(t) + (len(self.separator) if len(batch) > 1 else 0)
        if batch:
            self._correct_group(texts, batch, out)
        return out

    def _correct_group(self, texts: Sequence[str], idx: list[int], out: list[str]) -> None:
        joined = self.separator.join(texts[i] for i in idx)
        starts: list[int] = []
        pos = 0
        for i in idx:
            starts.append(pos)
            pos += len(texts[i]) + len(self.separator)
        to_index = _utf16_to_index(joined)
        per_text: dict[int, list[Replacement]] = {i: [] for i in idx}
        for match in self.check(joined):
            if not self._wanted(match):
                continue
            try:
                u_off, u_len = int(match["offset"]), int(match["length"])
            except (KeyError, TypeError, ValueError):
                continue
            if u_off < 0 or u_len < 0 or u_off + u_len >= len(to_index):
                continue
            start, end = to_index[u_off], to_index[u_off + u_len]
            # the text this match falls in (binary search would do; transcripts are small)
            k = max(j for j, s in enumerate(starts) if s <= start)
            t_start, t_end = starts[k], starts[k] + len(texts[idx[k]])
            if end > t_end:
                continue  # spans a separator
            per_text[idx[k]].append(Replacement(start - t_start, end - start,
                                                str(match["replacements"][0]["value"])))
        for i in idx:
            if per_text[i]:
                out[i] = apply_replacements(texts[i], per_text[i])

    def __call__(self, texts: Sequence[str]) -> list[str]:
        """Offline form fixes, then LanguageTool's corrections."""
        return self.correct_batch(offline_normalise_batch(texts))


def _no_change(texts: Sequence[str]) -> list[str]:
    return [collapse_spaces(t) for t in texts]


def make_grammar_normaliser(mode: str, languagetool_url: str = "") -> GrammarNormaliser:
    """``"none"`` -> whitespace only; ``"offline"`` -> ``offline_normalise``; ``"languagetool"`` -> the client."""
    if mode == "none":
        return _no_change
    if mode == "offline":
        return offline_normalise_batch
    if mode == "languagetool":
        return LanguageToolClient(languagetool_url)
    raise BlalmError(f"filters.grammar must be 'none', 'offline' or 'languagetool', got {mode!r}")
