"""``blalm sweep``: the shipped experiment configs expand to the paper's grids; a tiny experiment
on the demo corpus trains, resumes a killed run, scores, selects the best checkpoint per run,
skips finished runs when re-run, and reports beside the paper's Table 4."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blalm.errors import ConfigError
from blalm.experiments.config import expand_grid, load_experiment
from blalm.experiments.sweep import RUN_DONE_FILE, SWEEP_FILE, load_run_config, run_overrides, sweep
from test_eval_suite import make_mini_eval

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO_ROOT / "configs" / "experiments"

# runs per experiment and track at every scale (exp3 has three seeds; tiny keeps one seed elsewhere)
EXPECTED = {"exp1_dataset": {"strict-small": 4, "strict": 4}, "exp2_architecture": {"strict-small": 6, "strict": 6},
            "exp3_optimizer": {"strict-small": 6, "strict": 6}, "exp4_learning_rate": {"strict-small": 8, "strict": 7},
            "exp5_mechanisms": {"strict-small": 8, "strict": 8}, "final": {"strict-small": 1, "strict": 1}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_experiments_expand_to_the_papers_grids(name):
    for scale in ("paper", "reduced", "tiny"):
        exp = load_experiment(EXPERIMENTS / f"{name}.toml", scale=scale)
        grid = expand_grid(exp)
        counts = {t: sum(r.track == t for r in grid) for t in exp.tracks}
        expected = dict(EXPECTED[name])
        if scale == "tiny" and name == "exp1_dataset":
            expected = {t: n // 2 for t, n in expected.items()}   # tiny: one seed instead of two
        assert counts == expected, scale
        assert len({r.run_id for r in grid}) == len(grid)
        for run in grid:   # every run's training config is valid (e.g. the Transformer takes no ShortConv)
            cfg = load_run_config(exp, run, run_overrides(exp, run, Path("corpus"), Path("tokenizer")))
            assert cfg.seed == run.seed
            if scale == "paper":
                assert cfg.model.hidden_size == 1024 and cfg.context_length == 512 and cfg.global_batch == 64
            else:   # the scale's overrides come after the run's own
                assert cfg.model.hidden_size == {"reduced": 256, "tiny": 64}[scale]


def test_grid_settings_follow_the_paper():
    exp2 = load_experiment(EXPERIMENTS / "exp2_architecture.toml")
    cfgs = {r.run_id: load_run_config(exp2, r, run_overrides(exp2, r, Path("c"), Path("t"))) for r in expand_grid(exp2)}
    tf = cfgs["strict/transformer_lr3e-4/seed0"]
    assert tf.model.mixer == "attention" and tf.model.num_layers == 26 and tf.lr == 3e-4 and tf.optimizer == "adamw"
    bl = cfgs["strict-small/blalm_lr5e-4/seed0"]
    assert bl.model.mixer == "mlstm" and bl.model.mechanisms() == [] and bl.lr == 5e-4
    exp4 = load_experiment(EXPERIMENTS / "exp4_learning_rate.toml", scale="reduced")
    lrs = {r.run_id: load_run_config(exp4, r, run_overrides(exp4, r, Path("c"), Path("t"))).lr for r in expand_grid(exp4)}
    assert lrs["strict-small/lr7.5e-4/seed0"] == pytest.approx(2 * 7.5e-4)      # reduced: lr x 2
    assert "strict/lr7.5e-4/seed0" not in lrs and "strict/lr5.5e-4/seed0" in lrs
    exp5 = load_experiment(EXPERIMENTS / "exp5_mechanisms.toml")
    mech = {r.name: load_run_config(exp5, r, run_overrides(exp5, r, Path("c"), Path("t"))).model.mechanisms()
            for r in expand_grid(exp5, tracks=["strict"])}
    assert mech["blalm"] == [] and mech["short_conv"] == ["short_conv(k=4)"]
    assert mech["swa_dynmod_bounded"] == ["swa_dynmod_bounded(window=128)"]
    assert mech["hedgehog_swa"] == ["hedgehog", "swa_add(window=128)"]
    exp3 = load_experiment(EXPERIMENTS / "exp3_optimizer.toml")
    assert [r.run_id for r in expand_grid(exp3, tracks=["strict"], runs=["muon"])] == [
        f"strict/muon/seed{s}" for s in (0, 1, 2)]
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        load_experiment(EXPERIMENTS / "exp3_optimizer.toml", scale="huge")
    with pytest.raises(ConfigError, match="not a corpus of track"):
        load_experiment(EXPERIMENTS / "exp3_optimizer.toml", ["runs.muon.corpus=\"nope\""])
    with pytest.raises(ConfigError, match="track 'loose' is not in this experiment"):
        expand_grid(exp3, tracks=["loose"])


TINY_TRAIN = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2", "model.num_heads=2",
              "model.chunk_size=16", "context_length=32", "global_batch=8", "micro_batch=4", "epochs=1",
              "max_steps=12", "milestone_scale=0.0005", "eval_max_blocks=8", "log_every=1", "device=\"cpu\""]


def write_experiment(folder: Path, corpus: Path, eval_dir: Path) -> Path:
    """Experiment 3 in miniature: AdamW (two seeds) vs Muon (one seed) on the demo corpus."""
    path = folder / "tiny_exp3.toml"
    path.write_text(f"""
