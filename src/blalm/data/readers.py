"""Streaming source readers: input paths and files in, :class:`Document` objects out.

Two public functions, used by the corpus builder:

* :func:`expand_paths` turns a source's ``paths`` (files, folders, globs, ``{data}``) into a
  sorted list of files, refusing patterns that match nothing.
* :func:`iter_documents` streams the documents of those files in one of the
  :data:`blalm.data.config.ReaderFormat` formats.

Reading is streaming: files are read line by line (as bytes, decoded one line at a time so that a
bad UTF-8 byte is reported with its line number), through ``.xz``/``.gz``/``.bz2`` decompression
chosen by the file name. Memory stays flat however large a file is: one JSONL line, one group of
BabyLM lines, one story, or at most about :data:`TEXT_CHUNK_BYTES` of a plain text file is held
at a time.

A source that holds far more than its share can be read in part: ``sample`` keeps a seeded
fraction of its documents (by file name and line, so the choice does not depend on the text), and
the others are counted as ``not_sampled`` without being decoded. A uniform sample of the documents
followed by the budget's uniform selection is a uniform selection: only the time differs.

Malformed input either stops the run with an :class:`~blalm.errors.InputError` that names the
file, the line and the fix (``on_error="fail"``) or is counted in ``drops[reason]`` and skipped
(``on_error="skip"``); the reasons are :data:`DROP_REASONS`. A missing file and a corrupt
compressed stream always stop the run: skipping them would silently lose a whole file.
"""

from __future__ import annotations

import bz2
import collections
import glob
import gzip
import hashlib
import json
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

from blalm.data.config import ReaderFormat
from blalm.data.documents import Document
from blalm.errors import InputError

FORMATS: tuple[str, ...] = get_args(ReaderFormat)
ON_ERROR: tuple[str, ...] = ("fail", "skip")
DROP_REASONS: tuple[str, ...] = ("malformed_json", "bad_utf8", "empty_file", "missing_text", "not_an_object",
                                 "not_sampled")

TINYSTORIES_SEPARATOR = "<|endoftext|>"
# A plain text file (format "text") longer than this many characters (about bytes) is split into
# documents at blank lines; a stretch of 2x this with no blank line is cut at a line boundary, so
# memory stays bounded. A "story" of tinystories_txt that long (a file without separators) too.
TEXT_CHUNK_BYTES = 8 * 1024 * 1024

_COMPRESSION = {".xz": "xz", ".lzma": "xz", ".gz": "gz", ".bz2": "bz2"}
_GLOB_CHARS = frozenset("*?[")
_SKIP_HINT = 'or set on_error = "skip" to count it as a drop'


# --------------------------------------------------------------------------------------------
# paths


def expand_paths(patterns: list[str], data_dir: Path, *, where: str) -> list[Path]:
    """Expand a source's ``paths`` into a sorted, de-duplicated list of absolute file paths.

    Each pattern may contain ``{data}`` (replaced by ``data_dir``) and ``~``, glob characters
    (``*``, ``?``, ``[...]``; ``**`` matches folders recursively), or name a folder, which stands
    for every regular file under it, recursively (hidden files and folders, whose names start
    with ``.``, are left out, as globs leave them out). A folder matched by a glob is expanded the
    same way. A pattern that matches no file raises :class:`InputError` naming the pattern and
    ``where`` (e.g. ``"source 'childes'"``).
    """
    found: set[Path] = set()
    for pattern in patterns:
        expanded = os.path.expanduser(pattern.replace("{data}", str(data_dir)))
        if any(ch in _GLOB_CHARS for ch in expanded):
            candidates = [Path(p) for p in glob.glob(expanded, recursive=True)]
        else:
            candidates = [Path(expanded)] if os.path.exists(expanded) else []
        matched: list[Path] = []
        for cand in candidates:
            if cand.is_dir():
                matched.extend(_files_under(cand))
            elif cand.is_file():
                matched.append(cand)
        if not matched:
            shown = f"'{pattern}'" if expanded == pattern else f"'{pattern}' (that is '{expanded}')"
            hint = (f"data_dir in the corpus config or the BLALM_DATA_DIR environment variable "
                    f"(now {data_dir})")
            raise InputError(
                f"{where}: the path {shown} matches no file; check the path (a folder must hold "
                f"files, a glob must match some), or set {hint} if the data lives elsewhere")
        found.update(Path(os.path.abspath(p)) for p in matched)
    return sorted(found)


