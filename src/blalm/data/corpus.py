"""Build a curated corpus under an exact word budget: ``blalm corpus CONFIG --out DIR``.

The flow, one source at a time (memory stays flat whatever the sources' size):

1. read the source's documents (``readers``), run its filters (``sources``), drop exact
   duplicates (across all sources), and spool the kept segments to ``DIR/.work/NAME.jsonl``,
   keeping only each document's segment word counts in memory;
2. carve the dev split: ``dev_words`` allocated over the sources by share, filled with whole
   documents drawn in a seeded order;
3. allocate the training budget over what the sources hold after the dev split (``budget``),
   and fill each source's quota from the remaining documents;
4. stream the spools once more and write ``train.txt`` and ``dev.txt`` (one segment a line),
   then ``manifest.json``, which accounts for every input document: for each source,
   ``docs_read == docs_train + docs_dev + sum(dropped.values())``.

Files are written to temporary names and renamed at the end, so a crash never leaves a
half-written corpus that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm import tqdm

from blalm.config import to_dict
from blalm.data import budget
from blalm.data.config import CorpusConfig, SourceConfig, resolve_data_dir
from blalm.data.documents import Document, count_words
from blalm.data.readers import expand_paths, iter_documents
from blalm.data.sources import Processed, SourceProcessor, resolve_filters
from blalm.errors import BlalmError
from blalm.atomic import write_json_atomic
from blalm.runinfo import run_info


@dataclass
class SourceTally:
    """What happened to one source's documents."""

    name: str
    kind: str
    files: int = 0
    docs_read: int = 0
    dropped: Counter = field(default_factory=Counter)          # whole documents, by reason
    segment_drops: Counter = field(default_factory=Counter)    # segments, by reason
    doc_words: list[list[int]] = field(default_factory=list)   # kept documents' segment word counts

    @property
    def available_words(self) -> int:
        return sum(sum(d) for d in self.doc_words)


def build_corpus(cfg: CorpusConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Build ``train.txt``, ``dev.txt`` and ``manifest.json`` in ``out_dir``; return the manifest."""
    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    data_dir = resolve_data_dir(cfg.data_dir)
    info = run_info(to_dict(cfg), cfg.seed)
    write_json_atomic(out_dir / "run_info.json", info)

    seen: set[bytes] = set()
    tallies = {name: _spool_source(name, src, cfg, data_dir, work / f"{name}.jsonl", seen, progress)
               for name, src in cfg.sources.items()}
    del seen

    shares = {n: s.share for n, s in cfg.sources.items()}
    absorb = {n: s.absorb for n, s in cfg.sources.items()}
    available = {n: t.available_words for n, t in tallies.items()}
    # the dev split mirrors the training split's composition: dev words go to the sources in
    # proportion to what the training budget would take from them
    planned = budget.allocate(cfg.budget_words, shares, available, absorb)
    dev_quota = budget.allocate(cfg.dev_words, planned, available, absorb)
    dev_pick = {n: _select_whole(t.doc_words, dev_quota[n], f"{cfg.seed}:dev:{n}") for n, t in tallies.items()}
    dev_used = {n: sum(sum(tallies[n].doc_words[i][:k]) for i, k in dev_pick[n].items()) for n in tallies}
    train_quota = budget.allocate(cfg.budget_words, shares,
                                  {n: available[n] - dev_used[n] for n in tallies}, absorb)
    train_pick = {n: budget.select(t.doc_words, train_quota[n], f"{cfg.seed}:train:{n}",
                                   exclude=set(dev_pick[n])) for n, t in tallies.items()}

    train_words, dev_words = _write_splits(out_dir, work, tallies, train_pick, dev_pick)
    shutil.rmtree(work, ignore_errors=True)

    sources = {}
    for name, t in tallies.items():
        picked = set(train_pick[name]) | set(dev_pick[name])
        dropped = Counter(t.dropped)
        not_selected = len(t.doc_words) - len(picked)
        if not_selected:
            dropped["not_selected"] += not_selected
        sources[name] = {
            "kind": t.kind,
            "status": "ok" if t.files else "no input",
            "files": t.files,
            "share": cfg.sources[name].share,
            "docs_read": t.docs_read,
            "docs_train": len(train_pick[name]),
            "docs_train_partial": sum(1 for i, k in train_pick[name].items() if k < len(t.doc_words[i])),
            "docs_dev": len(dev_pick[name]),
            "dropped": dict(sorted(dropped.items())),
            "segments_dropped": dict(sorted(t.segment_drops.items())),
            "available_words": available[name],
            "quota_words": train_quota[name],
            "words": train_words[name],
            "dev_words": dev_words[name],
        }
        assert t.docs_read == sources[name]["docs_train"] + sources[name]["docs_dev"] + sum(dropped.values()), name
    total_train = sum(train_words.values())
    manifest = {
        "budget_words": cfg.budget_words,
        "train_words": total_train,
        "dev_words": sum(dev_words.values()),
        "budget_used": total_train / cfg.budget_words,
        "shortfall_words": cfg.budget_words - total_train,
        "seed": cfg.seed,
        "data_dir": str(data_dir),
        "sources": sources,
        "seconds": round(time.time() - start, 1),
        "config": to_dict(cfg),
        "run_info": info,
    }
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def _spool_source(name: str, src: SourceConfig, cfg: CorpusConfig, data_dir: Path, spool: Path,
                  seen: set[bytes], progress: bool) -> SourceTally:
    tally = SourceTally(name=name, kind=src.kind)
    with spool.open("w", encoding="utf-8") as out:
        if not src.paths:
            return tally
        paths = expand_paths(src.paths, data_dir, where=f"source '{name}'")
        tally.files = len(paths)
        process = SourceProcessor(src.kind, resolve_filters(src.kind, src.filters), cfg.seed)
        read_errors: Counter = Counter()
        docs = iter_documents(paths, src.format, text_field=src.text_field, id_field=src.id_field,
                              lines_per_document=src.lines_per_document, on_error=cfg.on_error,
                              drops=read_errors)
        bar = tqdm(desc=f"corpus {name}", unit=" docs", disable=not progress, leave=False)
        for result in _process_all(process, docs, cfg.workers):
            bar.update()
            tally.docs_read += 1
            tally.segment_drops.update(result.segment_drops)
            if result.drop:
                tally.dropped[result.drop] += 1
                continue
            segments = [" ".join(s.split()) for s in result.segments]  # one line each, whitespace normalised
            segments = [s for s in segments if s]
            if cfg.dedup:
                segments = list(_unique(segments, seen, tally.segment_drops))
            if not segments:
                tally.dropped["duplicate" if result.segments else "empty_after_filters"] += 1
                continue
            out.write(json.dumps(segments, ensure_ascii=False) + "\n")
            tally.doc_words.append([count_words(s) for s in segments])
        # documents the reader could not parse (on_error = "skip") are drops too
        tally.docs_read += sum(read_errors.values())
        tally.dropped.update(read_errors)
    return tally


_WORKER_PROCESS: SourceProcessor | None = None


def _worker_init(process: SourceProcessor) -> None:
    global _WORKER_PROCESS
    _WORKER_PROCESS = process


def _worker_call(doc: Document) -> Processed:
    assert _WORKER_PROCESS is not None
    return _WORKER_PROCESS(doc)


def _process_all(process: SourceProcessor, docs: Iterable[Document], workers: int) -> Iterator[Processed]:
    """``process(doc)`` for every document, in order: in this process, or in a pool of forked workers
    (the documents are read here, so read errors still name their file and line)."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(process, docs)
        return
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init, initargs=(process,))
    try:
        yield from pool.imap(_worker_call, docs, chunksize=8)
    finally:
        pool.terminate()
        pool.join()


