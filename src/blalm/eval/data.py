"""Readers for the BabyLM 2025 evaluation data, in the official pipeline's layout.

Each reader turns a task's files into items exactly as the official pipeline's
``sentence_zero_shot/read_files.py`` (``decode_*``) and ``reading/run.py`` read them:

* **BLiMP / supplement** (``decode_blimp``): candidates ``[sentence_good, sentence_bad]``, the whole
  sentence scored; the group (macro-average unit) is the record's ``UID`` when it has a ``field``
  key (BLiMP), else the file name (supplement).
* **EWoK** (``decode_ewok``, default ``full_sentence_scores=False``): candidates
  ``Context1 + " " + Target1`` and ``Context1 + " " + Target2`` — both after *Context1* — scoring
  only the completions ``" " + Target1`` / ``" " + Target2``; the group is ``Domain``.
* **Entity tracking** (``decode_entity_tracking``): candidates ``input_prefix + option`` for each
  option (index 0 is correct), scoring the option; the group is ``{file stem}_{numops}_ops``.
* **WUG** (``decode_wug_tasks``): the tab-separated ``sentences`` are the candidates, each scored
  whole; ``ratio`` is the human preference for the first.
* **Reading** (``reading/run.py``): the CSV read as pandas reads it — empty cells and pandas' default
  NA strings (``"None"``, ``"NA"``, ...) are missing; a missing ``item`` (the context) becomes the
  string ``"None"`` (``fillna("None")``), which restores the one context in the data that is the word
  "None"; a missing ``prev_item`` means "no previous word" (so the ``prev_item`` "None" of one row
  counts as missing there too, as in the pipeline).

The password-protected zips (EWoK, WUG past tense) are read into memory with
``zipfile``'s ``pwd=``; their plaintext is never written to disk.

A task whose data is absent raises :class:`TaskUnavailable` (the suite reports it as skipped with
the reason); malformed data raises :class:`~blalm.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from blalm.errors import InputError

# pandas.read_csv's default NA strings (pandas 2.x ``STR_NA_VALUES``).
PANDAS_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                       "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})

READING_NUMERIC = ("context_length", "Subtlex_log10", "length", "RTfirstfix", "RTfirstpass", "RTgopast",
                   "RTrightbound", "self_paced_reading_time", "prev_length")
READING_COLUMNS = ("item", "word", "prev_item", "prev_word") + READING_NUMERIC


class TaskUnavailable(Exception):
    """A task cannot run (its data is absent, or it needs something this run does not have).
    The suite records it as skipped with this message as the reason; it is never scored as 0."""


@dataclass(frozen=True)
class RankingItem:
    """One item of a zero-shot ranking task: candidate texts, the final part of each that is scored
    (the completion, a suffix of the candidate), and the candidate 0 is the correct one."""

    group: str
    sentences: tuple[str, ...]
    completions: tuple[str, ...]
    source: str                   # "file:line", for messages
    ratio: float | None = None    # WUG: human preference for candidate 0


@dataclass(frozen=True)
class ReadingRow:
    """One word of the reading data: its context (``item``) and the previous word's, with the
    regression variables (NaN where missing)."""

    item: str
    word: str
    prev_item: str | None
    prev_word: str | None
    values: dict[str, float]
    source: str


# ---------------------------------------------------------------------------------------------
# JSON lines
# ---------------------------------------------------------------------------------------------

def iter_jsonl(lines: Iterable[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; InputError naming ``name:line`` otherwise."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                             f"each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl_file(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with path.open("r", encoding="utf-8") as fh:
            yield from iter_jsonl(fh, str(path))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def need(obj: dict[str, Any], keys: Sequence[str], where: str, kinds: type | tuple[type, ...] = str) -> None:
    for key in keys:
        if key not in obj:
            raise InputError(f"{where}: missing key {key!r} (has: {', '.join(sorted(obj)) or 'none'})")
        if not isinstance(obj[key], kinds):
            raise InputError(f"{where}: {key!r} must be {getattr(kinds, '__name__', kinds)}, "
                             f"got {type(obj[key]).__name__}")


def jsonl_files(folder: Path, task: str) -> list[Path]:
    if not folder.is_dir():
        raise TaskUnavailable(f"{task} data not found: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".jsonl" and p.is_file())
    if not files:
        raise TaskUnavailable(f"{task} data not found: no .jsonl files in {folder}")
    return files


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

def load_minimal_pairs(folder: Path, task: str = "blimp") -> list[RankingItem]:
    """BLiMP or the BLiMP supplement: every ``*.jsonl`` file of ``folder``."""
    items = []
    for path in jsonl_files(Path(folder), task):
        for lineno, obj in read_jsonl_file(path):
            where = f"{path}:{lineno}"
            need(obj, ("sentence_good", "sentence_bad"), where)
            if "field" in obj:
                need(obj, ("UID",), where)
                group = obj["UID"]
            else:
                group = path.stem
            pair = (obj["sentence_good"], obj["sentence_bad"])
            items.append(RankingItem(group=group, sentences=pair, completions=pair, source=where))
    return items


def read_zip_jsonl(path: Path, password: bytes, task: str) -> list[tuple[str, list[str]]]:
    """``(member name, lines)`` of every ``*.jsonl`` member of a (possibly ZipCrypto-encrypted) zip,
    decrypted in memory only."""
    path = Path(path)
    if not path.is_file():
        raise TaskUnavailable(f"{task} data not found: {path} is not a file")
    out = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir() or not info.filename.endswith(".jsonl"):
                    continue
                with zf.open(info, pwd=password) as fh:
                    text = io.TextIOWrapper(fh, encoding="utf-8").read()
                out.append((info.filename, text.splitlines()))
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: not a readable zip file ({exc})") from None
    except RuntimeError as exc:  # zipfile's "Bad password for file ..."
        raise InputError(f"{path}: cannot decrypt ({exc}); the official zips use the password "
                         f"{password.decode()!r}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: a member is not UTF-8 text ({exc.reason})") from None
    if not out:
        raise TaskUnavailable(f"{task} data not found: no .jsonl member in {path}")
    return out


def load_ewok(zip_path: Path, password: bytes) -> list[RankingItem]:
    """EWoK from its password-protected zip (decrypted in memory)."""
    items = []
    for member, lines in read_zip_jsonl(Path(zip_path), password, "ewok"):
        name = f"{zip_path}!{member}"
        for lineno, obj in iter_jsonl(lines, name):
            where = f"{name}:{lineno}"
            need(obj, ("Context1", "Target1", "Target2", "Domain"), where)
            c1, t1, t2 = obj["Context1"], obj["Target1"], obj["Target2"]
            items.append(RankingItem(group=obj["Domain"], sentences=(f"{c1} {t1}", f"{c1} {t2}"),
                                     completions=(f" {t1}", f" {t2}"), source=where))
    return items


def load_entity_tracking(folder: Path, per_group: int | None = None) -> list[RankingItem]:
    """Entity tracking: every ``*.jsonl`` of ``folder`` (regular, ambiref, move_contents).

    ``per_group``: keep only the first N items (in file order) of each ``{split}_{numops}_ops``
    group — the fast suite's fixed subsample, since no official fast split is available here.
    """
    items = []
    for path in jsonl_files(Path(folder), "entity_tracking"):
        kept: dict[str, int] = {}
        for lineno, obj in read_jsonl_file(path):
            where = f"{path}:{lineno}"
            need(obj, ("input_prefix",), where)
            need(obj, ("options",), where, list)
            need(obj, ("numops",), where, int)
            options = obj["options"]
            if len(options) < 2 or not all(isinstance(o, str) for o in options):
                raise InputError(f"{where}: 'options' must be a list of at least two strings")
            group = f"{path.stem}_{obj['numops']}_ops"
            if per_group is not None:
                if kept.get(group, 0) >= per_group:
                    continue
                kept[group] = kept.get(group, 0) + 1
            prefix = obj["input_prefix"]
            items.append(RankingItem(group=group, sentences=tuple(prefix + o for o in options),
                                     completions=tuple(options), source=where))
    return items


def _wug_items(lines: Iterable[str], name: str, group: str) -> list[RankingItem]:
    items = []
    for lineno, obj in iter_jsonl(lines, name):
        where = f"{name}:{lineno}"
        need(obj, ("sentences",), where)
        need(obj, ("ratio",), where, (int, float))
        sentences = tuple(obj["sentences"].split("\t"))
        if len(sentences) < 2:
            raise InputError(f"{where}: 'sentences' must hold at least two tab-separated candidates")
        items.append(RankingItem(group=group, sentences=sentences, completions=sentences, source=where,
                                 ratio=float(obj["ratio"])))
    if not items:
        raise InputError(f"{name}: no items")
    return items


def load_wug(path: Path, password: bytes | None = None, task: str = "wug_adj") -> list[RankingItem]:
    """A WUG task from its ``.jsonl`` file, or from a password-protected zip holding one."""
    path = Path(path)
    if path.suffix == ".zip":
        members = read_zip_jsonl(path, password or b"", task)
        items = []
        for member, lines in members:
            items += _wug_items(lines, f"{path}!{member}", Path(member).stem)
        return items
    if not path.is_file():
        raise TaskUnavailable(f"{task} data not found: {path} is not a file")
    with path.open("r", encoding="utf-8") as fh:
        return _wug_items(fh, str(path), path.stem)


def _na(cell: str) -> bool:
    return cell in PANDAS_NA


def _number(cell: str, where: str, column: str) -> float:
    if _na(cell.strip()):
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise InputError(f"{where}: column {column!r} holds {cell!r}, not a number") from None


def load_reading(path: Path) -> list[ReadingRow]:
    """The reading data CSV (``reading_data.csv``, De Varda et al. 2023)."""
    path = Path(path)
    if not path.is_file():
        raise TaskUnavailable(f"reading data not found: {path} is not a file")
    rows = []
    with path.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in READING_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {', '.join(missing)}")
        for lineno, rec in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            if None in rec or any(v is None for v in rec.values()):
                raise InputError(f"{where}: the row has a different number of fields than the header")
            item = "None" if _na(rec["item"]) else rec["item"]
            if _na(rec["word"]):
                raise InputError(f"{where}: the 'word' cell is empty")
            prev_missing = _na(rec["prev_item"]) or _na(rec["prev_word"])
            rows.append(ReadingRow(
                item=item, word=rec["word"],
                prev_item=None if prev_missing else rec["prev_item"],
                prev_word=None if prev_missing else rec["prev_word"],
                values={c: _number(rec[c], where, c) for c in READING_NUMERIC}, source=where))
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


@dataclass(frozen=True)
class CdiWord:
    word: str                      # the cleaned CDI word (what is scored)
    definition: str               # as in the file
    ages: tuple[int, ...]         # months
    proportions: tuple[float, ...]  # share of children producing it at each age (NaN where missing)


_PAREN = re.compile(r"\s*\([^)]*\)")


def clean_cdi_word(definition: str) -> str:
    """``"chicken (animal)"`` → ``"chicken"``, ``"buttocks/bottom*"`` → ``"buttocks"``: drop a
    parenthesised sense, Wordbank's ``*`` mark, and keep the first of ``/``-separated variants."""
    word = _PAREN.sub("", definition).replace("*", "")
    return word.split("/")[0].strip()


def load_cdi(path: Path) -> list[CdiWord]:
    """Wordbank CDI proportions (``aoa/child_american_english_proportions.csv``): one row per word,
    columns ``16`` … ``30`` (months). The word column is ``word`` (the pipeline's CDI file) or
    ``definition`` (Wordbank's export). Words repeated after cleaning keep their first row."""
    path = Path(path)
    if not path.is_file():
        raise TaskUnavailable(f"aoa data not found: {path} is not a file")
    out: dict[str, CdiWord] = {}
    with path.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        word_col = "word" if "word" in fields else "definition" if "definition" in fields else None
        ages = [int(c) for c in fields if c.strip().isdigit()]
        if word_col is None or not ages:
            raise InputError(f"{path}:1: expected a 'word' or 'definition' column and age columns (16 ... 30)")
        for lineno, rec in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            word = clean_cdi_word(rec[word_col] or "")
            if not word or word in out:
                continue
            props = tuple(_number(rec[str(a)] or "", where, str(a)) for a in ages)
            out[word] = CdiWord(word=word, definition=rec[word_col], ages=tuple(ages), proportions=props)
    return list(out.values())
