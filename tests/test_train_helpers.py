"""Shared pieces of the training tests (test_train*.py): a small real corpus + tokenizer, built
once per test process, and the tiny training config the tests start from.

The corpus is a slice of the demo corpus (``demo_corpus`` fixture, built from ../shared/data by
the corpus stage) when the corpus stage's source filters are installed, else of the held-out
text in ``../shared/data/dev`` (CHILDES utterances and Wikipedia sentences); the tokenizer is a
real byte-level BPE of 500 ids trained on it by ``blalm.tokenizer.train.train_tokenizer``.
"""

from __future__ import annotations

import importlib.util
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "demo.toml"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]   # 2 gloo ranks
TRAIN_WORDS = 2400      # words of train.txt in the slice: ~3.7k tokens -> 14 steps of 8 x 32 tokens per epoch
DEV_WORDS = 700

_built: dict[str, tuple[Path, Path]] = {}


def _slice_lines(lines, limit: int) -> list[str]:
    out, words = [], 0
    for line in lines:
        line = " ".join(line.split())
        if not line:
            continue
        n = len(line.split())
        if words + n > limit:
            break
        out.append(line)
        words += n
    return out


def _dev_source_lines(data_dir: Path) -> tuple[list[str], list[str]]:
    """Lines of the held-out CHILDES and Wikipedia text, interleaved by document."""
    docs = []
    for name in ("childes", "wikipedia"):
        with lzma.open(data_dir / "dev" / f"{name}-000.jsonl.xz", "rt", encoding="utf-8") as fh:
            for i, raw in enumerate(fh):
                if i >= 6:
                    break
                docs.append([ln for ln in json.loads(raw)["text"].split("\n") if ln.strip()])
    train_docs, dev_docs = docs[0::2] + docs[1::2][:-1], docs[1::2][-1:]
    return [ln for d in train_docs for ln in d], [ln for d in dev_docs for ln in d]


def write_corpus(folder: Path, train_lines: list[str], dev_lines: list[str], budget: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("".join(ln + "\n" for ln in train_lines), encoding="utf-8")
    (folder / "dev.txt").write_text("".join(ln + "\n" for ln in dev_lines), encoding="utf-8")
    train_words = sum(len(ln.split()) for ln in train_lines)
    dev_words = sum(len(ln.split()) for ln in dev_lines)
    manifest = {"budget_words": budget, "train_words": train_words, "dev_words": dev_words,
                "budget_used": train_words / budget, "seed": 0, "sources": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return folder


def build_train_data(request, tmp_path_factory, data_dir: Path) -> tuple[Path, Path]:
    """(corpus_dir, tokenizer_dir), built once per process."""
    if "data" in _built:
        return _built["data"]
    from blalm.tokenizer.train import read_lines, train_tokenizer

    root = tmp_path_factory.mktemp("train_data")
    if importlib.util.find_spec("blalm.data.sources") is not None:
        demo = request.getfixturevalue("demo_corpus")
        train_src, dev_src = list(read_lines(demo / "train.txt")), list(read_lines(demo / "dev.txt"))
    else:
        train_src, dev_src = _dev_source_lines(data_dir)
    corpus = write_corpus(root / "corpus", _slice_lines(train_src, TRAIN_WORDS), _slice_lines(dev_src, DEV_WORDS),
                          budget=TRAIN_WORDS)
    train_tokenizer(corpus, root / "tokenizer", vocab_size=500, show_progress=False)
    _built["data"] = (corpus, root / "tokenizer")
    return _built["data"]


@pytest.fixture(scope="session")
def train_data(request, tmp_path_factory, data_dir) -> tuple[Path, Path]:
    return build_train_data(request, tmp_path_factory, data_dir)




def tiny_overrides(corpus: Path, tokenizer: Path, **extra) -> list[str]:
    """--set overrides turning configs/train/demo.toml into a tiny CPU run on the test corpus:
    hidden 32, 2 layers, context 32, global batch 8 (micro-batch 4 x 2 accumulation)."""
    values = {
        "corpus_dir": str(corpus), "tokenizer_dir": str(tokenizer),
        "model.hidden_size": 32, "model.intermediate_size": 64, "model.num_layers": 2, "model.num_heads": 2,
        "model.chunk_size": 16, "model.swa_window": 8,
        "context_length": 32, "global_batch": 8, "micro_batch": 4, "epochs": 2, "max_steps": 0,
        "lr": 3e-3, "milestone_scale": 0.0005, "eval_max_blocks": 8, "log_every": 1,
        "progress": False, "device": "cpu", "seed": 1,
    }
    values.update(extra)
    return [f"{k}={json.dumps(v) if isinstance(v, str) else _toml(v)}" for k, v in values.items()]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def tiny_config(corpus: Path, tokenizer: Path, **extra):
    from blalm.train.config import load_train_config

    return load_train_config(DEMO_TRAIN_CONFIG, tiny_overrides(corpus, tokenizer, **extra))


def run_train_subprocess(args: list[str], env_extra: dict[str, str] | None = None, timeout: float = 120,
                         launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python -m blalm.train ARGS`` (or under ``launcher``) in a fresh process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = (launcher or [sys.executable]) + ["-m", "blalm.train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
