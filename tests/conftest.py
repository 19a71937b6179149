"""Shared fixtures: the real data in ../shared/data (or $BLALM_DATA_DIR)."""

from __future__ import annotations

import fcntl
import json
import lzma
import os
import shutil
import subprocess
import sys
import uuid
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


OFFICIAL_PINS = ("scipy==1.15.2", "pandas==2.2.3", "statsmodels==0.14.4", "patsy==1.0.1",
                 "python-dateutil==2.9.0.post0", "pytz==2025.2", "tzdata==2025.2", "six==1.17.0")
"""What the official pipeline's text tasks and collate_preds.py import beyond torch and transformers,
at its requirements.txt's pins."""


def pinned_packages(name: str, pins: tuple[str, ...], why: str) -> Path:
    """``pins`` installed once into ``.cache/NAME`` (git-ignored) with ``pip --target --no-deps`` (torch,
    numpy and the rest come from this environment), one installer at a time (xdist workers, parallel
    runs); a later call with the same pins reuses the folder. The folder goes first on a subprocess's
    ``sys.path``, never on this process's."""
    target = REPO_ROOT / ".cache" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = target / ".blalm-pins"
        if marker.is_file() and marker.read_text() == "\n".join(pins):
            return target
        tmp = target.with_name(f".{name}-{uuid.uuid4().hex[:8]}")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--target", str(tmp), *pins]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(f"could not install {why} into {target} from PyPI; the test needs PyPI once, later runs "
                        f"reuse the folder. Command: {' '.join(cmd)}\npip said:\n{(proc.stdout + proc.stderr)[-2000:]}")
        (tmp / ".blalm-pins").write_text("\n".join(pins))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return target


@pytest.fixture(scope="session")
def official_deps() -> Path:
    """The official pipeline's extra packages (scipy, pandas, statsmodels ...), for running its code."""
    return pinned_packages("official-deps", OFFICIAL_PINS, "the official pipeline's pinned dependencies")


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
