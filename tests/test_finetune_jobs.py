"""``blalm finetune --jobs N`` (blalm.finetune.parallel): the tasks split into groups of about equal
steps (pure function; the protocol's step counts from the real files), each group fine-tuned by a
child process; on the CPU the report, scores and predictions are those of one process; a failing
child is named with its log; a killed parent's run resumes. The tiny model and GLUE slices are
test_finetune's."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from blalm import cli
from blalm.finetune.cli import config_from_args
from blalm.finetune.parallel import child_command, estimated_steps, split_tasks
from blalm.finetune.run import finetune
from blalm.finetune.tasks import TaskUnavailable
from blalm.lock import RunLock, RunLocked
from blalm.run import checkpoint as ckpt
from test_finetune import _cfg, glue_dir, model_dir  # noqa: F401  (fixtures)

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_STEPS = {"mnli": 3120, "mrpc": 1140, "multirc": 17020, "qqp": 3120, "rte": 770, "wsc": 510}


# ----------------------------------------------------------------------------------------------
# the split


def _loads(groups, steps):
    return [sum(steps[t] for t in g) for g in groups]


def test_the_protocols_steps_are_estimated_from_the_files_and_split_largest_first(glue_dir):  # noqa: F811
    """Training lines / batch x epochs of the real glue_filtered files: the official protocol's
    25,680 steps (full batches only), MultiRC 17,020 of them (so three processes wait on MultiRC)."""
    cfg = _cfg("model", glue_dir, tasks=list(PROTOCOL_STEPS), max_train=0, batch_size=0, epochs=0)
    assert {t: estimated_steps(cfg, t) for t in PROTOCOL_STEPS} == PROTOCOL_STEPS
    with pytest.raises(TaskUnavailable, match="boolq.train.jsonl"):
        estimated_steps(cfg, "boolq")
    assert estimated_steps(dataclasses.replace(cfg, max_train=30, batch_size=4, epochs=2), "rte") == 14   # 30 // 4 x 2
    assert split_tasks(PROTOCOL_STEPS, 3) == [["multirc"], ["mnli", "mrpc"], ["qqp", "rte", "wsc"]]
    assert split_tasks(PROTOCOL_STEPS, 1) == [["multirc", "mnli", "qqp", "mrpc", "rte", "wsc"]]


def test_groups_hold_every_task_once_and_are_balanced():
    """Random step counts: every task in exactly one group, min(jobs, tasks) groups, none empty, the
    longest group within the greedy bound (mean + the longest task) and within 4/3 of the best split
    (brute force)."""
    rng = np.random.default_rng(0)
    for n, jobs in itertools.product(range(1, 8), range(1, 5)):
        steps = {f"t{i}": int(s) for i, s in enumerate(rng.integers(1, 2000, size=n))}
        groups = split_tasks(steps, jobs)
        assert sorted(t for g in groups for t in g) == sorted(steps)
        assert len(groups) == min(jobs, n) and all(groups)
        longest = max(_loads(groups, steps))
        assert longest <= sum(steps.values()) / len(groups) + max(steps.values())
        best = min(max(_loads([[t for t, k in zip(steps, pick) if k == g] for g in range(len(groups))], steps))
                   for pick in itertools.product(range(len(groups)), repeat=n))
        assert longest <= 4 / 3 * best, (steps, jobs, groups)
    assert split_tasks({"rte": 780, "wsc": 540}, 8) == [["rte"], ["wsc"]]     # more jobs than tasks
    assert split_tasks({}, 3) == []
    assert split_tasks({"a": 5, "b": 5, "c": 5}, 2) == [["a", "c"], ["b"]]   # ties: the input order
    with pytest.raises(ValueError):
        split_tasks({"a": 1}, 0)


def test_a_childs_command_line_gives_the_parents_settings(model_dir, glue_dir, tmp_path):  # noqa: F811
    """Every setting goes to the child on its command line and reads back the same (paths with spaces,
    quotes and non-ASCII letters, floats), with the group's tasks, jobs = 1 and no progress bar."""
    model = tmp_path / 'my "model" é'
    cfg = _cfg(model, glue_dir, jobs=3, lr=3e-5, warmup_fraction=0.1, compile=True, progress=True)
    cmd = child_command(cfg, tmp_path / "out", ["rte", "wsc"], 4321)
    assert cmd[:4] == [sys.executable, "-m", "blalm.cli", "finetune"]
    args = cli.build_parser().parse_args(cmd[3:])
    assert args.child_of == 4321 and args.out == tmp_path / "out"
    assert config_from_args(args) == dataclasses.replace(cfg, tasks=["rte", "wsc"], jobs=1, progress=False)


