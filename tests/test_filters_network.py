"""The two network clients against loopback stand-in servers started here: a LanguageTool server
(``POST /v2/check``, a few fixed rules in LanguageTool's reply format, UTF-16 offsets like the Java
server) and an OpenAI-compatible chat endpoint. The clients under test are the real ones."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blalm.data.config import FilterConfig
from blalm.data.documents import Document
from blalm.data.filters import edu, grammar
from blalm.data.sources import SourceProcessor
from blalm.errors import BlalmError


def _utf16(text: str, index: int) -> int:
    return len(text[:index].encode("utf-16-le")) // 2


# a few LanguageTool rules: (id, issue type, pattern, replacement builder)
_LT_RULES = [
    ("HE_VERB_AGR", "grammar", re.compile(r"\b(he|she|it) (go|want|like)\b", re.IGNORECASE),
     lambda m: [f"{m.group(1)} {m.group(2)}es" if m.group(2) == "go" else f"{m.group(1)} {m.group(2)}s"]),
    ("EN_A_VS_AN", "misspelling-no", re.compile(r"\ba(?= [aeiou])", re.IGNORECASE), lambda m: ["an"]),
    ("MORFOLOGIK_RULE_EN_US", "misspelling", re.compile(r"\bwoof\b"), lambda m: ["wolf", "woo"]),
    ("NO_SUGGESTION", "style", re.compile(r"\bvery very\b"), lambda m: []),
    ("CROSS_PARAGRAPH", "style", re.compile(r"\.\n\nAnd\b"), lambda m: ["X"]),
]


class _LTHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        if self.path != "/v2/check":
            self.send_error(404, "no such endpoint")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        type(self).requests.append(form)
        if form.get("language") != "en-US" or "text" not in form:
            self.send_error(400, "missing text or language")
            return
        text = form["text"]
        matches = []
        for rule_id, issue, pattern, replace in _LT_RULES:
            for m in pattern.finditer(text):
                matches.append({
                    "message": rule_id, "offset": _utf16(text, m.start()),
                    "length": _utf16(text, m.end()) - _utf16(text, m.start()),
                    "replacements": [{"value": v} for v in replace(m)],
                    "rule": {"id": rule_id, "issueType": issue},
                })
        payload = json.dumps({"software": {"name": "stand-in"}, "matches": matches}).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _OpenAIHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            self.send_error(404, "no such endpoint")
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        type(self).requests.append({"body": body, "auth": self.headers.get("Authorization")})
        prompt = body["messages"][-1]["content"]
        if body.get("model") == "mute":
            reply = "I would rather not say."
        elif "evaporation" in prompt:
            reply = "Clear explanation of a school topic.\nEducational score: 4"
        else:
            reply = "Mostly navigation and ads.\nEducational score: 1"
        payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def _serve(handler):
    handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def lt_url():
    with _serve(_LTHandler) as url:
        yield url


@pytest.fixture
def openai_url():
    with _serve(_OpenAIHandler) as url:
        yield url + "/v1"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- LanguageTool


def test_languagetool_batch_one_request_utf16_offsets(lt_url):
    client = grammar.LanguageToolClient(lt_url)
    utterances = ["😀 he go home now .", "she ate a apple", "the woof barks", "very very good", "", "and he like it ?"]
    out = client(utterances)
    assert out == ["😀 He goes home now.", "She ate an apple.", "The woof barks.", "Very very good.", "",
                   "And he likes it?"]
    assert len(_LTHandler.requests) == 1 == client.requests          # the whole batch in one request
    sent = _LTHandler.requests[0]
    assert sent["language"] == "en-US"
    # offline form fixes first, then the non-empty utterances joined by blank lines
    assert sent["text"] == "\n\n".join(["😀 He go home now.", "She ate a apple.", "The woof barks.",
                                         "Very very good.", "And he like it?"])


def test_languagetool_ignores_matches_across_separators_and_splits_big_batches(lt_url):
    client = grammar.LanguageToolClient(lt_url, max_chars=40)
    texts = ["it go fast.", "And it go slow.", "she like a egg.", "he want a owl."]
    assert client.correct_batch(texts) == ["it goes fast.", "And it goes slow.", "she likes an egg.",
                                           "he wants an owl."]
    assert client.requests == len(_LTHandler.requests) >= 2


def test_languagetool_unreachable_names_url_and_fix():
    url = _closed_port_url()
    client = grammar.LanguageToolClient(url, retries=0, timeout=5)
    with pytest.raises(BlalmError) as err:
        client(["he go home ."])
    msg = str(err.value)
    assert url in msg and "grammar = \"offline\"" in msg and "LanguageTool" in msg


def test_languagetool_wrong_endpoint_is_reported(lt_url):
    client = grammar.LanguageToolClient(lt_url + "/not-here", retries=0)
    with pytest.raises(BlalmError, match="HTTP 404"):
        client.correct("he go home")


def test_childes_processor_with_languagetool(lt_url):
    doc = Document("t/1", "*MOT:\tand then he go to the big shop with you ?\n*MOT:\tshort one .\n"
                          "*FAT:\tshe want a apple and a orange for lunch today .\n*CHI:\the go to the shop too now .",
                   "t:1")
    proc = SourceProcessor("childes", FilterConfig(grammar="languagetool", languagetool_url=lt_url), seed=0)
    res = proc(doc)
    assert res.segments == ["And then he goes to the big shop with you?",
                            "She wants an apple and an orange for lunch today."]
    assert res.segment_drops == {"too_short": 1, "child_utterance": 1}
    assert len(_LTHandler.requests) == 1                                # one request per transcript


# ----------------------------------------------------------------------- OpenAI-compatible scorer

EDU_DOC = ("The first step of the water cycle is called evaporation. The sun heats the water in lakes and "
           "oceans, and some of it turns into vapour that rises into the sky.")


def test_openai_edu_scorer(openai_url, monkeypatch):
    monkeypatch.setenv("BLALM_TEST_KEY", "sk-test")
    scorer = edu.OpenAIEduScorer(openai_url, "some-model", api_key_env="BLALM_TEST_KEY")
    assert isinstance(scorer, edu.EduScorer)
    assert scorer.score(EDU_DOC) == 4.0
    assert scorer.score("Home | Shop | Cart") == 1.0
    first = _OpenAIHandler.requests[0]
    assert first["auth"] == "Bearer sk-test"
    assert first["body"]["model"] == "some-model" and first["body"]["temperature"] == 0.0
    assert EDU_DOC in first["body"]["messages"][0]["content"]
    monkeypatch.delenv("BLALM_TEST_KEY")
    scorer.score(EDU_DOC)
    assert _OpenAIHandler.requests[-1]["auth"] is None                  # no key: no header


def test_openai_edu_scorer_errors_name_the_endpoint(openai_url):
    with pytest.raises(BlalmError, match="without 'Educational score: N'") as err:
        edu.OpenAIEduScorer(openai_url, "mute").score(EDU_DOC)
    assert openai_url in str(err.value)
    url = _closed_port_url() + "/v1"
    scorer = edu.OpenAIEduScorer(url, "m", retries=0, timeout=5)
    with pytest.raises(BlalmError, match="cannot reach") as err:
        scorer.score(EDU_DOC)
    assert url in str(err.value)
    with pytest.raises(BlalmError, match="HTTP 404"):
        edu.OpenAIEduScorer(openai_url + "/wrong", "m", retries=0).score(EDU_DOC)


def test_fineweb_processor_with_openai_scorer(openai_url):
    proc = SourceProcessor("fineweb_edu", FilterConfig(edu_scorer="openai", edu_endpoint=openai_url,
                                                       edu_model="m"), seed=0)
    kept = proc(Document("w/1", EDU_DOC, "w:1"))
    assert kept.drop is None and kept.segments == [EDU_DOC]
    dropped = proc(Document("w/2", "Home | Shop | Cart\nBuy now and save big on shoes today", "w:2"))
    assert dropped.drop == "low_edu_score" and dropped.segments == []
