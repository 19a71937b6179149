"""Writing outputs so that a crash leaves the old version or the new one, never half of one (and
reading them back)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from blalm.errors import BlalmError
from blalm.faults import fault_point


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fallback_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _fallback_umask()


def process_umask() -> int:
    """This process's umask, read without changing it (``/proc/self/status`` on Linux; elsewhere
    the one it had when blalm was imported)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_IMPORT


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0666 less the umask (0644 under the
    usual umask 022). Temporary-file helpers create 0600 files; what we publish gets this mode."""
    return 0o666 & ~process_umask()


def write_safetensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` (CPU, contiguous copies), then the usual file mode
    (:func:`file_mode`; safetensors itself leaves its files 0600). Not atomic by itself: write into
    a folder that is moved into place (:func:`atomic_dir`, the checkpoint writer)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    os.chmod(path, file_mode())


def read_json(path: Path) -> Any:
    """The JSON that ``path`` holds, or None when it is missing or not (yet) valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        fault_point("atomic_file_written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def new_sibling_dir(target: Path, tag: str) -> Path:
    """A new empty folder beside ``target`` (same file system, so it can be renamed onto it);
    made with ``os.mkdir`` so that it gets the usual permissions, not mkdtemp's 0700."""
    path = target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    return path


def replace_dir(new: Path, target: Path) -> None:
    """Move folder ``new`` to ``target``; an existing ``target`` is removed only once ``new`` is in place."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


SIBLING_TAGS = ("tmp", "staging", "old")   # new_sibling_dir's folders: atomic_dir's, a staging build's, replace_dir's


def _temp_target(entry: str, name: str | None) -> str | None:
    """The name of the file or folder whose killed write left ``entry`` (``.NAME.*.tmp``, ``.NAME.tmp``,
    ``.NAME.TAG-<id>`` for a tag of :data:`SIBLING_TAGS`), or None when ``entry`` is none of those
    (with ``name``: none of ``name``'s)."""
    if name is None:
        if entry.startswith(".") and (entry.endswith(".tmp") or any(f".{t}-" in entry for t in SIBLING_TAGS)):
            return next((entry[1:].rsplit(f".{t}-", 1)[0] for t in SIBLING_TAGS if f".{t}-" in entry),
                        entry[1:-4].rsplit(".", 1)[0])
        return None
    rest = entry[len(name) + 2:] if entry.startswith(f".{name}.") else ""
    if rest == "tmp" or (rest.endswith(".tmp") and "." not in rest[:-4]) or \
            any(rest.startswith(f"{t}-") and "." not in rest for t in SIBLING_TAGS):
        return name
    return None


def remove_stale_temp(folder: Path, name: str | None = None) -> list[str]:
    """Remove what a killed :func:`write_text_atomic`, :func:`atomic_dir`, :func:`replace_dir` or a
    staging build (:func:`new_sibling_dir`) left in ``folder`` (``.NAME.*.tmp`` files, ``.NAME.tmp-*``,
    ``.NAME.staging-*`` and ``.NAME.old-*`` folders); with ``name``, only the leftovers of
    ``folder/name``. A kill between replace_dir's two renames leaves ``NAME`` missing and its previous
    version in ``.NAME.old-*``: that one is moved back, not removed. Only while holding the lock of
    what is written (:mod:`blalm.lock`): another writer's temporary files look the same."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        newest_first = sorted(folder.iterdir(), key=lambda e: e.lstat().st_mtime_ns, reverse=True)
        for entry in newest_first:
            target = _temp_target(entry.name, name)
            if target is None:
                continue
            if ".old-" in entry.name and entry.is_dir() and not (folder / target).exists():
                os.replace(entry, folder / target)
                removed.append(f"{entry.name} (moved back to {target}: the swap that replaced it was killed)")
                continue
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def clear_killed_write(out_dir: Path, what: str, log: Callable[[str], None] = lambda msg: None) -> list[str]:
    """Clear away what a killed writer of the folder ``out_dir`` left beside it (:func:`remove_stale_temp`
    of its name) and log it, naming the writer (``what``: "build", "run"). Only while holding
    ``out_dir``'s lock. Returns what was removed."""
    out_dir = Path(os.path.abspath(Path(out_dir).expanduser()))
    removed = remove_stale_temp(out_dir.parent, out_dir.name)
    if removed:
        log(f"{out_dir}: cleared away what a killed {what} left beside it: {', '.join(removed)}")
    return removed


def check_replaceable_dir(out_dir: Path, allowed: Iterable[str], holds: str) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding entries other than ``allowed`` (what
    a rebuild replaces: ``holds`` names it, e.g. "a corpus's")."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BlalmError(f"--out {out_dir} exists and is not a folder; give a folder path")
    if out_dir.is_dir():
        allowed = set(allowed)
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in allowed)
        if others:
            raise BlalmError(f"--out {out_dir}: the folder holds files other than {holds} "
                             f"({', '.join(others[:5])}), which a rebuild would replace; choose an empty "
                             f"or new folder, or the folder of an earlier one")


@contextlib.contextmanager
def atomic_dir(target: Path, keep: Iterable[str] = (), tag: str = "tmp") -> Iterator[Path]:
    """Build a folder in a temporary sibling (``.NAME.<tag>-*``) and move it onto ``target`` only if
    the block succeeds; the entries named in ``keep`` that ``target`` holds (and the new folder
    lacks) move into the new folder first, and back if the swap fails::

        with atomic_dir(out_dir) as tmp:
            write files into tmp
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_sibling_dir(target, tag)
    moved: list[str] = []
    try:
        yield tmp
        fault_point("atomic_dir_built")
        for name in keep:
            if (target / name).exists() and not (tmp / name).exists():
                os.replace(target / name, tmp / name)
                moved.append(name)
        replace_dir(tmp, target)
    except BaseException:
        for name in moved:
            if not (target / name).exists():
                os.replace(tmp / name, target / name)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
