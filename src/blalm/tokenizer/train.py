"""Train the byte-level BPE tokenizer on a corpus's training split (GUIDE §1.2).

The input is a corpus folder written by ``blalm corpus``: ``train.txt`` and ``dev.txt`` (one
document or utterance a line, UTF-8) and ``manifest.json``. The tokenizer is learnt from
``train.txt`` only, streamed in batches of lines; ``dev.txt`` is used to measure it (tokens per
whitespace word) and to check that decoding gives back every line exactly.

Choices, each deliberate:

* **Byte-level BPE** (GPT-2 style): the ``ByteLevel`` pre-tokenizer with ``add_prefix_space=False``
  and the ``ByteLevel`` decoder. All 256 byte symbols are in the vocabulary whatever the corpus,
  so any text encodes (no unknown token) and ``decode(encode(text)) == text`` holds for any
  string, leading spaces, newlines, accents, emoji and CJK included.
* **Special tokens** ``<|bos|>``, ``<|eos|>``, ``<|pad|>`` with ids 0, 1, 2 (the trainer adds them
  first, in this order).
* **No BOS/EOS added by encoding**: the tokenizer has no post-processor that inserts special
  tokens. ``tokenizer(text)`` returns the text's tokens only. The training stage appends EOS
  between documents itself when it concatenates them into blocks, and evaluation decides where a
  BOS goes; adding them here too would double them.
* **Saved for Hugging Face**: ``transformers.PreTrainedTokenizerFast(...).save_pretrained(out_dir)``
  writes ``tokenizer.json`` + ``tokenizer_config.json``, so ``AutoTokenizer.from_pretrained(out_dir)``
  gives a fast tokenizer with BOS/EOS/PAD set. ``clean_up_tokenization_spaces`` is off (it would
  turn ``"down ."`` into ``"down."`` on decode and break the round trip), and the config names
  the class ``PreTrainedTokenizerFast`` (understood by transformers 4.x and 5.x alike).
* **Atomic output**: everything is built in a temporary folder beside ``out_dir`` and renamed into
  place at the end; an existing ``out_dir`` (a previous tokenizer, or an empty folder) is replaced
  only after success. A folder holding anything else is refused, never deleted. ``blalm tokenizer``
  holds the lock ``.DIR.lock`` beside ``out_dir`` (:func:`blalm.lock.lock_beside`) meanwhile: a
  second writer into it is refused naming the first's pid and host, and what a killed one left
  beside ``out_dir`` is cleared away first (:func:`remove_killed_build`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from blalm.errors import BlalmError, InputError
from blalm.atomic import atomic_dir, check_replaceable_dir, clear_killed_write, write_json_atomic
from blalm.runinfo import run_info

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)  # ids 0, 1, 2 in this order
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)          # the byte alphabet plus the special tokens
DEFAULT_VOCAB_SIZE = 15000     # vocabulary incl. the 256 byte symbols and 3 special tokens (the paper: 15K)
DEFAULT_MIN_FREQUENCY = 2     # merge only pairs seen at least this often in train.txt

TRAIN_FILE = "train.txt"
DEV_FILE = "dev.txt"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "tokenizer_report.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", REPORT_FILE)

BATCH_LINES = 1000            # lines per batch, for training and for batched encoding
TRAIN_SAMPLE_LINES = 10_000   # evenly spaced train.txt lines used to measure tokens/word on train
MAX_LISTED_FAILURES = 10      # round-trip failures listed (by line number) in the report
MANIFEST_KEYS = ("budget_words", "train_words", "dev_words", "seed")


def train_tokenizer(corpus_dir: Path, out_dir: Path, vocab_size: int = DEFAULT_VOCAB_SIZE,
                    min_frequency: int = DEFAULT_MIN_FREQUENCY,
                    show_progress: bool = True) -> dict[str, Any]:
    """Train byte-level BPE on ``corpus_dir/train.txt`` and save it as a HF fast tokenizer in ``out_dir``.

    Returns the report that is also written to ``out_dir/tokenizer_report.json``: vocabulary size,
    training lines and words, the corpus (folder and the manifest's budget/seed), tokens per word
    on dev.txt and on a sample of train.txt, and the round-trip check on dev.txt.
    Raises :class:`BlalmError` for a bad vocab size or output folder and :class:`InputError` for a
    missing or empty ``train.txt`` or unreadable input.
    """
    corpus_dir = Path(corpus_dir).expanduser()
    out_dir = Path(out_dir).expanduser()
    _check_settings(vocab_size, min_frequency)
    train_path = corpus_dir / TRAIN_FILE
    dev_path = corpus_dir / DEV_FILE
    n_train_lines = _check_train_file(corpus_dir, train_path)
    manifest = _read_manifest(corpus_dir / MANIFEST_FILE)
    _check_out_dir(out_dir, corpus_dir)

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    started = time.time()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # No post-processor: encoding adds no BOS/EOS (see the module docstring).
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    stats = _TrainStats(sample_step=max(1, math.ceil(n_train_lines / TRAIN_SAMPLE_LINES)))
    # ``length`` is counted in lines (sequences), not batches: it sizes the progress bar.
    tokenizer.train_from_iterator(stats.batches(train_path), trainer=trainer, length=n_train_lines)
    if stats.words == 0:  # only possible if the pre-check was fooled by non-breaking spaces and the like
        raise InputError(f"{train_path}: no words to train on (every line is blank); "
                         f"run 'blalm corpus' first to build the corpus")
    for i, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != i:  # pragma: no cover - a tokenizers behaviour change
            raise RuntimeError(f"special token {token} got id {tokenizer.token_to_id(token)}, expected {i}")

    with atomic_dir(out_dir) as tmp_dir:
        _save_hf(tokenizer, tmp_dir)
        hf = load_tokenizer(tmp_dir)
        _check_loaded(hf, tmp_dir)
        train_sample = measure_lines(hf, stats.sample)
        dev_stats = {"path": str(dev_path.resolve()), **measure_lines(hf, read_lines(dev_path))} \
            if dev_path.is_file() else None
        report: dict[str, Any] = {
            "vocab_size": hf.backend_tokenizer.get_vocab_size(),
            "vocab_size_requested": vocab_size,
            "min_frequency": min_frequency,
            "special_tokens": {"bos": {"token": BOS_TOKEN, "id": hf.bos_token_id},
                               "eos": {"token": EOS_TOKEN, "id": hf.eos_token_id},
                               "pad": {"token": PAD_TOKEN, "id": hf.pad_token_id}},
            "adds_special_tokens": False,
            "corpus": {"dir": str(corpus_dir.resolve()),
                       "manifest": str((corpus_dir / MANIFEST_FILE).resolve()) if manifest is not None else None,
                       **_manifest_summary(manifest)},
            "train": {"path": str(train_path.resolve()), "lines": stats.lines, "words": stats.words,
                      "sample": train_sample},
            "dev": dev_stats,
            "tokens_per_word_dev": dev_stats["tokens_per_word"] if dev_stats else None,
            "tokens_per_word_train_sample": train_sample["tokens_per_word"],
            "out_dir": str(out_dir.resolve()),
            "seconds": round(time.time() - started, 2),
            "run_info": run_info({"corpus_dir": str(corpus_dir), "out_dir": str(out_dir), "vocab_size": vocab_size,
                                  "min_frequency": min_frequency}),
        }
        write_json_atomic(tmp_dir / REPORT_FILE, report)
    return report


def remove_killed_build(out_dir: Path, log: Callable[[str], None] = lambda msg: None) -> list[str]:
    """Clear away what a killed :func:`train_tokenizer` left beside ``out_dir`` (the folder it was
    building, the old tokenizer a swap was moving away). Only while holding ``out_dir``'s lock."""
    return clear_killed_write(out_dir, "run", log)


def load_tokenizer(path: Path):
    """The saved tokenizer as a ``transformers`` fast tokenizer (``AutoTokenizer.from_pretrained``)."""
    path = Path(path).expanduser()
    if not (path / "tokenizer.json").is_file():
        raise InputError(f"{path}: no tokenizer.json here; train one with "
                         f"'blalm tokenizer CORPUS_DIR --out {path}'")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file, without their line ends (``\\n`` or ``\\r\\n``), streamed.

    Only ``\\n`` ends a line (a lone ``\\r`` or a Unicode line separator stays inside the line).
    Bytes that are not UTF-8 raise :class:`InputError` naming the file and line.
    """
    lineno = 0
    try:
        with open(path, encoding="utf-8", newline="\n") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.endswith("\n"):
                    line = line[:-2] if line.endswith("\r\n") else line[:-1]
                yield line
    except UnicodeDecodeError as exc:
        bad = _first_non_utf8_line(path) or lineno + 1
        raise InputError(f"{path}:{bad}: not valid UTF-8 ({exc.reason}); the corpus files must be UTF-8 text; "
                         f"rebuild the corpus with 'blalm corpus'") from None


def _first_non_utf8_line(path: Path) -> int | None:
    """The 1-based number of the first line of ``path`` that is not valid UTF-8 (the text reader
    decodes blocks ahead of the line it yields, so its error does not say which line)."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return None


def batched(items: Iterable[str], size: int = BATCH_LINES) -> Iterator[list[str]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def measure_lines(tokenizer, lines: Iterable[str]) -> dict[str, Any]:
    """One batched pass over ``lines`` with a HF tokenizer: tokens per word and the round trip.

    ``tokens`` counts the lines' own tokens (no special tokens), ``words`` their whitespace words;
    ``round_trip`` says whether ``decode(encode(line)) == line`` held for every line, how many failed,
    and the first failed line numbers (1-based).
    """
    n_lines = n_words = n_tokens = failures = 0
    first_failures: list[int] = []
    for batch in batched(lines):
        ids = _encode_batch(tokenizer, batch)
        decoded = tokenizer.batch_decode(ids, skip_special_tokens=False)
        for i, (line, back) in enumerate(zip(batch, decoded)):
            if back != line:
                failures += 1
                if len(first_failures) < MAX_LISTED_FAILURES:
                    first_failures.append(n_lines + i + 1)
        n_lines += len(batch)
        n_words += sum(len(line.split()) for line in batch)
        n_tokens += sum(len(x) for x in ids)
    return {"lines": n_lines, "words": n_words, "tokens": n_tokens,
            "tokens_per_word": round(n_tokens / n_words, 6) if n_words else None,
            "round_trip": {"lines_checked": n_lines, "failures": failures, "ok": failures == 0,
                           "first_failed_lines": first_failures}}


# ----------------------------------------------------------------------------------------------
# internals


class _TrainStats:
    """Streams train.txt in batches to the trainer, counting lines and words and keeping a sample."""

    def __init__(self, sample_step: int):
        self.sample_step = sample_step
        self.lines = 0
        self.words = 0
        self.sample: list[str] = []

    def batches(self, path: Path) -> Iterator[list[str]]:
        for batch in batched(read_lines(path)):
            for i, line in enumerate(batch, start=self.lines):
                if i % self.sample_step == 0 and len(self.sample) < TRAIN_SAMPLE_LINES:
                    self.sample.append(line)
            self.lines += len(batch)
            self.words += sum(len(line.split()) for line in batch)
            yield batch


def _encode_batch(tokenizer, batch: list[str]) -> list[list[int]]:
    return tokenizer(batch, add_special_tokens=False)["input_ids"]


def _check_settings(vocab_size: int, min_frequency: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise BlalmError(f"vocab size {vocab_size!r} is too small: byte-level BPE needs at least "
                         f"{MIN_VOCAB_SIZE} (256 bytes + {len(SPECIAL_TOKENS)} special tokens); "
                         f"the paper uses 15000 (--vocab-size 15000)")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise BlalmError(f"min frequency {min_frequency!r} must be an integer >= 1 "
                         f"(1 allows merges of pairs seen once; default 2)")


def _check_train_file(corpus_dir: Path, train_path: Path) -> int:
    """Refuse a missing or blank train.txt; return its number of lines (for the progress bar)."""
    hint = "run 'blalm corpus' first to build the corpus"
    if not corpus_dir.is_dir():
        raise InputError(f"{corpus_dir}: corpus folder not found; {hint}")
    if not train_path.is_file():
        raise InputError(f"{train_path}: training split not found; {hint}")
    n_lines = 0
    has_text = False
    last = b"\n"
    with open(train_path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            n_lines += chunk.count(b"\n")
            has_text = has_text or bool(chunk.strip())
            last = chunk[-1:]
    if last != b"\n":
        n_lines += 1
    if not has_text:
        raise InputError(f"{train_path}: the training split is empty; {hint}")
    return n_lines


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); rebuild the corpus with 'blalm corpus'") from None
    return data if isinstance(data, dict) else None


def _manifest_summary(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's budget_words / train_words / dev_words / seed (top level, else under 'config')."""
    out: dict[str, Any] = {key: None for key in MANIFEST_KEYS}
    if not manifest:
        return out
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    for key in MANIFEST_KEYS:
        out[key] = manifest.get(key, config.get(key))
    return out


def _check_out_dir(out_dir: Path, corpus_dir: Path) -> None:
    """Refuse an output folder that is the corpus (or holds it), a file, or a folder of other things."""
    out_res, corpus_res = out_dir.resolve(), corpus_dir.resolve()
    if out_res == corpus_res or out_res in corpus_res.parents:
        raise BlalmError(f"{out_dir}: the output folder would replace the corpus folder {corpus_dir}; "
                         f"choose another --out (e.g. {corpus_dir.parent / 'tokenizer'})")
    check_replaceable_dir(out_dir, TOKENIZER_FILES, "a tokenizer's")


def _save_hf(tokenizer, folder: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN,
                                 pad_token=PAD_TOKEN, clean_up_tokenization_spaces=False)
    hf.save_pretrained(str(folder))
    # transformers 5 records its internal class name ("TokenizersBackend"); the public name loads
    # as the same fast tokenizer there and is also understood by transformers 4.x.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    write_json_atomic(config_path, config)


def _check_loaded(hf, folder: Path) -> None:
    """The saved tokenizer, loaded back, is fast and has the special tokens where we put them."""
    got = (hf.is_fast, hf.bos_token_id, hf.eos_token_id, hf.pad_token_id)
    if got != (True, 0, 1, 2):  # pragma: no cover - a transformers behaviour change
        raise RuntimeError(f"{folder}: tokenizer loaded back as (is_fast, bos, eos, pad) = {got}, "
                           f"expected (True, 0, 1, 2)")


