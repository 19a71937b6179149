"""``blalm submit`` on a CPU-sized run with every strict-small milestone (see submit_fixtures.py):
the model repository's branches load in transformers without blalm and give the checkpoints' logits,
the official collate_preds.py accepts the results folder and writes our submission.json, the
predictions read back give the scores blalm eval reports, a killed submit resumes to the identical
result, and an incomplete run lists what it lacks by name."""

from __future__ import annotations

import collections
import dataclasses
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest
import torch

from blalm import cli
from blalm.errors import BlalmError, ConfigError, InputError
from blalm.submit.build import build_submission
from blalm.submit.config import SubmitConfig
from blalm.submit.layout import (FAST_TASKS, FULL_TASKS, GLUE_TASKS, TRACK_REVISIONS, map_milestones,
                                 predictions_path, revision_words)
from submit_fixtures import SCALE, make_submit_eval, official_fast_dir, train_submit_run
from child_process import run_child
from test_train_helpers import train_data  # noqa: F401  (fixture)

NAME = "tiny"
FINETUNE = ["max_train=8", "epochs=1"]

@pytest.fixture(scope="module")
def submit_run(train_data, tmp_path_factory) -> Path:  # noqa: F811
    corpus, tokenizer = train_data
    return train_submit_run(corpus, tokenizer, tmp_path_factory.mktemp("submit_run") / "run")


@pytest.fixture(scope="module")
def submit_eval(data_dir, train_data, tmp_path_factory) -> Path:  # noqa: F811
    return make_submit_eval(data_dir / "eval", tmp_path_factory.mktemp("submit_eval") / "eval",
                            train_data[0] / "dev.txt")


def submit_config(eval_dir: Path, **extra) -> SubmitConfig:
    extra = {"finetune": list(FINETUNE), "device": "cpu", **extra}
    return SubmitConfig(name=NAME, data_dir=str(eval_dir), progress=False, **extra)


