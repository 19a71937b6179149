"""The (Super)GLUE tasks of the BabyLM 2025 fine-tuning protocol and their data files.

Per task: the input fields (Hugging Face ``glue``/``super_glue`` names, in the order they are put
in the input), the number of labels, the official batch size and epochs (32 and 10; 16 for BoolQ
and MultiRC; 30 epochs for WSC), and the validation metric (``metric_for_valid`` in the official
pipeline): F1 of the positive class for MRPC and QQP, accuracy for the rest. Accuracy is reported
for every task, F1 and MCC for the binary ones. The primary score (the validation metric) picks
the best epoch and is the task's entry in the GLUE column's mean.

Input (this project's format; the separator and truncation are our choice): every field is tokenized on its own (no special tokens), the pieces are joined with the
tokenizer's EOS token as separator, the tokenizer's BOS (when it has one) goes first; inputs
longer than ``max_length`` lose tokens from their longest field first (``longest_first``), so that
the last field (hypothesis, answer, span) is kept.

Data: ``DATA_DIR/{task}.train.jsonl`` (or ``.jsonl.xz``) and ``DATA_DIR/{task}.valid.jsonl``; the
valid file is both the per-epoch validation set and the evaluation set (as in the official pipeline). BoolQ has no training
file in the official 2025 data: it is reported "not available" unless ``--data-dir`` holds one.
"""

from __future__ import annotations

import json
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blalm.errors import InputError


@dataclass(frozen=True)
class Task:
    name: str
    fields: tuple[str, ...]
    num_labels: int
    batch_size: int = 32
    epochs: int = 10
    f1: bool = False

    @property
    def primary(self) -> str:
        return "f1" if self.f1 else "accuracy"


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("boolq", ("question", "passage"), 2, batch_size=16),
    Task("mnli", ("premise", "hypothesis"), 3),
    Task("mrpc", ("sentence1", "sentence2"), 2, f1=True),
    Task("multirc", ("paragraph", "question", "answer"), 2, batch_size=16),
    Task("qqp", ("question1", "question2"), 2, f1=True),
    Task("rte", ("sentence1", "sentence2"), 2),
    Task("wsc", ("text", "span2_text", "span1_text"), 2, epochs=30),
)}
DEFAULT_TASKS = ("mnli", "mrpc", "multirc", "qqp", "rte", "wsc", "boolq")


class TaskUnavailable(Exception):
    """The task's data is not there (reported "not available" with this reason)."""


def task_file(data_dir: Path, task: str, split: str) -> Path | None:
    for suffix in (".jsonl", ".jsonl.xz"):
        path = Path(data_dir) / f"{task}.{split}{suffix}"
        if path.is_file():
            return path
    return None


def read_examples(path: Path, task: Task, limit: int = 0) -> list[dict[str, Any]]:
    """The first ``limit`` (0: all) examples of a JSONL(.xz) file; each must hold the task's fields
    and an integer label in ``0..num_labels-1``."""
    opener = lzma.open if path.suffix == ".xz" else open
    out: list[dict[str, Any]] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc})") from None
            missing = [f for f in (*task.fields, "label") if f not in row]
            if missing:
                raise InputError(f"{path}:{lineno}: missing field(s) {', '.join(missing)} for task {task.name}")
            label = row["label"]
            if isinstance(label, bool):
                label = int(label)
            if not isinstance(label, int) or not 0 <= label < task.num_labels:
                raise InputError(f"{path}:{lineno}: label {row['label']!r} is not one of 0..{task.num_labels - 1}")
            out.append({"fields": [str(row[f]) for f in task.fields], "label": label})
            if limit and len(out) >= limit:
                break
    if not out:
        raise InputError(f"{path}: no examples")
    return out


def task_paths(data_dir: Path, name: str) -> tuple[Path, Path]:
    """(train, valid) files of task ``name``; TaskUnavailable, naming the file looked for, when one is missing."""
    train_path, valid_path = task_file(data_dir, name, "train"), task_file(data_dir, name, "valid")
    if train_path is None:
        extra = (" (the official 2025 data has no BoolQ training file; give --eval-data with a "
                 "boolq.train.jsonl to fine-tune on it)" if name == "boolq" else "")
        raise TaskUnavailable(f"no training data: {Path(data_dir) / (name + '.train.jsonl')} (or .jsonl.xz) not "
                              f"found{extra or '; give --eval-data with the folder that holds it'}")
    if valid_path is None:
        raise TaskUnavailable(f"no validation data: {Path(data_dir) / (name + '.valid.jsonl')} (or .jsonl.xz) not "
                              f"found; give --eval-data with the folder that holds it")
    return train_path, valid_path


def load_task(data_dir: Path, name: str, max_train: int = 0, max_valid: int = 0
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, valid) examples of task ``name``; TaskUnavailable when a file is missing."""
    task = TASKS[name]
    train_path, valid_path = task_paths(data_dir, name)
    return read_examples(train_path, task, max_train), read_examples(valid_path, task, max_valid)


def count_examples(path: Path) -> int:
    """The examples of a JSONL(.xz) file as :func:`read_examples` counts them (its non-empty lines),
    without parsing them."""
    opener = lzma.open if Path(path).suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def encode(tokenizer: Any, fields: list[str], max_length: int) -> list[int]:
    """Token ids of one example (see the module docstring for the format)."""
    pieces = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in fields]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if sep is None:
        raise InputError("the tokenizer has neither an EOS nor a SEP token to separate the input fields")
    budget = max_length - len(bos) - (len(pieces) - 1)
    if budget < len(pieces):
        raise InputError(f"max_length {max_length} is too short for {len(pieces)} fields")
    while sum(len(p) for p in pieces) > budget:     # longest_first truncation
        longest = max(range(len(pieces)), key=lambda i: len(pieces[i]))
        pieces[longest].pop()
    ids = list(bos)
    for i, piece in enumerate(pieces):
        if i:
            ids.append(sep)
        ids.extend(piece)
    return ids
