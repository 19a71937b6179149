"""``blalm eval RUN_DIR``: every checkpoint scored, the best by the paper's average selected, re-runs cached."""

from __future__ import annotations

import json
import shutil

import pytest

from blalm.config import from_dict
from blalm.errors import InputError
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


def test_a_damaged_checkpoint_is_named_not_scored_and_never_the_best(tiny_run, data_dir, tmp_path):
    """Issue 13: every checkpoint is verified before it is scored; scores written before the damage
    are not used either."""
    mini = make_mini_eval(data_dir / "eval", tmp_path / "mini_eval")
    cfg = from_dict(EvalConfig, {"suite": "fast", "data_dir": str(mini), "device": "cpu", "progress": False,
                                 "entity_fast_per_group": 2, "tasks": [t for t, _ in PAPER_COLUMNS]})
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    first = evaluate_run(run, cfg, last=2)
    best, other = first["best"], next(r for r in first["checkpoints"] if r != first["best"])
    weights = run / "checkpoints" / best["checkpoint"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10                  # one bit of one weight: the file still loads
    weights.write_bytes(bytes(data))
    log: list[str] = []
    again = evaluate_run(run, cfg, last=2, log=log.append)
    assert again["checkpoints"] == [other] and again["best"] == other
    problem = "model.safetensors: SHA-256 differs from the one recorded when it was written (the file changed)"
    assert again["skipped"] == [{"checkpoint": best["checkpoint"], "step": best["step"], "problems": [problem]}]
    assert f"{best['checkpoint']}: skipped, not scored: the checkpoint does not verify: {problem}" in log
    assert (run / "eval" / best["checkpoint"] / "results.json").is_file()     # kept, not used
    assert json.loads((run / "eval" / SUMMARY_FILE).read_text())["best"] == other
    assert f"{best['checkpoint']}: not scored, it does not verify" in format_run_table(again)
    cut = run / "checkpoints" / other["checkpoint"] / "model.safetensors"
    cut.write_bytes(cut.read_bytes()[:1000])
    with pytest.raises(InputError, match="no checkpoint verifies, none was scored") as refused:
        evaluate_run(run, cfg, last=2)
    assert f"{best['checkpoint']}: {problem}" in str(refused.value)
    assert f"{other['checkpoint']}: model.safetensors has 1,000 bytes" in str(refused.value)
