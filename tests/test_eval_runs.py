"""``blalm eval RUN_DIR``: every checkpoint scored, the best by the paper's average selected, re-runs cached."""

from __future__ import annotations

import json

import pytest

from blalm.config import from_dict
from blalm.eval.config import PAPER_COLUMNS, EvalConfig
from blalm.eval.runs import SUMMARY_FILE, evaluate_run, format_run_table
from blalm.run.layout import is_run_dir
from blalm.train.trainer import train
from test_eval_suite import make_mini_eval
from test_train_helpers import tiny_config, train_data  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def tiny_run(train_data, tmp_path_factory):  # noqa: F811
    corpus, tokenizer = train_data
    out = tmp_path_factory.mktemp("eval_run") / "run"
    train(tiny_config(corpus, tokenizer, max_steps=12), out)
    return out


def test_run_folder_is_scored_checkpoint_by_checkpoint(tiny_run, data_dir, tmp_path):
    mini = make_mini_eval(data_dir / "eval", tmp_path / "mini_eval")
    cfg = from_dict(EvalConfig, {"suite": "fast", "data_dir": str(mini), "device": "cpu", "progress": False,
                                 "entity_fast_per_group": 2, "tasks": [t for t, _ in PAPER_COLUMNS]})
    assert is_run_dir(tiny_run) and not is_run_dir(tiny_run / "checkpoints")
    summary = evaluate_run(tiny_run, cfg, last=2)
    rows = summary["checkpoints"]
    assert len(rows) == 2 and rows[0]["step"] < rows[1]["step"]
    for row in rows:
        report = json.loads((tiny_run / "eval" / row["checkpoint"] / "results.json").read_text())
        assert report["average"]["score"] == pytest.approx(row["average"])
        assert row["average"] == pytest.approx(sum(row[t] for t, _ in PAPER_COLUMNS) / 6)
    assert summary["best"]["average"] == max(r["average"] for r in rows)
    assert json.loads((tiny_run / "eval" / SUMMARY_FILE).read_text())["best"] == summary["best"]
    table = format_run_table(summary)
    assert f"{summary['best']['checkpoint']} (best)" in table and "words seen" in table
    # a second pass reuses the scores already written with the same settings
    stamps = {r["checkpoint"]: (tiny_run / "eval" / r["checkpoint"] / "results.json").stat().st_mtime_ns
              for r in rows}
    assert evaluate_run(tiny_run, cfg, last=2)["checkpoints"] == rows
    assert stamps == {r["checkpoint"]: (tiny_run / "eval" / r["checkpoint"] / "results.json").stat().st_mtime_ns
                      for r in rows}
