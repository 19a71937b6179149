"""Build a curated corpus under an exact word budget: ``blalm corpus CONFIG --out DIR``.

The flow, one source at a time (memory stays flat whatever the sources' size):

1. read the source's documents (``readers``), run its filters (``sources``), drop exact
   duplicates (across all sources), and spool the kept segments to ``.work/NAME.jsonl``,
   keeping only each document's segment word counts in memory. A ``childes`` source with
   ``drop_overlap_with = "OTHER"`` is read after OTHER, and its transcripts that OTHER also holds
   (``filters.childes.fingerprint_overlap``) are dropped (reason ``overlap``) before deduplication;
2. carve the dev split: ``dev_words`` allocated over the sources by share, filled with whole
   documents drawn in a seeded order;
3. allocate the training budget over what the sources hold after the dev split (``budget``),
   and fill each source's quota from the remaining documents;
4. stream the spools once more and write ``train.txt`` and ``dev.txt`` (one segment a line),
   then ``manifest.json``, which accounts for every input document: for each source,
   ``docs_read == docs_train + docs_dev + sum(dropped.values())``. Each source's entry also
   names its licence (``licences``) and, for CHILDES, the training words by speaker role, by the
   target child's age band and by corpus, and the transcripts shared with the other CHILDES source.

Everything is written into a staging folder beside ``DIR`` (``.DIR.staging-*``) that replaces
``DIR`` only when the build has succeeded: a failed or killed rebuild leaves the old corpus as it
was (its ``run_info.json`` still matching its ``manifest.json``) and no ``.work`` in it; a failed
build removes its staging folder. A build whose sources yield no words at all is an error, not an
empty corpus.

``blalm corpus`` builds holding the lock ``.DIR.lock`` beside ``DIR`` (:func:`blalm.lock.lock_beside`;
a lock inside ``DIR`` would be swapped away with it): a second build into ``DIR`` is refused with
the first one's pid and host, and what a killed build left beside ``DIR`` is cleared away, under the
lock, before the next one starts (:func:`remove_killed_build`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from blalm.atomic import atomic_dir, check_replaceable_dir, clear_killed_write, write_json_atomic
from blalm.config import to_dict
from blalm.data import budget
from blalm.data.config import CorpusConfig, SourceConfig, resolve_data_dir
from blalm.data.documents import Document, count_words
from blalm.data.filters.childes import FingerprintIndex
from blalm.data.licences import source_licence
from blalm.data.readers import expand_paths, iter_documents
from blalm.data.sources import Processed, SourceProcessor, resolve_filters
from blalm.errors import BlalmError
from blalm.runinfo import run_info

# what a corpus folder holds: its files, the training stage's token caches, and leftovers of
# builds before the staging folder (removed)
CORPUS_FILES = frozenset({"train.txt", "dev.txt", "manifest.json", "run_info.json"})
KEPT_ENTRIES = frozenset({".tokens"})
STALE_ENTRIES = frozenset({".work", ".train.txt.tmp", ".dev.txt.tmp"})
LABEL_KINDS = ("role", "age_band", "corpus")


@dataclass
class SourceTally:
    """What happened to one source's documents."""

    name: str
    kind: str
    files: list[Path] = field(default_factory=list)
    docs_read: int = 0
    dropped: Counter = field(default_factory=Counter)          # whole documents, by reason
    segment_drops: Counter = field(default_factory=Counter)    # segments, by reason
    events: Counter = field(default_factory=Counter)           # things done to documents (case_restored)
    doc_words: list[list[int]] = field(default_factory=list)   # kept documents' segment word counts
    fingerprints: list[np.ndarray] = field(default_factory=list)  # every document's (overlap reference)
    overlap: dict[str, Any] = field(default_factory=dict)      # the transcripts shared with another source

    @property
    def available_words(self) -> int:
        return sum(sum(d) for d in self.doc_words)


