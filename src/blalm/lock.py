"""An exclusive lock on an output folder, held while a process writes it: a run folder (``blalm
train``, ``finetune``, ``sweep``: ``RUN_DIR/.lock``), a corpus, a tokenizer.

``FOLDER/.lock`` is locked with ``flock(LOCK_EX | LOCK_NB)`` and, once held, holds one JSON line:
the holder's pid, host and start time. A second writer finds the lock taken and is refused with a
:class:`RunLocked` error naming that pid and host. The kernel drops a process's flock when the
process ends, however it ends (``kill -9`` and out-of-memory kills included), so a lock is never
left behind by a dead process: the next writer takes it over and says whose it was (the file still
names the dead holder; a clean exit empties it). On NFS, ``flock`` locks across hosts too (Linux
emulates it with byte-range locks). The file is never deleted (deleting a lock file lets two
processes lock two different files); it is opened close-on-exec, so processes started with
``subprocess`` do not inherit the lock (processes forked without exec, such as the corpus
builder's workers, share it until they end).

A folder that is built beside its target and moved into place whole (``blalm corpus``, ``blalm
tokenizer``: :func:`blalm.atomic.replace_dir`) cannot hold its own lock: the lock file would move
away with the old folder at the swap, and a second writer would lock the new folder's file.
:func:`lock_beside` locks ``.NAME.lock`` beside it instead, a file that stays put.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from blalm.errors import BlalmError

LOCK_FILE = ".lock"


class RunLocked(BlalmError):
    """Another process holds the folder's lock."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(folder: Path, lock_file: Path | None = None) -> dict[str, Any] | None:
    """What the lock file of ``folder`` (``lock_file`` when given) says about its (last) holder, or None."""
    try:
        text = Path(lock_file or Path(folder) / LOCK_FILE).read_text(encoding="utf-8").strip()
        return json.loads(text) if text else None
    except (OSError, json.JSONDecodeError):
        return None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not written its pid yet)"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since', '?')})"


class RunLock:
    """``with RunLock(folder, what="training run"):`` the block runs holding ``folder``'s lock.

    ``log`` is told when a stale lock (of a process that ended without releasing it) is taken over.
    ``lock_file``: the file to lock instead of ``folder/.lock`` (:func:`lock_beside`); messages name ``folder``."""

    def __init__(self, folder: Path, what: str = "run", log: Callable[[str], None] | None = None,
                 lock_file: Path | None = None) -> None:
        self.folder = Path(folder)
        self.what = what
        self.log = log or (lambda _msg: None)
        self.path = Path(lock_file) if lock_file is not None else self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(self._refusal()) from None
        except BaseException:
            os.close(fd)
            raise
        previous = read_holder(self.folder, self.path)
        if previous:
            self.log(f"{self.folder}: took over the lock of {_describe(previous)}, which ended without "
                     f"releasing it (killed?)")
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _refusal(self) -> str:
        holder = read_holder(self.folder, self.path)
        msg = f"{self.folder} is in use: {_describe(holder)} is writing this {self.what}"
        if holder and holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", -1))):
            msg += (" - that process has ended, but a process it started still holds the lock "
                    f"({self.path}); end that process")
        return msg + ". Wait for it to finish, or write to another --out"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)      # a clean exit: no holder to report
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_beside(out_dir: Path, what: str, log: Callable[[str], None] | None = None) -> RunLock:
    """The lock of an output folder that is built beside it and moved into place whole (see the module
    docstring): the file ``.NAME.lock`` in ``out_dir``'s parent folder, never moved or deleted."""
    out_dir = Path(os.path.abspath(out_dir))
    return RunLock(out_dir, what=what, log=log, lock_file=out_dir.parent / f".{out_dir.name}.lock")
