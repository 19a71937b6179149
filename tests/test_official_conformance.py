"""blalm's fp32 scores against the official BabyLM 2025 pipeline's, run here on the same model.

The official pipeline (the pristine copy in ../shared/babylm-pipeline) runs in a subprocess on a
tiny BLaLM exported as a Hugging Face folder (ShortConv + SWA DynMod Bounded, peaky random weights
so that candidates rarely come close), on the first records of every file of the fast suite:
BLiMP (all 67 paradigms), the supplement, EWoK (its zip's members served through pipes, never
written out), WUG (both), entity tracking (every split and number of operations) and reading.
blalm scores the same records with its default batching (token budget, shared prefixes, no mask).
Asserted: every item's chosen candidate is the official one (the first maximum, so ties count as
the pipeline counts them) except where our two best candidates are within 1e-4 (none expected),
every group's accuracy and the average as the pipeline prints them, WUG's preference per item and
Spearman's rho, and the reading surprisal per row and both reading scores.

The pipeline's own extra dependencies (scipy; pandas and statsmodels for reading) are installed
once into ``.cache/official-deps`` (git-ignored) from PyPI and reused.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from blalm.bench.eval import default_pipeline_dir, official_workdir, prepare_official_data, run_official
from blalm.config import from_dict
from blalm.eval.config import ENTITY_SPLITS, EWOK_PASSWORD, EvalConfig
from blalm.eval.data import load_entity_tracking, load_ewok, load_minimal_pairs, load_reading, load_wug
from blalm.eval.loading import load_for_eval
from blalm.eval.metrics import softmax_first
from blalm.eval.reading import reading_results, reading_surprisals
from blalm.eval.tasks import accuracy_result, entity_tracking_result, score_items, wug_result
from conftest import jsonl_text_lines

PER_FILE = 10          # records of each data file
ENTITY_PER_GROUP = 2   # items of each (split, numops) group
READING_ROWS = 200
NEAR_TIE = 1e-4


@pytest.fixture(scope="module")
def export(repo_root, data_dir, tmp_path_factory) -> Path:
    from blalm.model.checkpoint import save_model
    from blalm.model.cli import load_model_config
    from blalm.model.decoder import build_model
    from blalm.model.export import export_hf
    from blalm.tokenizer.train import train_tokenizer

    root = tmp_path_factory.mktemp("conformance")
    lines = jsonl_text_lines(data_dir / "dev" / "wikipedia-000.jsonl.xz", 1500)
    lines += jsonl_text_lines(data_dir / "dev" / "childes-000.jsonl.xz", 1500)
    (root / "corpus").mkdir()
    (root / "corpus" / "train.txt").write_text("".join(ln + "\n" for ln in lines[:2800]), "utf-8")
    (root / "corpus" / "dev.txt").write_text("".join(ln + "\n" for ln in lines[2800:]), "utf-8")
    train_tokenizer(root / "corpus", root / "tokenizer", vocab_size=500, show_progress=False)
    torch.manual_seed(7)
    cfg = load_model_config(repo_root / "configs/model/tiny_blalm.toml",
                            ["vocab_size=500", "short_conv=true", "swa=dynmod_bounded", "swa_window=8",
                             "chunk_size=8", "init_std=0.3"])
    ckpt = save_model(build_model(cfg).eval(), root / "ckpt", tokenizer_dir=root / "tokenizer")
    return export_hf(ckpt, root / "blalm-tiny-export")


@pytest.fixture(scope="module")
def official(export, data_dir, official_deps, repo_root):
    """The official pipeline's outputs on the subsets, and our config pointing at the same data."""
    pipeline = default_pipeline_dir()
    if not (pipeline / "evaluation_pipeline").is_dir():
        pytest.fail(f"the official pipeline is missing: expected {pipeline} (../shared/babylm-pipeline)")
    cfg = from_dict(EvalConfig, {"data_dir": str(data_dir / "eval"), "device": "cpu", "precision": "fp32",
                                 "progress": False, "entity_fast_per_group": ENTITY_PER_GROUP})
    tasks = ["blimp", "blimp_supplement", "ewok", "wug_adj", "wug_past", "entity_tracking", "reading"]
    # not under the system temp folder: test_eval_suite looks there for EWoK plaintext, and a pipe is no file to read
    with official_workdir(repo_root / ".cache") as (folder, pipes):
        data = prepare_official_data(cfg, tasks, folder / "data", pipes, per_file=PER_FILE, reading_rows=READING_ROWS)
        run = run_official(export, data, folder, pipeline=pipeline, deps=official_deps, timeout=600)
        kept = {t: (run.predictions(t), run.report(t)) for t in tasks if t != "reading"}
        kept["reading"] = (run.predictions("reading"), run.reading_scores())
        shutil.copy(data["reading"], folder.parent / f"{folder.name}-reading.csv")
        reading_csv = folder.parent / f"{folder.name}-reading.csv"
    yield cfg, kept, reading_csv
    reading_csv.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ours(export):
    return load_for_eval(export)


