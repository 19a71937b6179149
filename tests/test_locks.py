"""One writer at a time into the output folder of ``blalm corpus`` and ``blalm tokenizer`` (issue 13),
through the real commands: a second writer is refused with one line naming the first one's pid and
host (the first finishes unharmed); a killed writer's lock is taken over by the next, which first
clears away what the killed one left beside the folder. Both folders are built beside their target
and swapped in whole, so their lock is ``.NAME.lock`` beside them (``blalm.lock.lock_beside``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blalm.atomic import remove_stale_temp

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CORPUS = REPO_ROOT / "configs" / "corpus" / "tiny.toml"   # 6k words, seconds to build
CORPUS_FILES = ("train.txt", "dev.txt", "manifest.json")   # manifest.json: its "sources" (no times)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _argv(verb: str, inputs: dict[str, Path], out: Path) -> list[str]:
    if verb == "corpus":
        return ["corpus", str(inputs["config"]), "--out", str(out), "--data-dir", str(inputs["data"]), "--quiet"]
    return ["tokenizer", str(inputs["corpus"]), "--vocab-size", "400", "--out", str(out), "--quiet"]


def _env(fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BLALM_FAULT", "BLALM_FAULT_LOG")}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    if fault:
        env["BLALM_FAULT"] = fault
    return env


def _blalm(argv: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blalm.cli", *argv], env=_env(fault), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def _files(folder: Path, names) -> dict[str, object]:
    return {name: json.loads((folder / name).read_text())["sources"] if name == "manifest.json"
            else (folder / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory) -> dict[str, Path]:
    """The corpus config, and a corpus and tokenizer built from it uninterrupted (the references)."""
    work = tmp_path_factory.mktemp("locks")
    inputs = {"data": data_dir, "config": TINY_CORPUS, "corpus": work / "corpus", "tokenizer": work / "tok"}
    for verb in ("corpus", "tokenizer"):
        done = _blalm(_argv(verb, inputs, inputs[verb]))
        assert done.returncode == 0, done.stderr[-2000:]
    return inputs


def _wait_until_locked(lock_file: Path, pid: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``lock_file`` names ``pid`` as its holder (the process holds the lock and is writing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(lock_file.read_text() or "{}").get("pid") == pid:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"the first writer ended (exit {proc.returncode}) without {lock_file} naming it: "
                        f"{proc.stderr.read()[-2000:]}")
        time.sleep(0.005)
    pytest.fail(f"{lock_file} never named pid {pid}")


@pytest.mark.parametrize("verb, files", [("corpus", CORPUS_FILES), ("tokenizer", TOKENIZER_FILES)])
def test_a_second_writer_into_the_same_out_is_refused_naming_the_first(inputs, tmp_path, verb, files):
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "blalm.cli", *_argv(verb, inputs, out)], env=_env(),
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_locked(tmp_path / ".out.lock", first.pid, first)
        first.send_signal(signal.SIGSTOP)              # the first holds the lock, mid-build
        second = _blalm(_argv(verb, inputs, out))
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert second.stderr.strip() == (
        f"blalm {verb}: error: {out} is in use: pid {first.pid} on host {socket.gethostname()} "
        f"(since {json.loads((tmp_path / '.out.lock').read_text())['since']}) is writing this {verb}. "
        f"Wait for it to finish, or write to another --out")
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert _files(out, files) == _files(inputs[verb], files)           # the first finished unharmed
    assert (tmp_path / ".out.lock").read_text() == ""                  # and released its lock
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_a_killed_tokenizer_leaves_a_folder_beside_out_that_the_next_run_clears(inputs, tmp_path):
    out = tmp_path / "tok"
    shutil.copytree(inputs["tokenizer"], out)                          # a tokenizer is being replaced
    killed = _blalm(_argv("tokenizer", inputs, out), fault="atomic_dir_built")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (built,) = [p.name for p in tmp_path.glob(".tok.tmp-*")]          # built, not yet moved into place
    dead = json.loads((tmp_path / ".tok.lock").read_text())["pid"]    # the lock file still names the killed one
    again = _blalm(_argv("tokenizer", inputs, out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{out}: took over the lock of pid {dead} on host {socket.gethostname()}" in again.stderr
    assert f"{out}: cleared away what a killed run left beside it: {built}" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tok.lock", "tok"]
    assert _files(out, TOKENIZER_FILES) == _files(inputs["tokenizer"], TOKENIZER_FILES)


def test_a_killed_corpus_rebuild_is_cleared_and_the_token_caches_it_was_moving_come_back(inputs, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(inputs["corpus"], out)
    (out / ".tokens" / "abc").mkdir(parents=True)                      # the training stage's token cache
    (out / ".tokens" / "abc" / "train.u16").write_bytes(b"\x01\x02")
    killed = _blalm(_argv("corpus", inputs, out), fault="atomic_file_written@2")   # manifest written, not renamed
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (staging,) = tmp_path.glob(".corpus.staging-*")
    dead = json.loads((tmp_path / ".corpus.lock").read_text())["pid"]
    os.replace(out / ".tokens", staging / ".tokens")   # where a kill between moving the caches and the swap leaves them
    again = _blalm(_argv("corpus", inputs, out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"took over the lock of pid {dead}" in again.stderr
    assert f"{out}: cleared away what a killed build left beside it: {staging.name}" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".corpus.lock", "corpus"]
    assert (out / ".tokens" / "abc" / "train.u16").read_bytes() == b"\x01\x02"
    assert _files(out, CORPUS_FILES) == _files(inputs["corpus"], CORPUS_FILES)


def test_remove_stale_temp_takes_only_one_outputs_leftovers_and_puts_a_swapped_away_folder_back(tmp_path):
    for name in (".a.tmp-0123456789ab", ".a.staging-0123456789ab", ".b.tmp-0123456789ab", ".a.b.tmp-0123456789ab"):
        (tmp_path / name).mkdir()
    (tmp_path / ".a.old-0123456789ab").mkdir()          # the swap killed between its two renames: no 'a'
    (tmp_path / ".a.old-0123456789ab" / "train.txt").write_text("the old corpus\n")
    for name in (".a.x1y2z3.tmp", ".a.lock", ".a.txt.x1y2z3.tmp"):
        (tmp_path / name).write_text("")
    removed = remove_stale_temp(tmp_path, "a")
    assert sorted(removed) == [".a.old-0123456789ab (moved back to a: the swap that replaced it was killed)",
                               ".a.staging-0123456789ab", ".a.tmp-0123456789ab", ".a.x1y2z3.tmp"]
    assert (tmp_path / "a" / "train.txt").read_text() == "the old corpus\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.b.tmp-0123456789ab", ".a.lock", ".a.txt.x1y2z3.tmp",
                                                          ".b.tmp-0123456789ab", "a"]   # others' are kept
    (tmp_path / ".a.old-ba9876543210").mkdir()          # a swap killed while removing the old folder
    assert remove_stale_temp(tmp_path, "a") == [".a.old-ba9876543210"] and (tmp_path / "a").is_dir()