@pytest.fixture(scope="module")
def submission(submit_run, submit_eval, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("submission") / "sub"
    return out, build_submission(submit_run, out, submit_config(submit_eval))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


# ----------------------------------------------------------------------------------------------
# the names


def test_official_revisions_and_the_scaled_milestone_mapping():
    assert len(TRACK_REVISIONS["strict-small"]) == 19 and len(TRACK_REVISIONS["strict"]) == 28
    assert TRACK_REVISIONS["strict-small"][8:11] == ("chck_9M", "chck_10M", "chck_20M")
    assert TRACK_REVISIONS["strict"][-2:] == ("chck_900M", "chck_1000M")
    assert revision_words("chck_30M") == 30_000_000
    ckpts = [{"name": "a", "milestones": [50_000]}, {"name": "b", "milestones": [100_000, 150_000]},
             {"name": "epoch_01", "milestones": []}]
    mapped = {m.revision: (m.checkpoint or {}).get("name") for m in map_milestones(ckpts, "strict-small", 0.05)}
    assert mapped["chck_1M"] == "a" and mapped["chck_2M"] == mapped["chck_3M"] == "b"
    assert mapped["chck_4M"] is None and mapped["chck_100M"] is None


# ----------------------------------------------------------------------------------------------
# the complete submission


def test_submission_has_every_revision_task_and_branch(submission, submit_run):
    out, status = submission
    assert status["complete"] and status["missing"] == []
    revisions = TRACK_REVISIONS["strict-small"]
    assert set(git(out / "model", "branch", "--format=%(refname:short)").split()) == {*revisions, "main"}
    ckpts = {r: status["revisions"][r]["checkpoint"] for r in revisions}
    assert len(set(ckpts.values())) == 19                       # one checkpoint of its own per milestone
    assert ckpts["chck_1M"] == f"words_{round(1e6 * SCALE)}" and ckpts["chck_100M"] == f"words_{round(1e8 * SCALE)}"
    assert status["main"]["checkpoint"] == "epoch_01"
    for revision in revisions:
        for task in FAST_TASKS:
            assert predictions_path(out / "results", NAME, revision, task, "fast").is_file(), (revision, task.name)
    for task in FULL_TASKS:
        assert predictions_path(out / "results", NAME, "main", task, "full").is_file(), task.name
    assert all((out / "results" / NAME / "main" / "finetune" / t / "predictions.json").is_file() for t in GLUE_TASKS)
    aoa = json.loads((out / "results" / NAME / "main/zero_shot/causal/AoA_word/surprisal.json").read_text())
    assert [r["step"] for r in aoa["results"]][::len(aoa["results"]) // 19] == list(revisions)
    assert aoa["metadata"]["completed_steps"] == 19
    card = git(out / "model", "show", "main:README.md")
    assert "strict-small" in card and "| BLiMP |" in card and "chck_100M" in card and "milestone_scale" in card
    assert git(out / "model", "status", "--porcelain") == ""  # main is checked out, nothing stray
    assert json.loads((out / "status.json").read_text())["branches"] == status["branches"]


CHILD = r'''
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
torch.set_num_threads(1)
out = {}
for name, folder in args["models"].items():
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        out[name] = model(input_ids=torch.tensor([args["ids"]])).logits[0].contiguous()
save_file(out, args["out"] + "/logits.safetensors")
json.dump({"blalm_importable": blalm_importable}, open(args["out"] + "/result.json", "w"))
'''


def test_two_branches_load_in_transformers_without_blalm(submission, submit_run, tmp_path):
    """Each branch cloned on its own, loaded with python -I -S (blalm not importable)."""
    from safetensors.torch import load_file

    from blalm.model.checkpoint import load_model

    out, status = submission
    picks = {"chck_3M": status["revisions"]["chck_3M"]["checkpoint"], "main": status["main"]["checkpoint"]}
    models = {}
    for branch in picks:
        clone = tmp_path / branch
        subprocess.run(["git", "clone", "--quiet", "--branch", branch, str(out / "model"), str(clone)], check=True)
        models[branch] = str(clone)
    ids = [5, 17, 42, 99, 3, 250, 7]
    args = {"paths": [sysconfig.get_paths()["purelib"]], "models": models, "ids": ids, "out": str(tmp_path)}
    proc = run_child(CHILD, args, tmp_path, isolated=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not json.loads((tmp_path / "result.json").read_text())["blalm_importable"]
    logits = load_file(str(tmp_path / "logits.safetensors"))
    with torch.no_grad():
        for branch, ckpt in picks.items():
            expected = load_model(submit_run / "checkpoints" / ckpt)(torch.tensor([ids])).logits[0]
            torch.testing.assert_close(logits[branch], expected, rtol=0, atol=1e-5)
    assert not torch.equal(logits["chck_3M"], logits["main"])


def _gold(items) -> dict[str, list[str]]:
    gold: dict[str, list[str]] = collections.defaultdict(list)
    for it in items:
        gold[it.group].append(it.completions[0].strip())
    return gold


def _read_back_accuracy(predictions: dict, gold: dict[str, list[str]]) -> dict[str, float]:
    """Per uid, 100 x the share of predictions equal to the correct candidate (collate_preds' rule)."""
    return {uid: 100.0 * sum(r["pred"].strip() == g for r, g in zip(block["predictions"], gold[uid], strict=True))
            / len(gold[uid]) for uid, block in predictions.items()}


@pytest.mark.parametrize("revision", ["chck_5M", "main"])
def test_zero_shot_predictions_read_back_give_blalm_eval_scores(submission, submit_run, submit_eval, revision):
    from blalm.config import from_dict
    from blalm.eval.config import EWOK_PASSWORD, EvalConfig
    from blalm.eval.data import load_entity_tracking, load_ewok, load_minimal_pairs, load_reading, load_wug
    from blalm.eval.metrics import spearman
    from blalm.eval.reading import reading_results
    from blalm.eval.suite import evaluate_model

    out, status = submission
    suite = "full" if revision == "main" else "fast"
    ckpt = status["main" if revision == "main" else "revisions"]
    ckpt = ckpt["checkpoint"] if revision == "main" else ckpt[revision]["checkpoint"]
    cfg = from_dict(EvalConfig, {"suite": suite, "data_dir": str(submit_eval), "device": "cpu", "progress": False,
                                 "entity_fast_per_group": 1000, "tasks": ["all"]})
    report = evaluate_model(submit_run / "checkpoints" / ckpt, cfg)["tasks"]
    read = {t.name: json.loads(predictions_path(out / "results", NAME, revision, t, suite).read_text())
            for t in FULL_TASKS if suite in t.data}
    for task in ("blimp", "blimp_supplement"):
        acc = _read_back_accuracy(read[task], _gold(load_minimal_pairs(cfg.task_path(task), task)))
        assert sum(acc.values()) / len(acc) == pytest.approx(report[task]["score"], abs=1e-9)
    acc = _read_back_accuracy(read["ewok"], _gold(load_ewok(cfg.task_path("ewok"), EWOK_PASSWORD)))
    assert sum(acc.values()) / len(acc) == pytest.approx(report["ewok"]["score"], abs=1e-9)
    acc = _read_back_accuracy(read["entity_tracking"], _gold(load_entity_tracking(cfg.task_path("entity_tracking"))))
    splits = {s: [v for k, v in acc.items() if k.startswith(s + "_")] for s in ("regular", "ambiref", "move_contents")}
    per_split = {s: sum(v) / len(v) for s, v in splits.items() if v}
    assert set(per_split) == ({"regular"} if suite == "fast" else {"regular", "ambiref", "move_contents"})
    for split, value in per_split.items():
        assert value == pytest.approx(report["entity_tracking"]["per_split"][split], abs=1e-9)
    for task in ("wug_adj", "wug_past"):
        rows = read[task][task]["predictions"]
        ratios = [it.ratio for it in load_wug(cfg.task_path(task), EWOK_PASSWORD, task)]
        assert 100 * spearman([r["prob"] for r in rows], ratios) == pytest.approx(report[task]["score"], abs=1e-6)
    rows = read["reading"]["reading"]["predictions"]
    again = reading_results(load_reading(cfg.task_path("reading")), [r["pred"] for r in rows],
                            [r["prev_pred"] for r in rows])
    assert sum(math.isnan(r["prev_pred"]) for r in rows) > 0
    for task in ("eye_tracking", "self_paced_reading"):
        assert again[task]["score"] == pytest.approx(report[task]["score"], abs=1e-9)


# ----------------------------------------------------------------------------------------------
# the official collate_preds.py


@pytest.fixture(scope="session")
def pipeline_dir(data_dir) -> Path:
    """The official pipeline beside the data (../shared/babylm-pipeline), or $BLALM_PIPELINE_DIR."""
    path = Path(os.environ.get("BLALM_PIPELINE_DIR") or data_dir.parent / "babylm-pipeline")
    if not (path / "evaluation_pipeline" / "collate_preds.py").is_file():
        pytest.fail(f"the official BabyLM pipeline is missing: expected {path}/evaluation_pipeline "
                    f"(set BLALM_PIPELINE_DIR)")
    return path


@contextlib.contextmanager
def plaintext_fast_dir(repo_root: Path, eval_dir: Path):
    """The fast data as plain folders for collate_preds.py (EWoK unzipped: under .cache, deleted after)."""
    folder = repo_root / ".cache" / f"collate-fast-{uuid.uuid4().hex[:8]}"
    try:
        yield official_fast_dir(eval_dir, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


COLLATE_CHILD = r'''
import argparse, pathlib
from evaluation_pipeline import collate_preds as c
# the only change: the expected sizes are those of the test's data slices (the official ones are the full sets')
s = args["sizes"]
c.BLIMP_SIZES, c.SUPPLEMENT_SIZES, c.EWOK_SIZES = s["blimp"], s["blimp_supplement"], s["ewok"]
c.ENTITY_TRACKING_SIZES, c.COMPS_SIZES = s["entity_tracking"], s["comps"]
c.FAST_SIZES = {"ewok": s["ewok_fast"], "blimp": s["blimp_fast"], "blimp_supplement": s["blimp_supplement_fast"],
                "entity_tracking": s["entity_tracking_fast"], "reading": s["reading"], "wug_adj": s["wug_adj"],
                "wug_past": s["wug_past"]}
c.FULL_SIZES = {"ewok": s["ewok"], "blimp": s["blimp"], "blimp_supplement": s["blimp_supplement"],
                "entity_tracking": s["entity_tracking"], "reading": s["reading"], "wug_adj": s["wug_adj"],
                "wug_past": s["wug_past"], "comps": s["comps"], **s["glue"]}
c.AOA_SIZE = s["aoa"]
ns = argparse.Namespace(model_path_or_name=pathlib.Path(args["name"]), backend="causal",
                        results_dir=pathlib.Path(args["results"]), revision_name="main", fast=True,
                        fast_eval_dir=pathlib.Path(args["fast_eval_dir"]), track="strict-small", multimodal=False)
c.collate_preds(ns)
'''


def _sizes(eval_dir: Path, submission_json: dict) -> dict:
    """The item counts of the test's data, per the official size tables' keys (lower-cased uids)."""
    from blalm.config import from_dict
    from blalm.eval.config import EWOK_PASSWORD, EvalConfig
    from blalm.eval.data import load_entity_tracking, load_ewok, load_minimal_pairs
    from blalm.eval.predictions import load_comps

    def count(items, single=False):
        c = collections.Counter(it.group.lower() for it in items)
        return next(iter(set(c.values()))) if single else dict(c)

    fast = from_dict(EvalConfig, {"suite": "fast", "data_dir": str(eval_dir)})
    full = from_dict(EvalConfig, {"suite": "full", "data_dir": str(eval_dir)})
    entity = load_entity_tracking(full.task_path("entity_tracking"))
    glue_dir = eval_dir / "full_eval/glue_filtered"
    return {"blimp": count(load_minimal_pairs(full.task_path("blimp"))),
            "blimp_supplement": count(load_minimal_pairs(full.task_path("blimp_supplement"), "blimp_supplement")),
            "ewok": count(load_ewok(full.task_path("ewok"), EWOK_PASSWORD)),
            "entity_tracking": count(entity), "comps": count(load_comps(eval_dir / "full_eval/comps")),
            "blimp_fast": count(load_minimal_pairs(fast.task_path("blimp")), True),
            "blimp_supplement_fast": count(load_minimal_pairs(fast.task_path("blimp_supplement"), "b"), True),
            "ewok_fast": count(load_ewok(fast.task_path("ewok"), EWOK_PASSWORD), True),
            "entity_tracking_fast": count([it for it in entity if it.group.startswith("regular_")]),
            "reading": sum(1 for _ in open(fast.task_path("reading"))) - 1, "wug_adj": 30, "wug_past": 50,
            "glue": {t: sum(1 for _ in open(glue_dir / f"{t}.valid.jsonl")) for t in GLUE_TASKS},
            "aoa": len([r for r in submission_json["aoa"]["results"] if r["step"] == "chck_1M"])}


def _same(a, b, path="") -> None:
    """Equal JSON values, floats to 1e-9 (scipy/statsmodels beside blalm's numpy), NaN equal to NaN."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, (path, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (path, a, b)
    else:
        assert a == b, path


@pytest.mark.slow
def test_official_collate_accepts_the_results_and_writes_our_submission(submission, submit_eval, official_deps,
                                                                      pipeline_dir, repo_root, tmp_path):
    out, _ = submission
    ours = json.loads((out / "submission.json").read_text())
    with plaintext_fast_dir(repo_root, submit_eval) as fast_dir:
        args = {"paths": [str(pipeline_dir), str(official_deps)], "name": NAME, "results": str(out / "results"),
                "fast_eval_dir": str(fast_dir), "sizes": _sizes(submit_eval, ours)}
        proc = run_child(COLLATE_CHILD, args, tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    theirs = json.loads((out / "results" / NAME / "all_full_preds_and_fast_scores_causal.json").read_text())
    (out / "results" / NAME / "all_full_preds_and_fast_scores_causal.json").unlink()
    assert set(ours) == {"blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past", "comps",
                         "reading", "aoa", "glue", "fast_eval_results"}
    assert all(len(v) == 19 for v in ours["fast_eval_results"].values())
    _same(theirs, ours)


# ----------------------------------------------------------------------------------------------
# resuming, incomplete runs, bad input


def _tree(out: Path) -> dict[str, bytes]:
    """Every file of the submission (README with its own folder's path taken out; run_info is per run;
    work/glue holds blalm finetune's own run folders, with wall times)."""
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(("model/.git/", "work/glue/")) and rel != "work/run_info.json":
            data = path.read_bytes()
            files[rel] = data.replace(str(out).encode(), b"OUT") if rel == "README.md" else data
    return files


@pytest.mark.slow
def test_killed_submit_resumes_to_the_identical_result(submission, submit_run, submit_eval, tmp_path):
    out, _ = submission
    resumed = tmp_path / "sub"
    cmd = [sys.executable, "-m", "blalm.cli", "submit", str(submit_run), "--out", str(resumed), "--name", NAME,
           "--eval-data", str(submit_eval), "--device", "cpu", "--glue", str(out / "work/glue")]
    cmd += [a for f in FINETUNE for a in ("--finetune-set", f)]
    for kill in ("submit_piece@21", None):   # mid-way: 10 revisions and a half done
        env = {**os.environ, **({"BLALM_FAULT": kill} if kill else {})}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if kill:
            assert proc.returncode == -9, proc.stderr[-2000:]
            assert not (resumed / "submission.json").exists()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submission tiny (strict-small): complete" in proc.stdout and "git push origin --all" in proc.stdout
    assert "submit:" in proc.stderr                                     # the progress bar
    assert not (resumed / "work/glue").exists()      # the fine-tuning of the same checkpoint was reused
    assert git(resumed / "model", "for-each-ref") == git(out / "model", "for-each-ref")   # same commit hashes
    mine, theirs = _tree(resumed), _tree(out)
    assert sorted(mine) == sorted(theirs)
    assert [k for k in mine if mine[k] != theirs[k]] == [], "\n".join(k for k in mine if mine[k] != theirs[k])


@pytest.mark.slow
def test_incomplete_run_lists_what_it_lacks_by_name(train_data, submit_eval, tmp_path):  # noqa: F811
    """A shorter run (20 steps: chck_1M ... chck_10M), no COMPS, no AoA word file, no BoolQ training file."""
    short = train_submit_run(*train_data, tmp_path / "run", max_steps=20)
    lacking = tmp_path / "eval"
    shutil.copytree(submit_eval, lacking)
    shutil.rmtree(lacking / "full_eval/comps")
    (lacking / "full_eval/aoa/cdi_childes.json").unlink()
    (lacking / "full_eval/glue_filtered/boolq.train.jsonl").unlink()
    out = tmp_path / "sub"
    status = build_submission(short, out, submit_config(lacking))
    assert not status["complete"]
    missing = "\n".join(status["missing"])
    for revision in TRACK_REVISIONS["strict-small"][10:]:
        assert f"{revision}: the run has no checkpoint" in missing
    assert "main comps: comps data not found" in missing and "glue/boolq: no training data" in missing
    assert "AoA_word/surprisal.json" in missing and "cdi_childes.json" in missing
    assert len(status["missing"]) == 9 + 3
    collated = json.loads((out / "submission.json").read_text())
    assert "comps" not in collated and "aoa" not in collated and "boolq" not in collated["glue"]
    assert set(collated["glue"]) == set(GLUE_TASKS) - {"boolq"}
    assert all(len(v) == 10 for v in collated["fast_eval_results"].values())   # nothing padded
    assert sorted(status["branches"]) == sorted([*TRACK_REVISIONS["strict-small"][:10], "main"])
    assert not (out / "results" / NAME / "main/zero_shot/causal/comps").exists()
    readme, card = (out / "README.md").read_text(), git(out / "model", "show", "main:README.md")
    assert "INCOMPLETE" in readme and "incomplete" in card
    assert all(m in readme and m in card for m in status["missing"])


def test_bad_input_is_refused_with_the_fix(submit_run, submit_eval, tmp_path, capsys):
    with pytest.raises(InputError, match="not a training run folder"):
        build_submission(tmp_path, tmp_path / "out", submit_config(submit_eval))
    with pytest.raises(InputError, match="--main nope: no such checkpoint .*epoch_01"):
        build_submission(submit_run, tmp_path / "out", submit_config(submit_eval, main="nope"))
    with pytest.raises(InputError, match="--main best needs .*blalm eval"):
        build_submission(submit_run, tmp_path / "out", submit_config(submit_eval, main="best"))
    with pytest.raises(BlalmError, match="inside the run folder"):
        build_submission(submit_run, submit_run / "sub", submit_config(submit_eval))
    from blalm.config import from_dict

    with pytest.raises(ConfigError, match="name 'my.model'"):
        from_dict(SubmitConfig, {"name": "my.model"})
    assert cli.main(["submit", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a training run folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_damaged_checkpoint_is_refused_by_name(submit_run, submit_eval, tmp_path, capsys):
    """A checkpoint whose weights changed after they were written (one byte) is neither exported nor
    scored: submit stops before writing anything, naming the checkpoint and the file."""
    from blalm.run.checkpoint import DamagedCheckpoint, list_checkpoints

    run = tmp_path / "run"
    shutil.copytree(submit_run, run)
    ckpt = Path(list_checkpoints(run / "checkpoints")[0]["path"])
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedCheckpoint, match=f"{ckpt}: damaged checkpoint .*model.safetensors: SHA-256 differs"):
        build_submission(run, tmp_path / "out", submit_config(submit_eval))
    assert not (tmp_path / "out").exists()
    assert cli.main(["submit", str(run), "--out", str(tmp_path / "out"), "--eval-data", str(submit_eval)]) == 2
    assert f"{ckpt}: damaged checkpoint" in capsys.readouterr().err


def test_scores_of_another_precision_are_not_reused(tmp_path):
    """A task scored in bf16 (on a GPU) is scored again for an fp32 request, and the other way round;
    on the CPU every precision resolves to fp32, so a request there reuses fp32 scores only."""
    from blalm.submit.pieces import done_score, scoring_precision, sidecar_path, write_official_json, zero_shot_key
    from blalm.submit.plan import Plan

    def plan(precision: str) -> Plan:
        return Plan(run_dir=tmp_path / "run", out_dir=tmp_path / "sub", cfg=submit_config(tmp_path, precision=precision),
                    track="strict-small", name=NAME, eval_dir=tmp_path / "eval", glue_dir=tmp_path / "glue",
                    aoa_words=None, run_config={}, run_info={}, milestones=[], main={}, git_date="0 +0000")

    task = next(t for t in FULL_TASKS if t.name == "blimp")
    ckpt = {"name": "epoch_01", "step": 40}
    bf16 = zero_shot_key(plan("bf16"), ckpt, task, "full", "bf16")
    write_official_json(predictions_path(plan("bf16").results, NAME, "main", task, "full"), {})
    write_official_json(sidecar_path(plan("bf16"), "main", task.name), {"key": bf16, "result": {}})
    assert done_score(plan("bf16"), "main", task, "full", bf16) is not None
    assert done_score(plan("fp32"), "main", task, "full", zero_shot_key(plan("fp32"), ckpt, task, "full", "fp32")) is None
    assert {scoring_precision(plan(p)) for p in ("fp32", "tf32", "bf16")} == {"fp32"}


def test_a_relative_out_resumes_and_a_second_writer_is_refused(submission, submit_run, submit_eval, tmp_path,
                                                               monkeypatch):
    """``--out`` relative to the current folder works (git runs with absolute paths), a re-run of a
    complete submission changes no commit, and one process at a time writes a submission folder."""
    import shutil

    from blalm.lock import RunLock, RunLocked

    out, status = submission
    shutil.copytree(out, tmp_path / "copy", symlinks=True)
    git(tmp_path / "copy" / "model", "branch", "-D", "chck_3M")      # one branch to export again
    monkeypatch.chdir(tmp_path)
    again = build_submission(submit_run, Path("copy"), submit_config(submit_eval))
    assert again["branches"] == status["branches"]                   # the same commit, re-made
    with RunLock(tmp_path / "copy", what="submission"):
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            build_submission(submit_run, Path("copy"), submit_config(submit_eval))


def test_aoa_scores_carry_their_precision_and_are_not_reused_across_precisions(submission, submit_run, submit_eval,
                                                                               tmp_path):
    """AoA runs under the requested scoring precision like the zero-shot tasks, and its cached
    surprisals are keyed by it: a piece scored in another precision is scored again, giving (on the
    CPU, where every precision is fp32) the same surprisals under this run's key."""
    import shutil

    from blalm.submit import pieces as pc
    from blalm.submit.plan import make_plan

    out, _ = submission
    shutil.copytree(out, tmp_path / "copy", symlinks=True)
    plan = make_plan(submit_run, tmp_path / "copy", submit_config(submit_eval))
    m = plan.present()[0]
    path = plan.work / "aoa" / f"{m.revision}.json"
    piece = json.loads(path.read_text())
    assert piece["key"]["precision"] == "fp32" and piece["bos_only"]
    path.write_text(json.dumps({**piece, "key": {**piece["key"], "precision": "bf16"}, "bos_only": {}}))
    again = pc.score_aoa(plan, m.revision, m.checkpoint, pc.LazyModel(plan, m.checkpoint["path"]))
    assert again["key"] == piece["key"] and again["bos_only"] == piece["bos_only"]


def test_glue_jobs_go_to_the_finetuning_and_do_not_block_reuse(tmp_path):
    """--glue-jobs N is the fine-tuning's jobs (0 = auto: 3 on CUDA, 1 on the CPU); the fine-tuning is
    compiled on CUDA unless --finetune-set says compile=false; jobs is not a --finetune-set item; a
    task fine-tuned with other jobs (or before jobs existed) is reused."""
    from blalm.config import from_dict
    from blalm.finetune.layout import task_settings
    from blalm.finetune.tasks import TASKS
    from blalm.submit.pieces import finetune_config, reusable_finetune
    from blalm.submit.plan import Plan

    def plan(**extra) -> Plan:
        return Plan(run_dir=tmp_path / "run", out_dir=tmp_path / "sub", cfg=submit_config(tmp_path, **extra),
                    track="strict-small", name=NAME, eval_dir=tmp_path / "eval", glue_dir=tmp_path / "glue",
                    aoa_words=None, run_config={}, run_info={}, milestones=[], main={"path": str(tmp_path / "ckpt")},
                    git_date="0 +0000")

    cpu = finetune_config(plan(), ["rte"])
    assert (cpu.jobs, cpu.compile) == (1, False)                             # auto on the CPU: eager
    assert finetune_config(plan(glue_jobs=2), ["rte"]).jobs == 2
    assert finetune_config(plan(finetune=[*FINETUNE, "compile=true"]), ["rte"]).compile is True
    if torch.cuda.is_available():
        cuda = finetune_config(plan(device="cuda"), ["rte"])
        assert (cuda.jobs, cuda.compile) == (3, True)                        # auto on CUDA: compiled
        assert finetune_config(plan(device="cuda", finetune=[*FINETUNE, "compile=false"]), ["rte"]).compile is False
    with pytest.raises(ConfigError, match=r"'jobs=2': the fine-tuning processes are set by --glue-jobs N"):
        from_dict(SubmitConfig, {"finetune": ["jobs=2"]})
    with pytest.raises(ConfigError, match="glue_jobs"):
        from_dict(SubmitConfig, {"glue_jobs": -1})
    one, three = finetune_config(plan(glue_jobs=1), ["rte"]), finetune_config(plan(glue_jobs=3), ["rte"])
    folder = tmp_path / "glue_run"
    (folder / "rte").mkdir(parents=True)
    (folder / "rte" / "results.json").write_text(json.dumps({"status": "ok", "score": 50.0}))
    for settings in (task_settings(one, TASKS["rte"]), {k: v for k, v in task_settings(one, TASKS["rte"]).items()
                                                       if k != "jobs"}):
        (folder / "rte" / "config.json").write_text(json.dumps(settings))
        assert reusable_finetune(folder, three, "rte") == {"status": "ok", "score": 50.0}
    assert reusable_finetune(folder, dataclasses.replace(three, lr=1e-4), "rte") is None
