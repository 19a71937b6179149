"""The training data: the corpus tokenized once, cut into fixed blocks, shuffled per epoch.

**Tokenization and cache.** ``train.txt`` and ``dev.txt`` are tokenized line by line (a line is a
document or utterance; blank lines are skipped) with the run's tokenizer, with the EOS token
(``<|eos|>``) appended after every line, and the ids are concatenated into one stream per split
(the paper's stream concatenation: no padding, no truncation of documents). Each stream is a
little-endian ``uint16`` file, read back memory-mapped with numpy; a vocabulary over 65,535 ids
is refused. The cache lives in ``CORPUS_DIR/.tokens/<key>/`` (or ``RUN_DIR/tokens/<key>/`` when
the corpus folder is read-only or ``token_cache = "run"``), where ``key`` is a hash of the bytes
of ``tokenizer.json``, ``train.txt`` and ``dev.txt``: any change to them makes a new cache, and
a cache is built in a temporary folder and renamed into place, so it is either complete or absent.
``meta.json`` records the size and SHA-256 of every file of the cache (and its own, ``meta_sha256``); a cache that does not match
them (cut short, changed, or its meta.json unreadable) is set aside as ``.damaged-KEY-<id>`` (kept)
and built again, with a message. Fault point (:mod:`blalm.faults`): ``token_cache_written``.

**Words per token.** ``meta.json`` records the training stream's tokens (EOS included) and
whitespace words. The trainer converts tokens seen into words seen with the corpus's ratio
``train_words / train_tokens`` (``train_words`` from the corpus manifest when there is one,
else the words counted here), so one epoch of blocks counts as (almost exactly) the corpus's
words: the words the model has seen, in the BabyLM sense.

**Blocks.** The stream of ``N`` tokens gives ``N // context_length`` blocks (the last partial
block is dropped); a block is both input and label (the model shifts). Each epoch visits the
blocks in a permutation that is a pure function of ``(seed, epoch)`` (numpy's PCG64 seeded with
both), and an optimizer step takes the next ``global_batch`` of them (a last partial global batch
is dropped), so the data position of a run is fully given by its step number.

**Bytes per token.** ``token_bytes.u16`` holds, for every token id, how many bytes of text it
stands for (byte-level BPE: one byte per symbol; EOS counts 1 byte, the newline that ends the
line; BOS and PAD 0), for the validation's bits per byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from blalm.atomic import fsync_path
from blalm.errors import BlalmError, InputError
from blalm.faults import fault_point
from blalm.run.checkpoint import json_digest, sha256_file
from blalm.run.layout import DAMAGED_PREFIX

TOKEN_DTYPE = np.dtype("<u2")
MAX_VOCAB = int(np.iinfo(TOKEN_DTYPE).max) + 1   # 65536 ids fit in uint16
CACHE_VERSION = "blalm-tokens-v1"
ENCODE_BATCH_LINES = 2000
META_CHECKSUM = "meta_sha256"


@dataclass
class TokenData:
    """A tokenized corpus (memory-mapped streams) and what is known about it."""

    folder: Path
    key: str
    train: np.ndarray          # uint16 stream, EOS after every line
    dev: np.ndarray
    token_bytes: np.ndarray    # (vocab,) bytes of text per token id
    meta: dict[str, Any]

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self.meta["eos_id"])


def cache_key(corpus_dir: Path, tokenizer_dir: Path) -> tuple[str, dict[str, str]]:
    """The cache key (hex) from the bytes of tokenizer.json, train.txt and dev.txt, and the three hashes."""
    tok = Path(tokenizer_dir) / "tokenizer.json"
    if not tok.is_file():
        raise InputError(f"{tokenizer_dir}: no tokenizer.json here; train one with "
                         f"'blalm tokenizer CORPUS_DIR --out {tokenizer_dir}'")
    hashes = {"tokenizer": sha256_file(tok)}
    for split in ("train", "dev"):
        path = Path(corpus_dir) / f"{split}.txt"
        if not path.is_file():
            raise InputError(f"{path}: not found; build the corpus with 'blalm corpus CONFIG --out {corpus_dir}'")
        hashes[split] = sha256_file(path)
    h = hashlib.sha256(CACHE_VERSION.encode())
    for name in ("tokenizer", "train", "dev"):
        h.update(f"{name}:{hashes[name]};".encode())
    return h.hexdigest()[:20], hashes


def cache_root_for(corpus_dir: Path, run_dir: Path, where: str) -> Path:
    """``CORPUS_DIR/.tokens`` when ``where == "corpus"`` and the corpus folder is writable, else ``RUN_DIR/tokens``."""
    if where == "corpus" and os.access(corpus_dir, os.W_OK):
        return Path(corpus_dir) / ".tokens"
    return Path(run_dir) / "tokens"


def find_cache(roots: list[Path], key: str) -> Path | None:
    for root in roots:
        folder = root / key
        if (folder / "meta.json").is_file():
            return folder
    return None


def prepare_tokens(corpus_dir: Path, tokenizer_dir: Path, cache_root: Path,
                   other_roots: tuple[Path, ...] = (), progress: bool = False, verify: bool = True,
                   log: Callable[[str], None] = print) -> TokenData:
    """The tokenized corpus, from the cache when a cache for the same bytes exists (under
    ``cache_root`` or one of ``other_roots``) and verifies, else tokenized now into ``cache_root``."""
    corpus_dir, tokenizer_dir = Path(corpus_dir), Path(tokenizer_dir)
    key, hashes = cache_key(corpus_dir, tokenizer_dir)
    folder = find_cache([Path(cache_root), *map(Path, other_roots)], key)
    if folder is not None and verify:
        problem = cache_problem(folder)
        if problem:
            moved = folder.with_name(f"{DAMAGED_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
            with contextlib.suppress(FileNotFoundError):   # another process set it aside first
                os.replace(folder, moved)
            log(f"token cache {folder}: {problem}; set aside as {moved.name}, tokenizing the corpus again")
            folder = None
    if folder is None:
        folder = build_cache(corpus_dir, tokenizer_dir, Path(cache_root) / key, key, hashes, progress)
    return open_cache(folder)


def cache_problem(folder: Path) -> str | None:
    """What is wrong with a token cache folder (None when nothing): meta.json, and every file's
    size and SHA-256 as meta.json records them (caches written before that: the stream sizes)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        files = meta.get("files") or {f"{split}.u16": {"bytes": 2 * int(meta[f"{split}_tokens"])}
                                      for split in ("train", "dev")}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"meta.json is not readable ({exc})"
    if META_CHECKSUM in meta and meta[META_CHECKSUM] != json_digest(meta, META_CHECKSUM):
        return f"meta.json does not match its {META_CHECKSUM} (changed after it was written)"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size:,} bytes, {expected['bytes']:,} were written"
        if "sha256" in expected and sha256_file(path) != expected["sha256"]:
            return f"{name}: SHA-256 differs from the one recorded when it was written"
    return None


