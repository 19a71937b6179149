"""Resuming a run: the same settings, and the newest checkpoint that verifies.

:func:`choose_checkpoint` looks at the checkpoints newest first (by step, a folder whose state.json
cannot be read counting as the newest) and takes the first one that verifies
(:func:`blalm.run.checkpoint.verify_checkpoint`) and holds the files a resume needs (the optimizer
state). Each newer one is skipped with the reason, and set aside as ``.damaged-NAME-<id>`` (kept,
never read again; the resumed run writes that checkpoint anew); ``latest`` is pointed at the one
chosen, once the stage's own checks of it have passed. When checkpoints exist but none can be
resumed from, or the stage refuses the one chosen, the run is refused (nothing is moved or
overwritten) with every reason. A run whose chosen checkpoint is its final one is complete only
because that checkpoint verified.

:func:`check_same_settings` refuses to resume under settings that change the computation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from blalm.errors import BlalmError, InputError
from blalm.run import checkpoint as ckpt
from blalm.run.layout import CONFIG_FILE, LATEST_FILE, OPTIMIZER_FILE, RUN_INFO_FILE, STATE_FILE


@dataclass
class ResumePoint:
    """Where a run resumes: ``path``/``state`` of the checkpoint (None: a fresh start), the
    checkpoints ``skipped`` (name, reason, where it was set aside), and whether this process has
    ``verified`` every file of ``path`` (then loading need not hash them again)."""

    path: Path | None = None
    state: dict[str, Any] | None = None
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    verified: bool = False

    @property
    def name(self) -> str | None:
        return self.path.name if self.path is not None else None


def _newest_first(root: Path) -> list[Path]:
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []

    def order(folder: Path) -> tuple[int, int, str]:
        try:
            return (0, -ckpt.read_state(folder)["step"], folder.name)
        except ckpt.DamagedCheckpoint:
            return (-1, 0, folder.name)   # unreadable state: maybe the newest; checked first
    return sorted(folders, key=order)


def choose_checkpoint(root: Path, required: Iterable[str] = (OPTIMIZER_FILE,),
                      log: Callable[[str], None] = print,
                      check: Callable[[Path, dict[str, Any]], None] | None = None) -> ResumePoint:
    """The newest checkpoint under ``root`` that verifies (see the module docstring).

    ``check(path, state)``: the stage's own checks of the chosen checkpoint; an error it raises
    refuses the resume with nothing moved. The newer damaged checkpoints are set aside, and
    ``latest`` pointed at the chosen one, only once it has passed."""
    root = Path(root)
    required = tuple(required)
    folders = _newest_first(root)
    reasons: list[tuple[Path, str]] = []
    for folder in folders:
        problems = ckpt.verify_checkpoint(folder, required)
        if not problems:
            state = ckpt.read_state(folder)
            if check is not None:
                check(folder, state)
            return _resume_from(root, folder, state, reasons, log)
        reasons.append((folder, "; ".join(problems)))
    if reasons:
        lines = "\n".join(f"  {folder.name}: {why}" for folder, why in reasons)
        raise InputError(f"{root}: no checkpoint to resume from, every one is damaged or incomplete:\n{lines}\n"
                         f"Nothing was changed. Move {root} aside to start the run afresh, or choose a new --out")
    return ResumePoint()


def _resume_from(root: Path, folder: Path, state: dict[str, Any], reasons: list[tuple[Path, str]],
                 log: Callable[[str], None]) -> ResumePoint:
    skipped = []
    for bad, why in reasons:
        moved = ckpt.set_aside(bad)
        skipped.append((bad.name, why, moved.name))
        log(f"checkpoint {bad.name} skipped: {why}; set aside as {root.name}/{moved.name}")
    pointer = root / LATEST_FILE
    named = pointer.read_text(encoding="utf-8", errors="replace").strip() if pointer.is_file() else None
    if named != folder.name:
        ckpt.write_latest(root, folder.name)
    return ResumePoint(path=folder, state=state, skipped=skipped, verified=True)


def has_checkpoints(root: Path) -> bool:
    """Whether ``root`` holds any checkpoint folder (complete, damaged or not)."""
    return Path(root).is_dir() and any(p.is_dir() and not p.name.startswith(".") and (p / STATE_FILE).exists()
                                       for p in Path(root).iterdir())


def config_differences(old: dict[str, Any], new: dict[str, Any], free: Iterable[str] = (),
                       prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every key (dotted) whose value differs between two
    JSON views of a config, ignoring the top-level keys in ``free``."""
    out = []
    free = frozenset(free)
    for key in sorted(set(old) | set(new)):
        if not prefix and key in free:
            continue
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_differences(a, b, free, prefix=f"{name}."))
        elif a != b:
            out.append((name, a, b))
    return out


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/config.json``; a damaged one is an :class:`InputError` naming the way to repair it."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: the run's settings are not readable ({exc}). The same settings are the "
                         f"'config' of {Path(run_dir) / RUN_INFO_FILE}: write them back to {path}, or choose a "
                         f"new --out") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a settings object; restore it from the 'config' of {RUN_INFO_FILE}")
    return data


def check_same_settings(run_dir: Path, settings: dict[str, Any], free: Iterable[str] = (),
                        what: str = "run") -> None:
    """Refuse (a :class:`BlalmError` listing the keys) when ``RUN_DIR/config.json`` differs from
    ``settings`` in any key outside ``free``."""
    diffs = config_differences(read_run_config(run_dir), settings, free)
    if diffs:
        lines = "\n".join(f"  {k}: {a!r} in the run, {b!r} now" for k, a, b in diffs[:20])
        raise BlalmError(f"{run_dir} holds a {what} with a different config, so it cannot be resumed:\n{lines}\n"
                         f"Re-run with the run's settings ({Path(run_dir) / CONFIG_FILE}) or choose a new --out")
