"""Shared pieces of the submission tests: a CPU-sized run with every strict-small milestone, and a
small evaluation folder in the official layout with every task.

The run is the demo training config (configs/train/demo.toml) shrunk to a tiny BLaLM on the training
tests' real corpus slice (2.4k words, a 500-id BPE), one epoch of ~150 steps with milestone_scale
2.3e-5, so that each of the 19 strict-small milestones (23 ... 2,300 words seen) gets a checkpoint of
its own.

The evaluation folder holds slices of the real data (``test_eval_suite.make_mini_eval`` plus slices of
the full sets and of the GLUE files) and, for what ../shared/data lacks, files made here in the
official formats: a BoolQ training file (rows of the BoolQ valid file that the slice does not use),
COMPS (hand-written pairs) and the AoA word file (real dev-text contexts of CDI words). EWoK is
re-zipped without a password in the temporary folder (the tests only).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from blalm.eval.config import EWOK_PASSWORD
from test_eval_suite import make_mini_eval
from test_train_helpers import tiny_config

SCALE = 2.3e-5            # 100M words x SCALE = 2,300 words seen < the 2,381 of one epoch
GLUE_ROWS = {"train": 8, "valid": 6}
COMPS_FILES = ("comps_base", "comps_wugs", "comps_wugs_dist-before", "comps_wugs_dist-in_between")
COMPS_ROWS = [("A robin", "A stone", "can fly."), ("A knife", "A pillow", "can cut bread."),
              ("A fish", "A chair", "lives in water.")]
AOA_WORDS = ("dog", "ball", "milk", "book", "water", "car")
READING_ROWS = 120


def train_submit_run(corpus: Path, tokenizer: Path, out: Path, **extra) -> Path:
    from blalm.train.trainer import train

    values = dict(context_length=16, global_batch=2, micro_batch=2, epochs=1, milestone_scale=SCALE,
                  eval_max_blocks=4, log_every=50, track="strict-small")
    values.update(extra)
    train(tiny_config(corpus, tokenizer, **values), out)
    return out


def _head_lines(src: Path, n: int, skip: int = 0) -> list[str]:
    with src.open(encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    return lines[skip:skip + n]


def _zip_subset(src_zip: Path, dst_zip: Path, per_member: int) -> None:
    dst_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src_zip) as zin, zipfile.ZipFile(dst_zip, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            if name.endswith(".jsonl"):
                lines = zin.open(name, pwd=EWOK_PASSWORD).read().decode("utf-8").splitlines(keepends=True)
                zout.writestr(name, "".join(lines[:per_member]))


def _write_glue(src: Path, dst: Path) -> None:
    import lzma

    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        task, split = path.name.split(".")[:2]
        opener = lzma.open if path.suffix == ".xz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            lines = [line for _, line in zip(range(GLUE_ROWS[split]), fh)]
        (dst / f"{task}.{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    # BoolQ has no official training file: a few real BoolQ rows that the valid slice does not use
    boolq = _head_lines(src / "boolq.valid.jsonl", GLUE_ROWS["train"], skip=100)
    (dst / "boolq.train.jsonl").write_text("".join(boolq), encoding="utf-8")


def _write_comps(dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in COMPS_FILES:
        rows = [{"prefix_acceptable": good, "prefix_unacceptable": bad, "property_phrase": phrase}
                for good, bad, phrase in COMPS_ROWS]
        (dst / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_aoa_words(dev_text: Path, dst: Path) -> None:
    lines = [line.strip() for line in dev_text.read_text(encoding="utf-8").splitlines() if line.strip()]
    words = {}
    for word in AOA_WORDS:
        contexts = [line.split(f" {word}")[0] for line in lines if f" {word}" in line][:2]
        words[word] = [{"context": c} for c in (contexts or ["the"])]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(words), encoding="utf-8")


def make_submit_eval(src: Path, dst: Path, dev_text: Path) -> Path:
    """The official layout with every task: slices of the real data plus the files made here."""
    make_mini_eval(src, dst)
    fe, fu = dst / "fast_eval", dst / "full_eval"
    for part, per in (("blimp_filtered", 30), ("supplement_filtered", 15)):
        for path in sorted((fe / ("blimp_fast" if part == "blimp_filtered" else "supplement_fast")).iterdir()):
            (fu / part).mkdir(parents=True, exist_ok=True)
            (fu / part / path.name).write_text("".join(_head_lines(src / "full_eval" / part / path.name, per)),
                                               encoding="utf-8")
    _zip_subset(src / "fast_eval/ewok_fast.zip", fe / "ewok_fast.zip", 4)
    _zip_subset(src / "full_eval/ewok_filtered.zip", fu / "ewok_filtered.zip", 6)
    shutil.copy(src / "full_eval/wug_past_tense.zip", fu / "wug_past_tense.zip")
    (fu / "wug_adj_nominalization").mkdir(parents=True)
    (fu / "wug_adj_nominalization/wug_adj_nominalization.jsonl").write_text(
        "".join(_head_lines(src / "full_eval/wug_adj_nominalization/wug_adj_nominalization.jsonl", 30)), "utf-8")
    (fu / "reading").mkdir(parents=True)
    reading = (src / "fast_eval/reading/reading_data.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    for part in (fe, fu):
        (part / "reading/reading_data.csv").write_text("".join(reading[:1 + READING_ROWS]), encoding="utf-8")
    _write_glue(src / "full_eval/glue_filtered", fu / "glue_filtered")
    _write_comps(fu / "comps")
    _write_aoa_words(dev_text, fu / "aoa" / "cdi_childes.json")
    return dst


def official_fast_dir(eval_dir: Path, dst: Path) -> Path:
    """The fast data as the official ``collate_preds.py`` reads it (``--fast_eval_dir``): plain folders,
    ``entity_tracking_fast/regular.jsonl`` = the regular split (see blalm.submit.layout)."""
    fe = eval_dir / "fast_eval"
    for name in ("blimp_fast", "supplement_fast", "wug_adj_nominalization", "reading"):
        shutil.copytree(fe / name, dst / name)
    for zip_name, folder in (("ewok_fast.zip", "ewok_fast"), ("wug_past_tense.zip", "wug_past_tense")):
        (dst / folder).mkdir(parents=True)
        with zipfile.ZipFile(fe / zip_name) as zf:
            for name in zf.namelist():
                if name.endswith(".jsonl"):
                    (dst / folder / Path(name).name).write_bytes(zf.open(name, pwd=EWOK_PASSWORD).read())
    (dst / "entity_tracking_fast").mkdir()
    shutil.copy(eval_dir / "full_eval/entity_tracking/regular.jsonl", dst / "entity_tracking_fast/regular.jsonl")
    return dst
