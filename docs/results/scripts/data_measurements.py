"""The measurements behind docs/results/data.md (issue 17), on ../shared/data.

    PYTHONPATH=src BLALM_DATA_DIR=../shared/data python docs/results/scripts/data_measurements.py [casing|readability|overlap]
    PYTHONPATH=src BLALM_DATA_DIR=../shared/data python docs/results/scripts/data_measurements.py case_change REV

- casing: TinyStories' cased slice lower-cased and restored (blalm.data.filters.tinystories), two
  folds: the case lexicon learnt from one half of the cased paragraphs (plus the names the
  lower-cased half itself introduces with "named X"), scored on the other half.
- case_change REV: how many lower-cased TinyStories lines the current restore_case restores
  differently from the one at git revision REV (the lexicon learnt as the corpus build learns it).
- readability: Wikipedia paragraphs kept by the wikipedia kind (15-word minimum) on a seeded 5% of
  the articles, with the readability filter (filters.max_grade) off and at several grades: words
  kept, mean sentence length, Flesch-Kincaid grade and Flesch reading ease (word-weighted).
- overlap: the transcripts of the childes (childes-db) source that childes_talkbank also holds:
  the distribution of the shared-utterance share, and the count the overlap test gives.
"""

from __future__ import annotations

import json
import lzma
import sys
from collections import Counter
from pathlib import Path

from blalm.data.config import FilterConfig, default_data_dir
from blalm.data.documents import Document
from blalm.data.filters.childes import FingerprintIndex, transcript_fingerprint
from blalm.data.filters.text import flesch_kincaid_grade, flesch_reading_ease, readability
from blalm.data.filters.tinystories import casing_accuracy, learn_case_lexicon
from blalm.data.readers import sampled
from blalm.data.sources import SourceProcessor

TRAIN = Path(default_data_dir()) / "train"


def rows(name: str):
    for path in sorted(TRAIN.glob(f"{name}-*.jsonl.xz")):
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                yield path.name, lineno, json.loads(line)


def casing() -> None:
    cased = [r["text"] for _, _, r in rows("tinystories") if not r["meta"]["lowercased"]]
    half = len(cased) // 2
    for k, (learn, score) in enumerate(((cased[:half], cased[half:]), (cased[half:], cased[:half]))):
        lexicon = learn_case_lexicon(learn, [t.lower() for t in score])
        result = casing_accuracy(score, lexicon)
        print(json.dumps({"fold": k, "names": len(lexicon.names), **{key: round(v, 5) for key, v in result.items()}}))


def case_change(rev: str) -> None:
    import subprocess
    import types

    from blalm.data.filters import tinystories

    old = types.ModuleType("tinystories_old")
    source = subprocess.run(["git", "show", f"{rev}:src/blalm/data/filters/tinystories.py"], check=True,
                            capture_output=True, text=True).stdout
    sys.modules[old.__name__] = old       # its dataclasses look their module up
    exec(compile(source, f"{rev}:tinystories.py", "exec"), old.__dict__)
    records = [r for _, _, r in rows("tinystories")]
    cased = [r["text"] for r in records if not r["meta"]["lowercased"]]
    lowered = [r["text"] for r in records if r["meta"]["lowercased"]]
    lines = [ln for text in lowered for ln in text.splitlines() if ln.strip()]
    new_lex = tinystories.learn_case_lexicon(cased, lowered)
    old_lex = old.learn_case_lexicon(cased, lowered)
    changed = [ln for ln in lines if tinystories.restore_case(ln, new_lex) != old.restore_case(ln, old_lex)]
    print(json.dumps({"rev": rev, "lines": len(lines), "changed": len(changed), "examples": changed[:3]}))


def readability_stats(paragraphs: list[str]) -> dict[str, float]:
    words = sentences = 0.0
    grade = ease = 0.0
    for p in paragraphs:
        r = readability(p)
        words += r["words"]
        sentences += r["sentences"]
        grade += flesch_kincaid_grade(p) * r["words"]
        ease += flesch_reading_ease(p) * r["words"]
    return {"words": int(words), "mean_sentence_words": round(words / max(sentences, 1), 2),
            "flesch_kincaid_grade": round(grade / max(words, 1), 2), "flesch_reading_ease": round(ease / max(words, 1), 2)}


def readability_filter() -> None:
    docs = [Document(r["id"], r["text"], f"{name}:{line}", r["meta"]) for name, line, r in rows("wikipedia")
            if sampled(0.05, "measure", name, line)]
    for grade in (0.0, 14.0, 12.0, 10.0, 8.0):
        process = SourceProcessor("wikipedia", FilterConfig(max_grade=grade), 0)
        kept = [s for d in docs for s in process(d).segments]
        print(json.dumps({"max_grade": grade or "off", "articles": len(docs), "paragraphs": len(kept),
                          **readability_stats(kept)}))


def overlap() -> None:
    reference = [transcript_fingerprint(r["text"]) for _, _, r in rows("childes_talkbank")]
    index = FingerprintIndex(reference)
    shares: Counter = Counter()
    matched = 0
    for _, _, r in rows("childes"):
        fp = transcript_fingerprint(r["text"])
        owners, counts = index.shared(fp)
        best = max((index.share(fp, int(j), int(c)) for j, c in zip(owners, counts)), default=0.0)
        shares[min(int(best * 10), 9)] += 1
        matched += bool(index.matches(fp))
    print(json.dumps({"share_histogram": {f"{k / 10:.1f}-{(k + 1) / 10:.1f}": shares[k] for k in range(10)},
                      "childes_transcripts": sum(shares.values()), "found_in_talkbank": matched}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["case_change"]:
        case_change(sys.argv[2])
        sys.exit()
    wanted = sys.argv[1:] or ["casing", "readability", "overlap"]
    for what in wanted:
        {"casing": casing, "readability": readability_filter, "overlap": overlap}[what]()