# ----------------------------------------------------------------------------------------------
# running groups side by side


def _task_records(out: Path, task: str) -> tuple[dict, list[dict]]:
    res = json.loads((out / task / "results.json").read_text())
    records = [json.loads(line) for line in (out / task / "metrics.jsonl").read_text().splitlines()]
    return res, records


def _same_task(a: Path, b: Path, task: str) -> None:
    (res_a, _), (res_b, _) = _task_records(a, task), _task_records(b, task)
    for key in ("predictions", "per_epoch", "accuracy", "f1", "mcc", "score", "best_epoch", "steps"):
        assert res_a.get(key) == res_b.get(key), (task, key)
    w_a, w_b = (load_file(str(ckpt.read_latest(d / task / "checkpoints") / "model.safetensors")) for d in (a, b))
    assert w_a.keys() == w_b.keys() and all(torch.equal(w_a[k], w_b[k]) for k in w_a), task


def _report(out: Path) -> dict:
    report = json.loads((out / "results.json").read_text())
    return {"glue": report["glue"],
            "tasks": {t: {k: v for k, v in r.items() if k not in ("seconds", "checkpoint")}
                      for t, r in report["tasks"].items()}}


def test_two_jobs_give_the_results_of_one_process(model_dir, glue_dir, tmp_path):  # noqa: F811
    """``jobs = 2`` over RTE and MRPC: two children (a log each), then the pass here reads both back
    and writes the report: its scores, the predictions and the weights are those of ``jobs = 1``."""
    kw = dict(tasks=["rte", "mrpc"], max_train=12, max_valid=12)
    finetune(_cfg(model_dir, glue_dir, **kw), tmp_path / "one", log=lambda m: None)
    lines: list[str] = []
    report = finetune(_cfg(model_dir, glue_dir, jobs=2, **kw), tmp_path / "two", log=lines.append)
    two = tmp_path / "two"
    assert lines[0] == "2 task(s) in 2 processes: rte (~3 steps) | mrpc (~3 steps)"
    assert f"started group rte (log {two / 'logs' / 'rte.log'})" in lines
    assert "group mrpc: done" in lines and "group rte: done" in lines
    assert {ln for ln in lines if ln.endswith(" of 2 tasks)")} == {"rte: done (1 of 2 tasks)", "mrpc: done (2 of 2 tasks)"} \
        or {ln for ln in lines if ln.endswith(" of 2 tasks)")} == {"mrpc: done (1 of 2 tasks)", "rte: done (2 of 2 tasks)"}
    assert "rte: already done" in "\n".join(lines) and "mrpc: already done" in "\n".join(lines)
    assert _report(two) == _report(tmp_path / "one") and report["config"]["jobs"] == 2
    for task in ("rte", "mrpc"):
        _same_task(tmp_path / "one", two, task)
        _, records = _task_records(two, task)
        setups = [r for r in records if r["kind"] == "setup"]
        assert len(setups) == 1 and setups[0]["total_steps"] == 3              # trained once, by its child
        log = (two / "logs" / f"{task}.log").read_text()
        assert "--child-of" in log.splitlines()[0] and f"{task}: best epoch 1 of 1" in log
    assert not (two / "logs" / "rte-mrpc.log").exists()
    # the same command again: nothing to train, no child started; the same report
    lines.clear()
    finetune(_cfg(model_dir, glue_dir, jobs=2, **kw), two, log=lines.append)
    assert not any(ln.startswith("started") for ln in lines) and _report(two) == _report(tmp_path / "one")