def open_cache(folder: Path) -> TokenData:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return TokenData(folder=folder, key=meta["key"], meta=meta,
                     train=_memmap(folder / "train.u16"), dev=_memmap(folder / "dev.u16"),
                     token_bytes=np.fromfile(folder / "token_bytes.u16", dtype=TOKEN_DTYPE))


def _memmap(path: Path) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


def build_cache(corpus_dir: Path, tokenizer_dir: Path, folder: Path, key: str, hashes: dict[str, str],
                progress: bool = False) -> Path:
    """Tokenize train.txt and dev.txt into ``folder`` (built beside it, renamed into place)."""
    from blalm.tokenizer.train import batched, load_tokenizer, read_lines

    tokenizer = load_tokenizer(tokenizer_dir)
    backend = tokenizer.backend_tokenizer
    vocab_size = backend.get_vocab_size()
    if vocab_size > MAX_VOCAB:
        raise BlalmError(f"{tokenizer_dir}: vocabulary of {vocab_size:,} ids does not fit the uint16 token "
                         f"cache (at most {MAX_VOCAB:,}); train a tokenizer with --vocab-size <= {MAX_VOCAB}")
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise InputError(f"{tokenizer_dir}: the tokenizer has no EOS token; train it with 'blalm tokenizer'")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:12]}")
    tmp.mkdir()
    try:
        stats = {}
        for split in ("train", "dev"):
            stats[split] = _encode_file(backend, corpus_dir / f"{split}.txt", tmp / f"{split}.u16", eos_id,
                                        batched, read_lines, progress)
        table = token_byte_lengths(tokenizer, vocab_size)
        table.astype(TOKEN_DTYPE).tofile(tmp / "token_bytes.u16")
        meta = {"key": key, "version": CACHE_VERSION, "hashes": hashes,
                "corpus_dir": str(corpus_dir.resolve()), "tokenizer_dir": str(tokenizer_dir.resolve()),
                "vocab_size": vocab_size, "eos_id": eos_id, "bos_id": tokenizer.bos_token_id,
                "pad_id": tokenizer.pad_token_id,
                **{f"{split}_{k}": v for split, s in stats.items() for k, v in s.items()}}
        meta["files"] = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(tmp.iterdir())}
        meta[META_CHECKSUM] = json_digest(meta, META_CHECKSUM)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        for name in os.listdir(tmp):
            fsync_path(tmp / name)
        fault_point("token_cache_written")
        try:
            os.replace(tmp, folder)
        except OSError:   # another process built the same cache meanwhile
            if not (folder / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _encode_file(backend, path: Path, out: Path, eos_id: int, batched, read_lines, progress: bool) -> dict[str, int]:
    from tqdm import tqdm

    lines = words = tokens = nbytes = 0
    with open(out, "wb") as fh:
        for batch in tqdm(batched((ln for ln in read_lines(path) if ln.strip()), ENCODE_BATCH_LINES),
                          desc=f"tokenize {path.name}", unit=" batches", disable=not progress, leave=False):
            encodings = backend.encode_batch(batch, add_special_tokens=False)
            ids = [i for enc in encodings for i in (*enc.ids, eos_id)]
            np.asarray(ids, dtype=TOKEN_DTYPE).tofile(fh)
            lines += len(batch)
            words += sum(len(line.split()) for line in batch)
            nbytes += sum(len(line.encode("utf-8")) + 1 for line in batch)   # + the newline (EOS)
            tokens += len(ids)
    return {"lines": lines, "words": words, "tokens": tokens, "bytes": nbytes}


def token_byte_lengths(tokenizer, vocab_size: int) -> np.ndarray:
    """Bytes of text per token id: byte-level BPE symbols are one byte each; EOS 1 (the newline
    it replaces), the other special tokens 0."""
    table = np.zeros(vocab_size, dtype=np.int64)
    special = set(tokenizer.all_special_ids)
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(vocab_size)))):
        table[i] = 0 if i in special or token is None else len(token)
    if tokenizer.eos_token_id is not None:
        table[tokenizer.eos_token_id] = 1
    return table




# ----------------------------------------------------------------------------------------------
# blocks and epochs


def num_blocks(stream: np.ndarray, context_length: int) -> int:
    return len(stream) // context_length


def blocks_view(stream: np.ndarray, context_length: int) -> np.ndarray:
    """``(num_blocks, context_length)`` view of the stream (the last partial block dropped)."""
    n = num_blocks(stream, context_length)
    return stream[: n * context_length].reshape(n, context_length)


def batch_indices(perm: np.ndarray, step_in_epoch: int, global_batch: int, rank: int = 0,
                  world_size: int = 1) -> np.ndarray:
    """Block indices of this rank's share of the global batch of step ``step_in_epoch``: the global
    batch is ``perm[s*G:(s+1)*G]`` and rank ``r`` takes its ``r``-th contiguous slice of ``G / world``."""
    start = step_in_epoch * global_batch
    chunk = global_batch // world_size
    return perm[start + rank * chunk: start + (rank + 1) * chunk]
