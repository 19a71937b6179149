"""FineWeb-Edu: educational-value scoring behind a small interface (paper §3.2: "we re-evaluate all
samples using our own educational scoring prompt (Appendix A) with LLaMA 3.3-70B").

Every scorer has ``score(text) -> float`` on FineWeb-Edu's 0-5 scale; the processor keeps
documents scoring at least ``filters.min_edu_score`` (default 3, FineWeb-Edu's own threshold).

- ``OpenAIEduScorer`` sends ``EDU_PROMPT`` (with the text, cut to ``max_chars``) to an
  OpenAI-compatible chat endpoint (``POST {endpoint}/chat/completions``: vLLM, TGI, llama.cpp
  server, or a hosted API) and reads the last ``Educational score: N`` of the reply. The paper's
  Appendix A prompt did not survive in our copy of the paper (the appendix heading is there, its
  text is not), so ``EDU_PROMPT`` is our own wording of an additive five-point rubric in the
  spirit of FineWeb-Edu's annotation prompt, aimed, like the paper, at readers from primary to
  grade school. The API key is read from the environment variable named by
  ``filters.edu_api_key_env`` (sent as a bearer token when set; local servers need none).
- ``OfflineEduScorer`` needs no model: a deterministic additive score from surface features
  (one point each, partial credit where said):

  1. *substance*: at least 50 words, at most 25% of the tokens non-alphabetic (numbers, symbols,
     URLs); partial credit from 20 words;
  2. *clean prose*: mean sentence length 6-40 words, boilerplate markers (``BOILERPLATE_MARKERS``:
     cookie notices, "click here", "subscribe", shop and login language) under 1 per 200 words,
     repeated lines under 20% of the lines;
  3. *teaching language*: ``EDU_CUES`` ("for example", "because", "is called", "learn",
     "explain", "students" ...) at least 0.5 per 100 words and at least 100 words;
  4. *readable for school*: Flesch-Kincaid grade 2-12 and no boilerplate marker at all, at
     least 150 words;
  5. *outstanding*: at least 1.5 teaching cues per 100 words, grade 3-10, at least 250 words in
     at least 8 sentences.

  Each boilerplate marker beyond the first costs 0.5 (down to 0). It rewards the same things as
  the rubric (coherent, school-level, explanatory prose; no ads or navigation) but it is a proxy:
  use the LLM scorer for the paper's setting.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from typing import Protocol, runtime_checkable

from blalm.data.filters.text import flesch_kincaid_grade, readability
from blalm.errors import BlalmError

__all__ = ["EduScorer", "OfflineEduScorer", "OpenAIEduScorer", "EDU_PROMPT", "parse_edu_score",
           "BOILERPLATE_MARKERS", "EDU_CUES", "make_edu_scorer"]


@runtime_checkable
class EduScorer(Protocol):
    def score(self, text: str) -> float:
        """Educational value on a 0-5 scale."""
        ...


BOILERPLATE_MARKERS: tuple[str, ...] = (
    "cookie", "cookies", "click here", "subscribe", "sign up", "log in", "login", "newsletter",
    "privacy policy", "terms of use", "terms and conditions", "all rights reserved", "add to cart",
    "buy now", "free shipping", "follow us", "share this", "read more", "advertisement", "sponsored",
    "javascript", "discount", "coupon", "casino", "your cart", "posted by", "leave a comment",
)
EDU_CUES: tuple[str, ...] = (
    "for example", "for instance", "such as", "because", "is called", "are called", "means",
    "definition", "defined", "explain", "explains", "learn", "learning", "students", "student",
    "teacher", "lesson", "example", "examples", "process", "understand", "important", "therefore",
    "cause", "causes", "effect", "result", "science", "history", "scientists", "study", "discover",
    "describe", "compare", "how to", "why", "in other words", "first", "finally",
)
_BOILER_RE = re.compile(r"\b(?:" + "|".join(re.escape(m) for m in BOILERPLATE_MARKERS) + r")\b", re.IGNORECASE)
_CUE_RE = re.compile(r"\b(?:" + "|".join(re.escape(c) for c in EDU_CUES) + r")\b", re.IGNORECASE)
_ALPHA_TOKEN = re.compile(r"^[\"'“‘(\[]*[A-Za-z]+(?:['’\-][A-Za-z]+)*[\"'”’)\],.;:!?]*$")


class OfflineEduScorer:
    """Deterministic surface-feature score on the 0-5 scale (see the module docstring)."""

    def features(self, text: str) -> dict[str, float]:
        tokens = text.split()
        n = len(tokens)
        lines = [ln.strip().lower() for ln in text.splitlines() if ln.strip()]
        repeated = (len(lines) - len(set(lines))) / len(lines) if lines else 0.0
        r = readability(text)
        return {
            "words": float(n),
            "alpha_share": sum(1 for t in tokens if _ALPHA_TOKEN.match(t)) / n if n else 0.0,
            "words_per_sentence": r["words"] / r["sentences"] if r["words"] else 0.0,
            "sentences": r["sentences"],
            "boilerplate": float(len(_BOILER_RE.findall(text))),
            "cues_per_100": 100.0 * len(_CUE_RE.findall(text)) / n if n else 0.0,
            "repeated_lines": repeated,
            "grade": flesch_kincaid_grade(text) if n else 0.0,
        }

    def score(self, text: str) -> float:
        f = self.features(text)
        n = f["words"]
        if n == 0:
            return 0.0
        points = 0.0
        if f["alpha_share"] >= 0.75:
            points += min(1.0, max(0.0, (n - 20) / 30))
        boiler_rate = f["boilerplate"] * 200.0 / n
        if 6 <= f["words_per_sentence"] <= 40 and boiler_rate < 1 and f["repeated_lines"] < 0.2:
            points += 1.0
        if f["cues_per_100"] >= 0.5 and n >= 100:
            points += 1.0
        if 2 <= f["grade"] <= 12 and f["boilerplate"] == 0 and n >= 150:
            points += 1.0
        if f["cues_per_100"] >= 1.5 and 3 <= f["grade"] <= 10 and n >= 250 and f["sentences"] >= 8:
            points += 1.0
        points -= 0.5 * max(0.0, f["boilerplate"] - 1)
        return round(min(5.0, max(0.0, points)), 3)


EDU_PROMPT = """You are rating a web page extract for its value in teaching children and teenagers, from \
primary school up to grade school. Add up points with the rules below; each rule adds one point.