def test_a_failing_group_is_named_with_its_log_after_the_others_finish(model_dir, glue_dir, tmp_path, capsys):  # noqa: F811
    """RTE's training file is damaged in a copied data folder: its child fails, WSC's runs to its end;
    the command exits with status 2 naming RTE's group and log, and writes no report. With the file
    repaired, the same command trains RTE alone (here) and reads WSC back."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("rte.valid.jsonl", "wsc.train.jsonl", "wsc.valid.jsonl"):
        shutil.copy(glue_dir / name, data / name)
    rows = (glue_dir / "rte.train.jsonl").read_text().splitlines()[:12]
    (data / "rte.train.jsonl").write_text("\n".join([rows[0], '{"sentence1": broken', *rows[2:]]) + "\n")
    out = tmp_path / "ft"
    args = [str(model_dir), "--tasks", "rte,wsc", "--out", str(out), "--eval-data", str(data), "--device", "cpu",
            "--jobs", "2", *itertools.chain.from_iterable(("--set", s) for s in (
                "max_train=12", "max_valid=12", "batch_size=4", "epochs=1", "max_length=48", "lr=1e-3"))]
    assert cli.main(["finetune", *args]) == 2
    err = capsys.readouterr().err
    assert f"1 of 2 task group(s) failed:\n  group rte: exit status 2; see {out / 'logs' / 'rte.log'}" in err
    assert "group wsc: done" in err and "wsc: done (1 of 2 tasks)" in err
    assert f"{data / 'rte.train.jsonl'}:2: not valid JSON" in (out / "logs" / "rte.log").read_text()
    assert (out / "wsc" / "results.json").is_file() and not (out / "results.json").exists()
    (data / "rte.train.jsonl").write_text("\n".join(rows) + "\n")
    assert cli.main(["finetune", *args]) == 0
    err = capsys.readouterr().err
    assert "one task left to fine-tune (rte): fine-tuned in this process" in err and "wsc: already done" in err
    report = json.loads((out / "results.json").read_text())
    assert [report["tasks"][t]["status"] for t in ("rte", "wsc")] == ["ok", "ok"]
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["rte.log", "wsc.log"]


def test_a_second_parent_into_the_same_out_is_refused_before_any_child_starts(model_dir, glue_dir,  # noqa: F811
                                                                              tmp_path):
    out = tmp_path / "ft"
    lines: list[str] = []
    with RunLock(out, what="fine-tuning run (--jobs)"):
        with pytest.raises(RunLocked, match=rf"{out} is in use: pid {os.getpid()} .* fine-tuning run \(--jobs\)"):
            finetune(_cfg(model_dir, glue_dir, tasks=["rte", "wsc"], jobs=2), out, log=lines.append)
    assert lines == [] and not (out / "logs").exists()


def test_jobs_is_checked_and_explained(model_dir, tmp_path, capsys):  # noqa: F811
    assert cli.main(["finetune", str(model_dir), "--out", str(tmp_path / "o"), "--jobs", "0"]) == 2
    assert "jobs must be at least 1 (1 = every task in this process), got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--jobs N" in text and "DIR/logs/<group>.log" in text and "--child-of" not in text




@pytest.mark.slow   # three processes importing torch, a run of 300 steps twice: ~30 s on 2 cores (make test-all)
def test_a_killed_parent_ends_its_children_and_the_same_command_resumes(model_dir, glue_dir, tmp_path):  # noqa: F811
    """The parent is killed (SIGKILL) when RTE (4 steps) is done, while MRPC (300 steps, a few
    seconds) trains: MRPC's child ends too (its lock is free), unfinished; the same call resumes MRPC from
    its checkpoint to the very end of a one-process run."""
    data = tmp_path / "data"
    data.mkdir()
    for name, n in (("rte.train.jsonl", 8), ("rte.valid.jsonl", 8), ("mrpc.train.jsonl", 600),
                    ("mrpc.valid.jsonl", 8)):
        (data / name).write_text("\n".join((glue_dir / name).read_text().splitlines()[:n]) + "\n")
    kw = dict(tasks=["rte", "mrpc"], max_train=0, max_valid=0, epochs=2, save_every=25)
    finetune(_cfg(model_dir, data, **kw), tmp_path / "one", log=lambda m: None)
    out = tmp_path / "two"
    args = [str(model_dir), "--tasks", "rte,mrpc", "--out", str(out), "--eval-data", str(data), "--device", "cpu",
            "--jobs", "2", *itertools.chain.from_iterable(("--set", s) for s in (
                "max_train=0", "max_valid=0", "batch_size=4", "epochs=2", "max_length=48", "lr=1e-3", "save_every=25"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BLALM_FAULT": "finetune_jobs_task_done@1"}
    run = subprocess.run([sys.executable, "-m", "blalm.cli", "finetune", *args], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert "rte: done (1 of 2 tasks)" in run.stderr
    deadline = time.time() + 20
    while time.time() < deadline:                   # MRPC's child ends: its lock can be taken
        try:
            RunLock(out / "mrpc").acquire().release()
            break
        except Exception:
            time.sleep(0.2)
    else:
        pytest.fail("the child of the killed parent still holds out/mrpc/.lock")
    assert not (out / "mrpc" / "results.json").exists()
    assert ckpt.read_latest(out / "mrpc" / "checkpoints") is not None           # it had started
    finetune(_cfg(model_dir, data, jobs=2, **kw), out, log=lambda m: None)     # one task left: resumed here
    _, records = _task_records(out, "mrpc")
    assert [r["kind"] for r in records].count("resume") == 1
    assert _report(out) == _report(tmp_path / "one")
    for task in ("rte", "mrpc"):
        _same_task(tmp_path / "one", out, task)