def build_corpus(cfg: CorpusConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Build ``train.txt``, ``dev.txt`` and ``manifest.json`` in ``out_dir``; return the manifest.
    One build at a time into ``out_dir``: hold its lock (``blalm corpus`` does, see the module docstring)."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    with atomic_dir(out_dir, keep=sorted(KEPT_ENTRIES), tag="staging") as staging:
        manifest = _build_into(cfg, staging, progress)
    return manifest


def _build_into(cfg: CorpusConfig, folder: Path, progress: bool) -> dict[str, Any]:
    start = time.time()
    work = folder / ".work"
    work.mkdir()
    data_dir = resolve_data_dir(cfg.data_dir)
    info = run_info(to_dict(cfg), cfg.seed)
    write_json_atomic(folder / "run_info.json", info)

    seen: set[bytes] = set()
    tallies: dict[str, SourceTally] = {}
    for name in processing_order(cfg.sources):
        tallies[name] = _spool_source(name, cfg.sources[name], cfg, data_dir, work / f"{name}.jsonl", seen,
                                      progress, tallies)
    del seen
    tallies = {name: tallies[name] for name in cfg.sources}
    _refuse_empty(tallies)

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

    train_words, dev_words, labelled = _write_splits(folder, work, tallies, train_pick, dev_pick)
    shutil.rmtree(work)

    sources = {name: _source_entry(cfg.sources[name], t, train_pick[name], dev_pick[name], train_quota[name],
                                   train_words[name], dev_words[name], labelled[name])
               for name, t in tallies.items()}
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
    write_json_atomic(folder / "manifest.json", manifest)
    return manifest


def _source_entry(src: SourceConfig, t: SourceTally, train_pick: dict[int, int], dev_pick: dict[int, int],
                  quota: int, words: int, dev_words: int, labelled: dict[str, Counter]) -> dict[str, Any]:
    picked = set(train_pick) | set(dev_pick)
    dropped = Counter(t.dropped)
    not_selected = len(t.doc_words) - len(picked)
    if not_selected:
        dropped["not_selected"] += not_selected
    entry: dict[str, Any] = {
        "kind": t.kind,
        "status": "ok" if t.files else "no input",
        "files": len(t.files),
        **source_licence(t.name, src.licence, t.files),
        "share": src.share,
        "docs_read": t.docs_read,
        "docs_train": len(train_pick),
        "docs_train_partial": sum(1 for i, k in train_pick.items() if k < len(t.doc_words[i])),
        "docs_dev": len(dev_pick),
        "dropped": dict(sorted(dropped.items())),
        "segments_dropped": dict(sorted(t.segment_drops.items())),
        "available_words": t.available_words,
        "quota_words": quota,
        "words": words,
        "dev_words": dev_words,
    }
    if t.events:
        entry["events"] = dict(sorted(t.events.items()))
    if t.overlap:
        entry["overlap"] = t.overlap
    for kind in LABEL_KINDS:
        if labelled.get(kind):
            entry[f"words_by_{kind}"] = dict(sorted(labelled[kind].items(), key=lambda kv: (-kv[1], kv[0])))
    assert t.docs_read == entry["docs_train"] + entry["docs_dev"] + sum(dropped.values()), t.name
    return entry


def processing_order(sources: dict[str, SourceConfig]) -> list[str]:
    """The order the sources are read in: config order, the sources with ``drop_overlap_with`` last
    (after the sources whose transcripts they are tested against)."""
    return ([n for n, s in sources.items() if not s.drop_overlap_with] +
            [n for n, s in sources.items() if s.drop_overlap_with])


def _refuse_empty(tallies: dict[str, SourceTally]) -> None:
    if any(t.available_words for t in tallies.values()):
        return
    parts = []
    for t in tallies.values():
        reasons = ", ".join(f"{k} {v:,}" for k, v in t.dropped.most_common(3)) or "nothing dropped"
        parts.append(f"{t.name}: {t.docs_read:,} documents read from {len(t.files)} files ({reasons})"
                     if t.files else f"{t.name}: no paths")
    raise BlalmError("no source yielded any words, so no corpus was written; " + "; ".join(parts) +
                     ". Check the sources' paths and filters (on_error = \"skip\" counts unreadable "
                     "documents as drops)")


def _spool_source(name: str, src: SourceConfig, cfg: CorpusConfig, data_dir: Path, spool: Path,
                  seen: set[bytes], progress: bool, done: dict[str, SourceTally]) -> SourceTally:
    tally = SourceTally(name=name, kind=src.kind)
    with spool.open("w", encoding="utf-8") as out:
        if not src.paths:
            return tally
        paths = expand_paths(src.paths, data_dir, where=f"source '{name}'")
        tally.files = paths
        is_reference = any(s.drop_overlap_with == name for s in cfg.sources.values())
        process = SourceProcessor(src.kind, resolve_filters(src.kind, src.filters), cfg.seed,
                                  fingerprints=is_reference or bool(src.drop_overlap_with))

        def documents(drops: Counter) -> Iterator[Document]:
            return iter_documents(paths, src.format, text_field=src.text_field, id_field=src.id_field,
                                  lines_per_document=src.lines_per_document, on_error=cfg.on_error, drops=drops,
                                  sample=src.sample_docs, sample_seed=f"{cfg.seed}:{name}")

        if process.needs_prepare:
            process.prepare(documents(Counter()))
        overlap = _Overlap(src.drop_overlap_with, done) if src.drop_overlap_with else None
        read_errors: Counter = Counter()
        bar = tqdm(desc=f"corpus {name}", unit=" docs", disable=not progress, leave=False)
        for result in _process_all(process, documents(read_errors), cfg.workers):
            bar.update()
            _spool_document(result, tally, out, seen if cfg.dedup else None, overlap, is_reference)
        # documents the reader could not parse (on_error = "skip") are drops too
        tally.docs_read += sum(read_errors.values())
        tally.dropped.update(read_errors)
        if overlap is not None:
            tally.overlap = overlap.summary()
            done[src.drop_overlap_with].overlap = {"with": name, "docs": len(overlap.matched),
                                                   "note": f"these transcripts are kept here and dropped from {name}"}
    return tally


class _Overlap:
    """The transcripts of one source that another (already read) source holds too."""

    def __init__(self, reference: str, done: dict[str, SourceTally]):
        self.reference = reference
        self.index = FingerprintIndex(done[reference].fingerprints)
        self.docs = 0
        self.words = 0
        self.matched: set[int] = set()

    def test(self, result: Processed) -> bool:
        if result.fingerprint is None:
            return False
        hits = self.index.matches(result.fingerprint)
        if hits:
            self.docs += 1
            self.words += sum(count_words(s) for s in result.segments)
            self.matched.update(hits)
        return bool(hits)

    def summary(self) -> dict[str, Any]:
        return {"with": self.reference, "docs": self.docs, "words": self.words,
                "docs_matched_there": len(self.matched),
                "note": f"transcripts that {self.reference} holds too, dropped here (reason 'overlap')"}


def _spool_document(result: Processed, tally: SourceTally, out, seen: set[bytes] | None,
                    overlap: _Overlap | None, keep_fingerprint: bool) -> None:
    """Count one processed document and spool its segments (unless dropped)."""
    tally.docs_read += 1
    tally.segment_drops.update(result.segment_drops)
    tally.events.update(result.events)
    if keep_fingerprint:
        tally.fingerprints.append(result.fingerprint if result.fingerprint is not None
                                  else np.zeros(0, dtype=np.uint64))
    if result.drop:
        tally.dropped[result.drop] += 1
        return
    if overlap is not None and overlap.test(result):
        tally.dropped["overlap"] += 1
        return
    roles = result.roles or [""] * len(result.segments)
    pairs = [(" ".join(s.split()), r) for s, r in zip(result.segments, roles)]  # one line each
    pairs = [(s, r) for s, r in pairs if s]
    if seen is not None:
        pairs = [(s, r) for s, r in pairs if _is_new(s, seen, tally.segment_drops)]
    if not pairs:
        tally.dropped["duplicate" if result.segments else "empty_after_filters"] += 1
        return
    out.write(json.dumps([[s for s, _ in pairs], [r for _, r in pairs] if result.roles else [],
                          result.labels], ensure_ascii=False) + "\n")
    tally.doc_words.append([count_words(s) for s, _ in pairs])


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


def _is_new(segment: str, seen: set[bytes], drops: Counter) -> bool:
    """Whether no source has had this exact segment yet (it is remembered); a repeat is a drop."""
    key = hashlib.blake2b(segment.encode("utf-8"), digest_size=12).digest()
    if key in seen:
        drops["duplicate"] += 1
        return False
    seen.add(key)
    return True


def _select_whole(doc_words: list[list[int]], quota: int, seed: str) -> dict[int, int]:
    """Dev split: whole documents only (a dev document is never cut), never over ``quota``."""
    whole = [[sum(d)] for d in doc_words]
    return {i: len(doc_words[i]) for i in budget.select(whole, quota, seed)}


def _write_splits(folder: Path, work: Path, tallies: dict[str, SourceTally],
                  train_pick: dict[str, dict[int, int]], dev_pick: dict[str, dict[int, int]]
                  ) -> tuple[Counter, Counter, dict[str, dict[str, Counter]]]:
    """Write train.txt and dev.txt from the spools; the words of each source in each split, and
    the training words by label (speaker role, age band, corpus) where a source has labels."""
    train_words: Counter = Counter({n: 0 for n in tallies})
    dev_words: Counter = Counter({n: 0 for n in tallies})
    labelled: dict[str, dict[str, Counter]] = {n: {k: Counter() for k in LABEL_KINDS} for n in tallies}
    with (folder / "train.txt").open("w", encoding="utf-8") as train, \
            (folder / "dev.txt").open("w", encoding="utf-8") as dev:
        for name in tallies:
            with (work / f"{name}.jsonl").open(encoding="utf-8") as spool:
                for i, line in enumerate(spool):
                    if i in train_pick[name]:
                        target, counter, take, in_train = train, train_words, train_pick[name][i], True
                    elif i in dev_pick[name]:
                        target, counter, take, in_train = dev, dev_words, dev_pick[name][i], False
                    else:
                        continue
                    segments, roles, labels = json.loads(line)
                    words = [count_words(seg) for seg in segments[:take]]
                    for seg in segments[:take]:
                        target.write(seg + "\n")
                    counter[name] += sum(words)
                    if in_train:
                        _count_labels(labelled[name], words, roles[:take], labels)
    return train_words, dev_words, labelled


def _count_labels(counts: dict[str, Counter], words: list[int], roles: list[str], labels: dict[str, str]) -> None:
    for w, role in zip(words, roles):
        counts["role"][role] += w
    for kind in ("age_band", "corpus"):
        if kind in labels:
            counts[kind][labels[kind]] += sum(words)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding things other than a corpus's."""
    check_replaceable_dir(out_dir, CORPUS_FILES | KEPT_ENTRIES | STALE_ENTRIES, "a corpus's")


def remove_killed_build(out_dir: Path, log: Callable[[str], None] = lambda msg: None) -> list[str]:
    """Clear away what a killed build of ``out_dir`` left beside it (its staging folder, the old
    corpus a swap was moving away), first moving back into ``out_dir`` the token caches it had
    moved into its staging folder. Only while holding ``out_dir``'s lock: another build's staging
    folder looks the same. Returns (and logs) what was removed."""
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.is_dir():
        for staging in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.staging-*"):
            _move_kept_entries(staging, out_dir)
    return clear_killed_write(out_dir, "build", log)


def _move_kept_entries(source: Path, target: Path) -> None:
    """Move the training stage's token caches of the old corpus into the new one (keyed by the
    files' hashes, they stay valid whatever the new corpus holds)."""
    for name in KEPT_ENTRIES:
        if (source / name).exists() and not (target / name).exists():
            os.replace(source / name, target / name)