def _files_under(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.is_file():
                out.append(path)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# formats


def detect_format(path: Path) -> str:
    """The reader format ``"auto"`` picks for a file name (compression suffixes are ignored):
    ``.jsonl``/``.json`` -> ``"jsonl"``, ``.train`` -> ``"babylm"``, anything else -> ``"text"``.
    A ``.txt`` file is read as ``"text"`` even when it holds ``<|endoftext|>`` separators: name
    ``format = "tinystories_txt"`` for those."""
    name = path.name.lower()
    for suffix in _COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith(".train"):
        return "babylm"
    return "text"


def iter_documents(paths: list[Path], fmt: str, *, text_field: str = "text", id_field: str = "id",
                   lines_per_document: int = 1000, on_error: str = "fail",
                   drops: collections.Counter | None = None, sample: float = 1.0,
                   sample_seed: str = "") -> Iterator[Document]:
    """Stream the documents of ``paths`` (in the given order) read as ``fmt``.

    Formats (see :data:`blalm.data.config.ReaderFormat`):

    * ``"jsonl"``: one JSON object a non-blank line; ``text`` is ``obj[text_field]``, ``id`` is
      ``obj[id_field]`` (``"NAME:LINE"`` when absent), ``meta`` is ``obj["meta"]`` (when a dict)
      plus the other top-level fields (e.g. FineWeb-Edu ``score``, Cosmopedia ``audience``);
      ``origin`` is ``"PATH:LINE"``.
    * ``"babylm"``: official BabyLM ``*.train`` text, one utterance a line; every
      ``lines_per_document`` consecutive non-blank lines make one document (joined with ``\\n``,
      speaker tags kept); ``id`` ``"NAME:FIRSTLINE"``, ``meta`` ``{"file": NAME}``.
    * ``"text"``: one file one document (``id`` the file name, ``origin`` the path); files larger
      than :data:`TEXT_CHUNK_BYTES` are split at blank lines (``id`` ``"NAME:FIRSTLINE"`` then).
    * ``"tinystories_txt"``: stories separated by ``<|endoftext|>``; each story (stripped) one
      document, ``id`` ``"NAME:FIRSTLINE"``; whitespace between separators is skipped.
    * ``"auto"``: chosen per file by :func:`detect_format`.

    Argument errors (unknown format, bad ``on_error``) are raised at call time; input errors
    while iterating. With ``on_error="skip"`` the dropped units (a JSONL line, a BabyLM line, a
    story or text document holding a bad byte, an empty file) are counted in ``drops``.

    ``sample < 1`` keeps that fraction of the documents, chosen by ``sample_seed``, the file name
    and the document's (first) line; the others are counted in ``drops["not_sampled"]`` (JSONL
    lines are then not even decoded).
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown reader format {fmt!r}; the formats are: {', '.join(FORMATS)}")
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if not isinstance(lines_per_document, int) or lines_per_document < 1:
        raise InputError(f"lines_per_document must be an integer >= 1, got {lines_per_document!r}")
    if not 0 < sample <= 1:
        raise InputError(f"sample must be in (0, 1], got {sample!r}")
    errors = _Errors(on_error, drops if drops is not None else collections.Counter())
    return _iter_all([Path(p) for p in paths], fmt, text_field, id_field, lines_per_document, errors,
                     sample, sample_seed)


def sampled(fraction: float, seed: str, file_name: str, line: int) -> bool:
    """Whether the document starting at ``line`` of ``file_name`` is in a ``fraction`` sample."""
    if fraction >= 1:
        return True
    digest = hashlib.blake2b(f"{seed}:{file_name}:{line}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2**64


def _iter_all(paths: list[Path], fmt: str, text_field: str, id_field: str, lines_per_document: int,
              errors: _Errors, sample: float, sample_seed: str) -> Iterator[Document]:
    for path in paths:
        file_fmt = detect_format(path) if fmt == "auto" else fmt
        keep = None if sample >= 1 else (lambda line, name=path.name: sampled(sample, sample_seed, name, line))
        if file_fmt == "jsonl":
            yield from _read_jsonl(path, text_field, id_field, errors, keep)
            continue
        if file_fmt == "babylm":
            docs = _read_babylm(path, lines_per_document, errors)
        elif file_fmt == "text":
            docs = _read_text(path, errors)
        else:
            docs = _read_tinystories(path, errors)
        for doc in docs:
            if keep is None or keep(_first_line(doc)):
                yield doc
            else:
                errors.drops["not_sampled"] += 1


def _first_line(doc: Document) -> int:
    tail = doc.origin.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 1


# --------------------------------------------------------------------------------------------
# errors


class _Errors:
    """Raise (``fail``) or count (``skip``) one malformed unit of input."""

    def __init__(self, on_error: str, drops: collections.Counter) -> None:
        self.skip = on_error == "skip"
        self.drops = drops

    def report(self, reason: str, where: str, what: str, fix: str) -> None:
        if not self.skip:
            raise InputError(f"{where}: {what}; {fix}, {_SKIP_HINT}")
        self.drops[reason] += 1

    def bad_utf8(self, path: Path, lineno: int, err: UnicodeDecodeError) -> None:
        byte = err.object[err.start]
        self.report("bad_utf8", f"{path} line {lineno}",
                    f"not valid UTF-8 (byte 0x{byte:02x} at column {err.start + 1}: {err.reason})",
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")

    def empty_file(self, path: Path, what: str = "empty file (zero bytes or only whitespace)") -> None:
        self.report("empty_file", str(path), what, "remove it from the source's paths")


# --------------------------------------------------------------------------------------------
# line reading


def _open_binary(path: Path):
    kind = _COMPRESSION.get(path.suffix.lower())
    if kind == "xz":
        return kind, lzma.open(path, "rb")
    if kind == "gz":
        return kind, gzip.open(path, "rb")
    if kind == "bz2":
        return kind, bz2.open(path, "rb")
    return None, open(path, "rb")  # noqa: SIM115 (closed by the caller's with)


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, raw line bytes)`` of a (possibly compressed) file, streaming.

    A zero-byte file yields nothing (the callers report it as empty). Missing or unreadable files
    and corrupt compressed streams raise :class:`InputError` naming the file.
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; check the source's paths (was the file moved or "
                         f"deleted after the paths were expanded?)") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the file ({err.strerror or err}); check its "
                         f"permissions") from None
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a file; name the folder in the source's paths "
                         f"(it is expanded to the files under it) instead of passing it here")
    if size == 0:
        return
    try:
        kind, fh = _open_binary(path)
    except OSError as err:
        raise InputError(f"{path}: cannot open the file ({err.strerror or err}); check its "
                         f"permissions") from None
    with fh:
        lines = iter(fh)
        lineno = 0
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except (lzma.LZMAError, EOFError, zlib.error, OSError) as err:
                if kind is None:
                    raise InputError(f"{path}: read error after line {lineno} ({err}); check the "
                                     f"disk or copy the file again") from None
                raise InputError(f"{path}: corrupt or truncated .{kind} file (after line {lineno}: "
                                 f"{err}); download or compress it again") from None
            lineno += 1
            yield lineno, line


_SKIPPED = object()   # a line that _lines did not decode (not in the sample)


def _lines(path: Path, keep: Callable[[int], bool] | None = None
           ) -> Iterator[tuple[int, str | UnicodeDecodeError | object]]:
    """Yield ``(line number, decoded line)`` with the line ending normalised to ``\\n``.

    A line that is not valid UTF-8 is yielded as its :class:`UnicodeDecodeError`, for the reader
    to report (and, when skipping, to drop the unit that holds it). A UTF-8 byte-order mark at
    the start of the file is removed. A non-blank line that ``keep`` refuses is yielded as
    ``_SKIPPED``, undecoded.
    """
    for lineno, raw in _raw_lines(path):
        if keep is not None and raw.strip() and not keep(lineno):
            yield lineno, _SKIPPED
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield lineno, err
            continue
        if lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if text.endswith("\r\n"):
            text = text[:-2] + "\n"
        yield lineno, text


# --------------------------------------------------------------------------------------------
# readers


def _read_jsonl(path: Path, text_field: str, id_field: str, errors: _Errors,
                keep: Callable[[int], bool] | None = None) -> Iterator[Document]:
    content = False
    for lineno, line in _lines(path, keep):
        if line is _SKIPPED:
            errors.drops["not_sampled"] += 1
            content = True
            continue
        if isinstance(line, UnicodeDecodeError):
            errors.bad_utf8(path, lineno, line)
            content = True
            continue
        if not line.strip():
            continue
        content = True
        where = f"{path} line {lineno}"
        try:
            obj = json.loads(line)
        except ValueError as err:
            detail = f"{err.msg}: column {err.colno}" if isinstance(err, json.JSONDecodeError) else str(err)
            errors.report("malformed_json", where, f"malformed JSON ({detail})", "fix the line")
            continue
        except RecursionError:
            errors.report("malformed_json", where, "malformed JSON (nested too deeply)", "fix the line")
            continue
        if not isinstance(obj, dict):
            errors.report("not_an_object", where,
                          f"a JSON {_json_kind(obj)} where a JSON object was expected",
                          "write one JSON object a line (JSONL)")
            continue
        text = obj.pop(text_field, None)
        if not isinstance(text, str):
            if text is None:
                keys = ", ".join(list(obj)[:12]) or "none"
                what = f"no text field '{text_field}' (its fields: {keys})"
            else:
                what = f"the text field '{text_field}' holds a JSON {_json_kind(text)}, not a string"
            errors.report("missing_text", where, what,
                          "set text_field to the field holding the text, or fix the line")
            continue
        doc_id = obj.pop(id_field, None)
        meta = obj.pop("meta", None)
        meta_out: dict[str, Any] = meta if isinstance(meta, dict) else {}
        if meta is not None and not isinstance(meta, dict):
            meta_out["meta"] = meta
        for key, value in obj.items():  # other top-level fields (score, title, audience, ...)
            meta_out.setdefault(key, value)
        yield Document(id=str(doc_id) if doc_id is not None else f"{path.name}:{lineno}",
                       text=text, origin=f"{path}:{lineno}", meta=meta_out)
    if not content:
        errors.empty_file(path)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    return "string"


def _read_babylm(path: Path, lines_per_document: int, errors: _Errors) -> Iterator[Document]:
    content = False
    buf: list[str] = []
    first = 0
    for lineno, line in _lines(path):
        if isinstance(line, UnicodeDecodeError):  # dropped on its own: BabyLM lines are independent
            errors.bad_utf8(path, lineno, line)
            content = True
            continue
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        content = True
        if not buf:
            first = lineno
        buf.append(line)
        if len(buf) == lines_per_document:
            yield _line_document(path, first, "\n".join(buf))
            buf = []
    if buf:
        yield _line_document(path, first, "\n".join(buf))
    if not content:
        errors.empty_file(path)


def _line_document(path: Path, first: int, text: str) -> Document:
    return Document(id=f"{path.name}:{first}", text=text, origin=f"{path}:{first}",
                    meta={"file": path.name})


class _Chunk:
    """Lines of one document being gathered (a text file or part of it, one story)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.first = 0      # line of the first non-whitespace text
        self.bad = False    # holds an undecodable line: dropped when flushed

    def add(self, text: str, lineno: int) -> None:
        if not text:
            return
        if not self.first and text.strip():
            self.first = lineno
        self.parts.append(text)
        self.size += len(text)

    def has_text(self) -> bool:
        return bool(self.first)

    def full(self, line: str) -> bool:
        """Whether to end the chunk after ``line``: past the size limit at a blank line, or far
        past it with no blank line in sight."""
        if self.size >= 2 * TEXT_CHUNK_BYTES:
            return True
        return self.size >= TEXT_CHUNK_BYTES and not line.strip()


def _read_text(path: Path, errors: _Errors) -> Iterator[Document]:
    chunk = _Chunk()
    split = False   # the file is larger than one chunk: its documents get "NAME:LINE" ids
    content = False
    for lineno, line in _lines(path):
        if isinstance(line, UnicodeDecodeError):  # the document holding it is dropped, counted once
            if not chunk.bad:
                errors.bad_utf8(path, lineno, line)
                chunk.bad = True
            content = True
            continue
        chunk.add(line, lineno)
        if chunk.full(line):
            split = True
            if chunk.has_text() and not chunk.bad:
                yield Document(id=f"{path.name}:{chunk.first}", text="".join(chunk.parts),
                               origin=f"{path}:{chunk.first}", meta={"file": path.name})
            content = content or chunk.has_text()
            chunk = _Chunk()
    content = content or chunk.has_text()
    if chunk.has_text() and not chunk.bad:
        text = "".join(chunk.parts)
        if split:
            yield Document(id=f"{path.name}:{chunk.first}", text=text,
                           origin=f"{path}:{chunk.first}", meta={"file": path.name})
        else:
            yield Document(id=path.name, text=text, origin=str(path), meta={"file": path.name})
    if not content:
        errors.empty_file(path)


def _read_tinystories(path: Path, errors: _Errors) -> Iterator[Document]:
    chunk = _Chunk()
    stories = 0
    other = False   # something besides whitespace and separators: a bad line
    for lineno, line in _lines(path):
        if isinstance(line, UnicodeDecodeError):  # the story holding it is dropped, counted once
            if not chunk.bad:
                errors.bad_utf8(path, lineno, line)
                chunk.bad = True
            other = True
            continue
        pieces = line.split(TINYSTORIES_SEPARATOR) if TINYSTORIES_SEPARATOR in line else [line]
        for i, piece in enumerate(pieces):
            if i > 0:  # a separator: the story so far is complete
                doc = _story(path, chunk)
                if doc is not None:
                    stories += 1
                    yield doc
                chunk = _Chunk()
            chunk.add(piece, lineno)
        if chunk.full(line):  # a "story" of megabytes: the file lacks separators; stay bounded
            doc = _story(path, chunk)
            if doc is not None:
                stories += 1
                yield doc
            chunk = _Chunk()
    doc = _story(path, chunk)
    if doc is not None:
        stories += 1
        yield doc
    if not stories and not other:
        errors.empty_file(path, f"empty file (no story between the {TINYSTORIES_SEPARATOR} separators)")


def _story(path: Path, chunk: _Chunk) -> Document | None:
    if chunk.bad or not chunk.has_text():
        return None
    return Document(id=f"{path.name}:{chunk.first}", text="".join(chunk.parts).strip(),
                    origin=f"{path}:{chunk.first}", meta={"file": path.name})