name = "tiny_exp3"
title = "Experiment 3 in miniature"
paper_table = "table4"
seeds = [0, 1]
vocab_size = 400
[tracks.strict]
train_config = {json.dumps(str(REPO_ROOT / "configs/train/demo.toml"))}
set = {json.dumps(TINY_TRAIN + ["lr=3e-3"])}
[tracks.strict.corpora.demo]
dir = {json.dumps(str(corpus))}
[runs.adamw]
set = ["optimizer=\\"adamw\\""]
[runs.muon]
set = ["optimizer=\\"muon\\""]
seeds = [0]
[eval]
last = 2
data_dir = {json.dumps(str(eval_dir))}
entity_fast_per_group = 2
device = "cpu"
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_sweep(demo_corpus, data_dir, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("sweep")
    eval_dir = make_mini_eval(data_dir / "eval", root / "mini_eval")
    config = write_experiment(root, demo_corpus, eval_dir)
    out = root / "out"
    # 1. a sweep killed in its first run's 8th optimizer step (after the checkpoint at step 6)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BLALM_FAULT": "step_backward@16"}
    killed = subprocess.run([sys.executable, "-m", "blalm.cli", "sweep", str(config), "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    # 2. re-run: the killed run resumes, the others train; 3. re-run again: everything is skipped
    logs: list[list[str]] = [[], []]
    exp = load_experiment(config)
    first = sweep(exp, out, log=logs[0].append)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    second = sweep(exp, out, log=logs[1].append)
    return {"out": out, "killed": killed, "first": first, "second": second, "logs": logs, "stamps": stamps,
            "config": config, "eval_dir": eval_dir}


def test_a_killed_run_resumes_from_its_checkpoint(tiny_sweep):
    killed = tiny_sweep["killed"]
    assert killed.returncode == -9, killed.stderr[-2000:]
    log = "\n".join(tiny_sweep["logs"][0])
    assert re.search(r"resuming from .*adamw/seed0/checkpoints/\S+ \(step 6,", log), log
    assert log.count("resuming from") == 1           # the other runs start fresh
    states = [json.loads(p.read_text()) for p in (tiny_sweep["out"] / "runs/strict/adamw/seed0/checkpoints").glob("*/state.json")]
    last = max(states, key=lambda s: s["step"])
    assert last["complete"] and last["step"] == 12


def test_every_run_is_trained_scored_and_its_best_checkpoint_selected(tiny_sweep):
    out, summary = tiny_sweep["out"], tiny_sweep["first"]
    assert [r["run_id"] for r in summary["runs"]] == ["strict/adamw/seed0", "strict/adamw/seed1", "strict/muon/seed0"]
    assert all(r["status"] == "done" for r in summary["runs"])
    assert json.loads((out / SWEEP_FILE).read_text())["runs"] == tiny_sweep["second"]["runs"]   # the last sweep's
    corpus_cfgs = set()
    for rec in summary["runs"]:
        run_dir = out / rec["dir"]
        corpus_cfgs.add(json.loads((run_dir / "config.json").read_text())["tokenizer_dir"])
        evals = json.loads((run_dir / "eval" / "summary.json").read_text())
        assert len(evals["checkpoints"]) == 2                        # eval.last = 2
        assert rec["best"] == max(evals["checkpoints"], key=lambda c: c["average"])
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        ppl = [m["val_ppl"] for m in metrics if m["kind"] == "eval" and m["checkpoint"] == rec["best"]["checkpoint"]]
        assert rec["val_ppl"] == pytest.approx(ppl[-1])
        assert json.loads((run_dir / RUN_DONE_FILE).read_text())["best"] == rec["best"]
    # the tokenizer was trained once, for the corpus, and shared by every run
    assert corpus_cfgs == {str(out / "corpora" / "strict-demo" / "tokenizer")}
    assert json.loads((out / "corpora/strict-demo/tokenizer/tokenizer_report.json").read_text())["vocab_size"] == 400
    cfg = json.loads((out / "runs/strict/muon/seed0/config.json").read_text())
    assert cfg["optimizer"] == "muon" and cfg["seed"] == 0 and cfg["model"]["hidden_size"] == 32
    assert json.loads((out / "runs/strict/adamw/seed1/config.json").read_text())["seed"] == 1


def test_a_second_sweep_skips_finished_runs(tiny_sweep):
    log = tiny_sweep["logs"][1]
    assert sum("finished before, skipped" in line for line in log) == 3 and not any("training" in line for line in log)
    out = tiny_sweep["out"]
    now = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    assert now == tiny_sweep["stamps"]
    assert [r["best"] for r in tiny_sweep["second"]["runs"]] == [r["best"] for r in tiny_sweep["first"]["runs"]]


def test_the_report_puts_the_sweep_beside_table_4(tiny_sweep, tmp_path):
    from blalm.cli import main
    from blalm.report import paper

    out = tiny_sweep["out"]
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Table 4" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    paper_adamw = next(r for r in rows if r.startswith("| strict | adamw | paper (10, 10, 10), 3 runs"))
    # the paper's own Table 4 figures (stated mean ± std) and App. E's BLiMP mean ± std
    blimp = [r.scores[0] for r in paper.TABLES["table4"]["rows"]["strict/adamw"]]
    cells = [c.strip() for c in paper_adamw.strip("|").split("|")]
    assert cells[3] == f"{np.mean(blimp):.2f} ± {np.std(blimp):.2f}"
    assert cells[-2] == "35.75 ± 1.74" and cells[-1] == "11.21 ± 0.11"
    # ours, below the paper's: mean ± std over the two AdamW seeds, their best checkpoints named
    ours = rows[rows.index(paper_adamw) + 1]
    runs = tiny_sweep["first"]["runs"][:2]
    names = ", ".join(r["best"]["checkpoint"] for r in runs)
    assert ours.startswith(f"|  |  | **ours** ({names}), 2 seeds |")
    cells = [c.strip() for c in ours.strip("|").split("|")]
    for i, key in enumerate(paper.COLUMNS + ("average",)):
        vals = [r["best"][key] for r in runs]
        assert cells[3 + i] == f"{np.mean(vals):.2f} ± {np.std(vals):.2f}", key
    ppl = [r["val_ppl"] for r in runs]
    assert cells[-1] == f"{np.mean(ppl):.2f} ± {np.std(ppl):.2f}"
    muon = rows[rows.index(next(r for r in rows if r.startswith("| strict | muon | paper"))) + 1]
    assert f"**ours** ({tiny_sweep['first']['runs'][2]['best']['checkpoint']}) |" in muon and "±" not in muon
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert pngs == ["tiny_exp3_blimp.png", "tiny_exp3_scores.png", "tiny_exp3_training.png"]
    for name in pngs:
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "report" / name).stat().st_size > 10_000
        assert f"]({name})" in text


def test_table_7_has_a_glue_column_from_the_runs_fine_tuning(tiny_sweep, data_dir, tmp_path):
    """For the final submissions (Table 7) the report adds GLUE: the paper's, and ours as the mean ±
    std over seeds of ``RUN_DIR/glue/results.json`` (written by ``blalm finetune``)."""
    import shutil

    from blalm.cli import main
    from blalm.config import from_dict
    from blalm.finetune.config import FinetuneConfig
    from blalm.finetune.run import finetune

    out = tmp_path / "sweep"
    shutil.copytree(tiny_sweep["out"], out)
    summary = json.loads((out / "sweep.json").read_text())
    summary["paper_table"] = "table7"
    (out / "sweep.json").write_text(json.dumps(summary))
    glue_data = data_dir / "eval" / "full_eval" / "glue_filtered"
    scores = []
    for run in summary["runs"][:2]:                      # the two AdamW seeds
        run_dir = out / run["dir"]
        cfg = from_dict(FinetuneConfig, {
            "model": str(run_dir / "checkpoints" / run["best"]["checkpoint"]), "data_dir": str(glue_data),
            "tasks": ["rte"], "max_train": 8, "max_valid": 8, "batch_size": 4, "epochs": 1, "max_length": 32,
            "device": "cpu", "progress": False, "seed": run["seed"]})
        scores.append(finetune(cfg, run_dir / "glue", log=lambda m: None)["glue"]["score"])
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].rstrip().endswith("| PPL | GLUE |")
    ours = rows[rows.index(next(r for r in rows if r.startswith("| strict | adamw | paper"))) + 1]
    assert ours.rstrip().endswith(f"| {np.mean(scores):.2f} ± {np.std(scores):.2f} |")
    muon = rows[rows.index(next(r for r in rows if r.startswith("| strict | muon | paper"))) + 1]
    assert muon.rstrip().endswith("| — |")                 # not fine-tuned: no GLUE
    assert "blalm finetune BEST_CHECKPOINT --out RUN_DIR/glue" in text


def test_jobs_run_the_grid_in_parallel_processes_with_the_same_results(tiny_sweep, tmp_path):
    """``--jobs 2``: one child process per run and seed, a log each; a child that dies is recorded as
    failed and not trained again by the parent; the re-run resumes each child's run, then one pass
    writes sweep.json; on the CPU every run ends exactly as in the sequential sweep."""
    out = tmp_path / "parallel"
    cmd = [sys.executable, "-m", "blalm.cli", "sweep", str(tiny_sweep["config"]), "--out", str(out), "--jobs", "2",
           "--run", "adamw"]     # its two seeds: one child each
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 1. every child killed once its run is trained (before scoring): the parent trains nothing itself
    killed = subprocess.run(cmd, env={**env, "BLALM_FAULT": "sweep_run_trained"}, capture_output=True, text=True,
                            timeout=600, cwd=REPO_ROOT)
    assert killed.returncode == 1, killed.stderr[-3000:]
    assert "training in" not in killed.stderr and killed.stderr.count("FAILED (exit -9)") == 2
    runs = json.loads((out / SWEEP_FILE).read_text())["runs"]
    assert [r["status"] for r in runs] == ["failed"] * 2 and "its --jobs child failed" in runs[0]["error"]
    # 2. the re-run: each child resumes its trained run, scores it; the closing pass trains nothing
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["strict-adamw-seed0.log", "strict-adamw-seed1.log"]
    assert done.stderr.count("finished before, skipped") == 2
    logs = "".join(p.read_text() for p in (out / "logs").iterdir())
    assert "[1/1] strict/adamw/seed1: done" in logs and "deprecated" not in logs   # the cache by its current name
    parallel = json.loads((out / SWEEP_FILE).read_text())["runs"]
    sequential = [r for r in tiny_sweep["first"]["runs"] if "/adamw/" in r["run_id"]]
    assert len(sequential) == 2 and [r["run_id"] for r in parallel] == [r["run_id"] for r in sequential]
    assert [r["best"] for r in parallel] == [r["best"] for r in sequential]


@pytest.mark.parametrize("path", sorted(p for p in EXPERIMENTS.glob("*.toml") if p.name != "scales.toml"),
                         ids=lambda p: p.stem)
def test_every_shipped_experiment_loads_and_its_runs_validate(path):
    """Every experiment config (the paper's and ours, e.g. recipe_search, data_mix): each run's
    training config loads and passes its checks."""
    exp = load_experiment(path)
    grid = expand_grid(exp)
    assert grid and len({r.run_id for r in grid}) == len(grid)
    for run in grid:
        cfg = load_run_config(exp, run, run_overrides(exp, run, Path("corpus"), Path("tokenizer")))
        assert cfg.seed == run.seed and cfg.track == run.track


@pytest.mark.parametrize("shipped_name, run_name", [("strict_small_best", "s384_d05_ctx128_ema")])
def test_the_shipped_recipe_configs_are_the_recipe_search_runs_they_report(shipped_name, run_name):
    """configs/train/strict_small_best.toml quotes round 5's scores of recipe_search.toml's run
    s384_d05_ctx128_ema: it must train the same model the same way as that run (the micro-batch
    aside, which the shipped config leaves to the device)."""
    from blalm.config import to_dict
    from blalm.train.config import load_train_config

    exp = load_experiment(EXPERIMENTS / "recipe_search.toml")
    run = next(r for r in expand_grid(exp, runs=[run_name]) if r.seed == 0)
    searched = to_dict(load_run_config(exp, run, run_overrides(exp, run, Path("corpus"), Path("tokenizer"))))
    shipped = to_dict(load_train_config(EXPERIMENTS.parent / "train" / f"{shipped_name}.toml"))
    differing = {k for k in searched if searched[k] != shipped[k]}
    assert differing == {"corpus_dir", "tokenizer_dir", "micro_batch"}, differing


def test_runs_scored_while_training_are_not_scored_again_by_the_sweep(tiny_sweep, tmp_path):
    """``--train-set score_suite="fast"``: each run's checkpoints are scored by its side process as
    they are written; the sweep takes the best from the run's own summary (sweep.json names it) and
    scores nothing itself, whatever its [eval] table says."""
    eval_dir = tiny_sweep["eval_dir"]
    score_set = ["entity_fast_per_group=2", 'tasks=["blimp", "blimp_supplement", "ewok", "entity_tracking", '
                                            '"eye_tracking", "self_paced_reading"]']
    logs: list[str] = []
    summary = sweep(load_experiment(tiny_sweep["config"]), tmp_path / "out", runs=["muon"], log=logs.append,
                    train_overrides=['score_suite="fast"', f"score_data={json.dumps(str(eval_dir))}",
                                     f"score_set={json.dumps(score_set)}"])
    run_dir = tmp_path / "out" / summary["runs"][0]["dir"]
    own = json.loads((run_dir / "eval" / "summary.json").read_text())
    written = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert sorted(c["checkpoint"] for c in own["checkpoints"]) == written
    assert own["best"] is not None and own["best"] == summary["runs"][0]["best"]
    assert any("scored while training" in line for line in logs)
    assert not any("scoring checkpoints" in line for line in logs)
