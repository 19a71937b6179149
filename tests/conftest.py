"""Shared fixtures: the real data in ../shared/data (or $BLALM_DATA_DIR)."""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path

# The suite runs one pytest worker per core (make test: -n 2); a second torch thread per worker
# only adds waiting on tiny models. Set before torch is imported (subprocesses inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from blalm.data.config import default_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


def jsonl_text_lines(path: Path, n: int) -> list[str]:
    """The first ``n`` non-empty text lines of a JSONL.xz file of the shared data (documents split at newlines)."""
    out: list[str] = []
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        for raw in fh:
            out.extend(line for line in json.loads(raw)["text"].split("\n") if line.strip())
            if len(out) >= n:
                break
    return out[:n]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Torch on one CPU thread in every test, whatever OMP_NUM_THREADS said (subprocesses get it from
    the environment above): tiny models are all per-op overhead, a second thread's spin-waits cost
    more than the work on a busy 2-core machine, and bit-identity across processes wants one thread
    count everywhere."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = default_data_dir()
    if not (path / "train").is_dir():
        pytest.fail(f"the project data is missing: expected {path}/train (set BLALM_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory, data_dir) -> Path:
    """The demo corpus at a 200k-word budget, built once per test session: under xdist one worker
    builds it into the run's shared temporary folder while the others wait for it (a file lock)."""
    import fcntl

    from blalm.config import load_config
    from blalm.data.config import CorpusConfig
    from blalm.data.corpus import build_corpus

    def build(out: Path) -> Path:
        cfg = load_config(CorpusConfig, REPO_ROOT / "configs" / "corpus" / "demo.toml",
                          ["budget_words=200000", "dev_words=10000", f"data_dir={str(data_dir)!r}"])
        build_corpus(cfg, out, progress=False)
        return out

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp("demo_corpus"))
    shared = tmp_path_factory.getbasetemp().parent       # this run's folder, above every worker's own
    out = shared / "demo_corpus"
    with open(shared / "demo_corpus.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "manifest.json").is_file():
            os.replace(build(tmp_path_factory.mktemp("demo_corpus")), out)
    return out
