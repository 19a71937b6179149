"""Scoring while training (issue 15): ``blalm train --eval fast`` scores every checkpoint in a side
process as it is written, ends with the summary ``blalm eval RUN_DIR`` writes, and survives a kill
(what was scored is not scored again; the rest is scored on resume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blalm.config import from_dict
from blalm.eval.config import EvalConfig
from blalm.eval.runs import SUMMARY_FILE, evaluate_run
from test_eval_suite import make_mini_eval
from test_train_helpers import DEMO_TRAIN_CONFIG, REPO_ROOT, tiny_overrides, train_data  # noqa: F401

SCORE_SET = ["entity_fast_per_group=1", "tasks=[\"blimp\", \"blimp_supplement\", \"ewok\", \"entity_tracking\", " \
             "\"eye_tracking\", \"self_paced_reading\"]"]


def train_command(corpus: Path, tokenizer: Path, run: Path, mini: Path, **extra) -> list[str]:
    sets = tiny_overrides(corpus, tokenizer, **extra) + [f"score_set={json.dumps(SCORE_SET)}"]
    return [sys.executable, "-m", "blalm.cli", "train", str(DEMO_TRAIN_CONFIG), "--out", str(run), "--eval", "fast",
            "--eval-data", str(mini), *[a for o in sets for a in ("--set", o)]]


def stamps(run: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (run / "eval").glob("*/results.json")}


def checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def mini(data_dir, tmp_path_factory) -> Path:
    return make_mini_eval(data_dir / "eval", tmp_path_factory.mktemp("score_eval") / "eval")


def blalm_eval_config(mini: Path) -> EvalConfig:
    return from_dict(EvalConfig, {"suite": "fast", "data_dir": str(mini), "device": "cpu", "progress": False,
                                  "entity_fast_per_group": 1, "tasks": json.loads(SCORE_SET[1].split("=", 1)[1])})


def test_train_eval_fast_scores_every_checkpoint_as_blalm_eval_does(train_data, mini, tmp_path):
    corpus, tokenizer = train_data
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(train_command(corpus, tokenizer, run, mini, max_steps=10), env=env, capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    summary = json.loads((run / "eval" / SUMMARY_FILE).read_text())
    assert [c["checkpoint"] for c in summary["checkpoints"]] and set(stamps(run)) == set(checkpoints(run))
    assert f"best checkpoint: {summary['best']['checkpoint']}" in done.stdout
    assert (run / "eval" / "follow.log").is_file()
    before = stamps(run)
    again = evaluate_run(run, blalm_eval_config(mini))          # 'blalm eval RUN_DIR' finds it all done
    assert again["checkpoints"] == summary["checkpoints"] and again["best"] == summary["best"]
    assert stamps(run) == before


def test_a_killed_run_with_eval_scores_the_rest_on_resume_and_nothing_twice(train_data, mini, tmp_path):
    corpus, tokenizer = train_data
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BLALM_FAULT": "checkpoint_done@2"}
    killed = subprocess.run(train_command(corpus, tokenizer, run, mini, max_steps=10), env=env,
                            capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert killed.returncode == -9, (killed.stdout + killed.stderr)[-3000:]
    deadline = time.monotonic() + 300             # the follower sees the trainer gone, scores what is there
    while time.monotonic() < deadline and "training process has ended" not in _follow_log(run) \
            and "final checkpoint" not in _follow_log(run):
        time.sleep(0.5)
    first = stamps(run)
    assert first and len(first) == len(checkpoints(run)), _follow_log(run)[-2000:]
    env.pop("BLALM_FAULT")
    done = subprocess.run(train_command(corpus, tokenizer, run, mini, max_steps=10), env=env, capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    after = stamps(run)
    assert {k: after[k] for k in first} == first              # scored before the kill: not scored again
    assert set(after) == set(checkpoints(run)) and len(after) > len(first)


def _follow_log(run: Path) -> str:
    path = run / "eval" / "follow.log"
    return path.read_text(errors="replace") if path.is_file() else ""


def test_a_missing_evaluation_folder_is_refused_before_training(train_data, tmp_path):
    from blalm.errors import InputError
    from blalm.train.trainer import train
    from test_train_helpers import tiny_config

    corpus, tokenizer = train_data
    cfg = tiny_config(corpus, tokenizer, score_suite="fast", score_data=str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="nowhere: evaluation data folder not found for --eval fast"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