def _unique(segments: list[str], seen: set[bytes], drops: Counter) -> Iterator[str]:
    for seg in segments:
        key = hashlib.blake2b(seg.encode("utf-8"), digest_size=12).digest()
        if key in seen:
            drops["duplicate"] += 1
            continue
        seen.add(key)
        yield seg


def _select_whole(doc_words: list[list[int]], quota: int, seed: str) -> dict[int, int]:
    """Dev split: whole documents only (a dev document is never cut), never over ``quota``."""
    whole = [[sum(d)] for d in doc_words]
    return {i: len(doc_words[i]) for i in budget.select(whole, quota, seed)}


def _write_splits(out_dir: Path, work: Path, tallies: dict[str, SourceTally],
                  train_pick: dict[str, dict[int, int]], dev_pick: dict[str, dict[int, int]]
                  ) -> tuple[Counter, Counter]:
    train_words: Counter = Counter({n: 0 for n in tallies})
    dev_words: Counter = Counter({n: 0 for n in tallies})
    tmp_train, tmp_dev = out_dir / ".train.txt.tmp", out_dir / ".dev.txt.tmp"
    with tmp_train.open("w", encoding="utf-8") as train, tmp_dev.open("w", encoding="utf-8") as dev:
        for name in tallies:
            with (work / f"{name}.jsonl").open(encoding="utf-8") as spool:
                for i, line in enumerate(spool):
                    if i in train_pick[name]:
                        target, counter, take = train, train_words, train_pick[name][i]
                    elif i in dev_pick[name]:
                        target, counter, take = dev, dev_words, dev_pick[name][i]
                    else:
                        continue
                    for seg in json.loads(line)[:take]:
                        target.write(seg + "\n")
                        counter[name] += count_words(seg)
    os.replace(tmp_train, out_dir / "train.txt")
    os.replace(tmp_dev, out_dir / "dev.txt")
    return train_words, dev_words


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise BlalmError(f"--out {out_dir} exists and is not a folder; give a folder path")
