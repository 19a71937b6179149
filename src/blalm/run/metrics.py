"""A run's metrics: ``RUN_DIR/metrics.jsonl`` always, TensorBoard event files when available.

One JSON object a line, each with a ``kind``:

- ``setup``:  the run's shape (parameters, optimizer split, steps, tokens, words per token);
- ``train``:  every ``log_every`` optimizer steps: ``step``, ``epoch``, ``loss`` (mean over the
  steps since the last record), ``lr`` (per optimizer), ``grad_norm`` (before clipping),
  ``tokens_per_s``, ``tokens_seen``, ``words_seen``, ``nonfinite_steps``, ``swa_coefficients``
  (the DynMod α of every layer: ``model.swa_coefficients()``, empty without SWA);
- ``nonfinite``: a skipped step (loss or gradient not finite);
- ``eval``:   at every checkpoint: ``val_loss`` (nats/token), ``val_ppl``, ``val_bpb`` (bits per
  byte of dev text), ``val_tokens``, and the checkpoint's name;
- ``resume``: where a resumed run picked up.

TensorBoard files (``RUN_DIR/tensorboard/``) are written only when ``torch.utils.tensorboard``
imports (it needs the ``tensorboard`` package, not a blalm dependency); the JSONL file holds the
same numbers. On resume, records past the checkpoint's step are dropped from the JSONL file, so
that it reads as one uninterrupted run; a line cut by a kill (the last one, without its newline) is
dropped too, and a damaged line elsewhere (not valid JSON) is moved to ``metrics.jsonl.damaged``
and reported, never silently deleted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from blalm.atomic import write_text_atomic
from blalm.run.layout import METRICS_FILE

DAMAGED_SUFFIX = ".damaged"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings ("nan", "inf", "-inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.tb = None
        self.tensorboard_available = False
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
                self.tensorboard_available = True
        self._fh = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(_clean(record), allow_nan=False) + "\n")
        self._fh.flush()
        if self.tb is not None:
            self._to_tensorboard(record)

    def _to_tensorboard(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        kind = record.get("kind")
        if step is None or kind not in ("train", "eval"):
            return
        for key, value in record.items():
            if key in ("step", "kind", "epoch"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(f"{kind}/{key}", value, step)
            elif isinstance(value, dict):
                for sub, v in value.items():
                    if isinstance(v, (int, float)):
                        self.tb.add_scalar(f"{kind}/{key}_{sub}", v, step)
            elif key == "swa_coefficients" and isinstance(value, list):
                for i, v in enumerate(value):
                    self.tb.add_scalar(f"swa_alpha/layer_{i:02d}", v, step)
        self.tb.flush()

    def snapshot(self) -> bytes:
        """The file's content now (every record logged so far), e.g. for a checkpoint to keep."""
        self._fh.flush()
        return self.path.read_bytes()

    def close(self) -> None:
        self._fh.close()
        if self.tb is not None:
            self.tb.close()


def _split_log(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """``(records, damaged)`` of a metrics file: each readable record with its line, and each whole
    line that is not a record (damaged); a last line cut by a kill is in neither."""
    records: list[tuple[str, dict[str, Any]]] = []
    damaged: list[str] = []
    if not path.is_file():
        return records, damaged
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("step", 0), int):
                records.append((line if line.endswith("\n") else line + "\n", record))
            elif line.endswith("\n"):
                damaged.append(line)
    return records, damaged


def _set_damaged_aside(path: Path, damaged: list[str]) -> int:
    if damaged:
        with open(path.with_name(path.name + DAMAGED_SUFFIX), "a", encoding="utf-8") as fh:
            fh.writelines(damaged)
    return len(damaged)


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Drop the records of steps after ``step`` (left by a run killed after its last checkpoint).
    Returns how many damaged lines were moved to ``metrics.jsonl.damaged`` (see the module docstring)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    records, damaged = _split_log(path)
    moved = _set_damaged_aside(path, damaged)
    write_text_atomic(path, "".join(line for line, record in records if record.get("step", 0) <= step))
    return moved


def restore_metrics(run_dir: Path, snapshot: Path) -> int:
    """Replace ``run_dir/metrics.jsonl`` by a checkpoint's copy of it (the run's log up to the
    checkpoint: what :func:`truncate_metrics` keeps, and also what damage to the live file took).
    Damaged lines of the live file are moved to ``metrics.jsonl.damaged`` first; returns their count."""
    path = Path(run_dir) / METRICS_FILE
    moved = _set_damaged_aside(path, _split_log(path)[1])
    write_text_atomic(path, Path(snapshot).read_text(encoding="utf-8"))
    return moved


def read_metrics(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (of one ``kind``, or all); a line cut by a kill is
    skipped, as :func:`truncate_metrics` skips it."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (kind is None or record.get("kind") == kind):
                out.append(record)
    return out


def checkpoint_val_ppl(records: list[dict[str, Any]], checkpoint: str | None) -> float | None:
    """The (finite) validation perplexity logged with ``checkpoint`` among ``records`` (the last such
    ``eval`` record), or None."""
    found = None
    for rec in records:
        if checkpoint is not None and rec.get("kind") == "eval" and rec.get("checkpoint") == checkpoint:
            value = rec.get("val_ppl")
            found = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return found
