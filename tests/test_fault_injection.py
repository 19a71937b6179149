"""A fast subset of ``scripts/fault_injection.py`` (the full suite's table is in
docs/results/reliability.md): one named fault point, one damaged file and two writers at once for
``blalm train``, through the script's own functions, so that the suite keeps working."""

from __future__ import annotations

import importlib.util
import random
import sys

import pytest

from test_train_helpers import REPO_ROOT, train_data  # noqa: F401


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("fault_injection", REPO_ROOT / "scripts" / "fault_injection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_injection"] = module     # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_fault_suite_kills_damages_and_double_starts_a_training_run(harness, train_data, tmp_path):
    corpus, tokenizer = train_data
    stage = harness.TrainStage(tmp_path, {"corpus": corpus, "tokenizer": tokenizer})
    counts, seconds = harness.count_points(stage, tmp_path)
    assert counts["checkpoint_renamed"] == counts["checkpoint_written"] >= 2 and counts["token_cache_written"] == 1
    assert counts["step_backward"] == 2 * counts["after_optimizer_step"]        # 2 micro-batches a step
    ref = tmp_path / "train-counted"
    rng = random.Random(0)
    [killed] = harness.kill_cases(stage, ref, counts, rng, 1, {"checkpoint_renamed"})
    assert killed.fault.startswith("kill -9 at checkpoint_renamed") and killed.outcome == "resumed identical", killed
    # a half-finished run with its latest optimizer state flipped: skipped, resumed identical
    out = tmp_path / "damaged"
    harness.run_blalm(stage.argv(out), fault="step_backward@20")     # in step 10: checkpoints at 4 and 8
    target = dict(stage.damage_targets(out))["checkpoint optimizer.safetensors"]
    assert "one bit flipped" in harness.damage(target, "flip", rng)
    outcome, ok, nothing_lost, detail = harness.rerun_outcome(stage, ref, out)
    assert (outcome, ok, nothing_lost) == ("resumed identical", True, True)
    assert "optimizer.safetensors: SHA-256 differs" in detail and "set aside" in detail
    [writers] = harness.writers_case(stage, ref)
    assert writers.ok and writers.nothing_lost, writers
    assert writers.outcome == "clean refusal of the second"
    table = harness.table([killed, writers], "scripts/fault_injection.py --stages train", seconds)
    assert "| train | kill | 1 | 1 (1 resumed identical) | 1 |" in table and "What runs:" in table