- One point when the extract offers some real information on an educational subject, even when \
ads, menus or other noise are mixed in.
- A second point when it covers parts of a subject teachers care about, even if it is not \
organised well, mixes in unrelated material or reads partly like a summary.
- A third point when a school could use it: it introduces the key ideas of a curriculum topic \
clearly and coherently, even if it is not complete or a little too easy or too hard.
- A fourth point when it is very useful for school: focused, well written and clear, at the level \
of a grade-school reader, like a chapter of a textbook or a good tutorial, with little \
irrelevant material.
- A fifth point when it is excellent for teaching at primary or grade-school level: detailed \
reasoning, easy to follow, with insight into the subject and nothing complicated or off topic.

The extract:
<extract>
{text}
</extract>

First justify your rating in at most 100 words. Then, on the last line, write \
"Educational score: <points>" with the total from 0 to 5."""

_SCORE_RE = re.compile(r"educational\s+score\s*:\s*\**\s*([0-5](?:\.\d+)?)", re.IGNORECASE)


def parse_edu_score(reply: str) -> float | None:
    """The last ``Educational score: N`` (0-5) in a model's reply, or ``None``."""
    found = _SCORE_RE.findall(reply)
    return float(found[-1]) if found else None


class OpenAIEduScorer:
    """Scores with an LLM behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, endpoint: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, max_chars: int = 8000, retries: int = 2, max_tokens: int = 256):
        if not endpoint:
            raise BlalmError("edu_scorer = 'openai' needs filters.edu_endpoint "
                             "(an OpenAI-compatible base URL such as http://localhost:8000/v1)")
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_chars = max_chars
        self.retries = retries
        self.max_tokens = max_tokens
        self.requests = 0

    def _request(self, text: str) -> str:
        url = f"{self.endpoint}/chat/completions"
        body = json.dumps({
            "model": self.model,
            "messages": [{"role": "user", "content": EDU_PROMPT.format(text=text[: self.max_chars])}],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                self.requests += 1
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                return str(payload["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace").strip()
                if (exc.code >= 500 or exc.code == 429) and attempt < self.retries:
                    time.sleep(1.0 * (attempt + 1))
                    continue
                hint = (f" (is the key in ${self.api_key_env} right?)" if exc.code in (401, 403) else "")
                raise BlalmError(f"edu scorer endpoint {self.endpoint} answered HTTP {exc.code} for {url}"
                                 f"{hint}: {detail}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                if attempt < self.retries:
                    time.sleep(1.0 * (attempt + 1))
                    continue
                reason = getattr(exc, "reason", exc)
                raise BlalmError(f"cannot reach the edu scorer endpoint {self.endpoint} ({reason}): start the "
                                 "server or fix filters.edu_endpoint, or set filters.edu_scorer = \"offline\"") from None
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                raise BlalmError(f"edu scorer endpoint {self.endpoint} sent a reply that is not an OpenAI "
                                 f"chat completion for {url}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def score(self, text: str) -> float:
        reply = self._request(text)
        value = parse_edu_score(reply)
        if value is None:
            raise BlalmError(f"edu scorer endpoint {self.endpoint} (model {self.model}) replied without "
                             f"'Educational score: N': {reply[-200:]!r}")
        return value


def make_edu_scorer(kind: str, endpoint: str = "", model: str = "",
                    api_key_env: str = "OPENAI_API_KEY") -> EduScorer | None:
    """``"none"`` -> ``None``; ``"offline"`` -> ``OfflineEduScorer``; ``"openai"`` -> ``OpenAIEduScorer``."""
    if kind == "none":
        return None
    if kind == "offline":
        return OfflineEduScorer()
    if kind == "openai":
        return OpenAIEduScorer(endpoint, model, api_key_env)
    raise BlalmError(f"filters.edu_scorer must be 'none', 'offline' or 'openai', got {kind!r}")