def first_lines(items, n: int = PER_FILE):
    """The items from each file's first ``n`` records (what the official run was given)."""
    return [it for it in items if int(it.source.rsplit(":", 1)[1]) <= n]


def first_max(scores) -> int:
    return list(scores).index(max(scores))


def assert_same_choices(items, scores, predictions) -> int:
    """Our chosen candidate of every item is the official one (outside near-ties); returns the near-ties."""
    by_group: dict[str, list] = {}
    for it, s in zip(items, scores):
        by_group.setdefault(it.group, []).append((it, s))
    assert set(by_group) == set(predictions)
    near = 0
    for group, pairs in by_group.items():
        preds = predictions[group]["predictions"]
        assert len(preds) == len(pairs), group
        for (it, s), pred in zip(pairs, preds):
            top = sorted(s, reverse=True)
            if top[0] - top[1] < NEAR_TIE:
                near += 1
                continue
            assert pred["pred"] == it.completions[first_max(s)], (group, it.source, s)
    return near


def assert_report(result, report, per_group_key: str = "per_group") -> None:
    for group, detail in result[per_group_key].items():
        assert round(detail["accuracy"], 2) == pytest.approx(report[group], abs=1e-9), group
    assert round(result["score"], 2) == pytest.approx(report["__average__"], abs=1e-9)


@pytest.mark.parametrize("task", ["blimp", "blimp_supplement", "ewok"])
def test_minimal_pairs_and_ewok_equal_the_official_scores(task, official, ours):
    cfg, kept, _ = official
    model, tok = ours
    if task == "ewok":
        items = first_lines(load_ewok(cfg.task_path("ewok"), EWOK_PASSWORD))
    else:
        items = first_lines(load_minimal_pairs(cfg.task_path(task), task))
    scores = score_items(model, tok, items)
    predictions, report = kept[task]
    assert assert_same_choices(items, scores, predictions) == 0
    assert_report(accuracy_result(items, scores), report)
    if task == "blimp":
        assert len({it.group for it in items}) == 67


def test_entity_tracking_equals_the_official_scores(official, ours):
    cfg, kept, _ = official
    model, tok = ours
    items = load_entity_tracking(cfg.task_path("entity_tracking"), per_group=ENTITY_PER_GROUP)
    scores = score_items(model, tok, items)       # the shared-prefix path (a blalm model)
    predictions, report = kept["entity_tracking"]
    assert assert_same_choices(items, scores, predictions) == 0
    result = entity_tracking_result(items, scores, ENTITY_SPLITS)
    assert_report(result, report)
    for split in ENTITY_SPLITS:
        assert round(result["per_split"][split], 2) == pytest.approx(report[split], abs=1e-9)


@pytest.mark.parametrize("task", ["wug_adj", "wug_past"])
def test_wug_equals_the_official_preferences_and_correlation(task, official, ours):
    cfg, kept, _ = official
    model, tok = ours
    items = first_lines(load_wug(cfg.task_path(task), EWOK_PASSWORD, task))
    scores = score_items(model, tok, items)
    predictions, report = kept[task]
    preds = [p for group in predictions.values() for p in group["predictions"]]
    assert len(preds) == len(items)
    for s, pred in zip(scores, preds):
        assert softmax_first(s) == pytest.approx(pred["prob"], abs=1e-4)
    result = wug_result(items, scores)
    assert abs(result["spearman"] - report["__average__"]) <= 0.005 + 1e-9


def test_reading_equals_the_official_surprisals_and_scores(official, ours):
    _, kept, reading_csv = official
    model, tok = ours
    rows = load_reading(reading_csv)
    assert len(rows) == READING_ROWS
    pred, prev = reading_surprisals(model, tok, rows)
    predictions, scores = kept["reading"]
    official_rows = predictions["reading"]["predictions"]
    for p, q, row in zip(pred, prev, official_rows):
        assert p == pytest.approx(row["pred"], abs=1e-4)
        assert (math.isnan(q) and math.isnan(row["prev_pred"])) or q == pytest.approx(row["prev_pred"], abs=1e-4)
    result = reading_results(rows, pred, prev)
    assert result["eye_tracking"]["score"] == pytest.approx(scores["eye_tracking"], abs=1e-3)
    assert result["self_paced_reading"]["score"] == pytest.approx(scores["self_paced_reading"], abs=1e-3)
