"""blalm.eval.predictions against the official pipeline's own code for computing a score from the
predictions (``calculate_results_from_pred.py``, run here in a subprocess on the same files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blalm.bench.eval import default_pipeline_dir
from child_process import run_child
from blalm.eval.predictions import load_comps, ranking_predictions, target_accuracy_metric

# the file names calculate_results_from_pred.py opens for the four subsets
COMPS_FILES = ("comps_base", "comps_wugs", "comps_wugs_dist-before", "comps_wugs_dist-in-between")
COMPS_ROWS = [("A robin", "A stone", "can fly."), ("A knife", "A pillow", "can cut bread."),
              ("A dax is a bird. A dax", "A wug is a rock. A wug", "has feathers."),
              ("A fish", "A chair", "can swim."), ("An oven", "A spoon", "gets hot.")]

OFFICIAL_COMPS_CHILD = r'''
import pathlib
import calculate_results_from_pred as c
preds = json.loads(pathlib.Path(args["predictions"]).read_text())
print(json.dumps(c._calculate_comps_results(preds, pathlib.Path(args["data"]))))
'''


def test_comps_metric_is_the_official_one(official_deps, tmp_path):
    """COMPS predicts the whole chosen sentence; its accuracy compares it with the acceptable sentence
    (prefix + phrase), as the official ``_calculate_comps_results`` does, not with the phrase alone."""
    data = tmp_path / "comps"
    data.mkdir()
    for name in COMPS_FILES:
        rows = [{"prefix_acceptable": g, "prefix_unacceptable": b, "property_phrase": p} for g, b, p in COMPS_ROWS]
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    items = load_comps(data)
    # a different share right per subset: item i of file f prefers the acceptable one unless (i + f) % 3 == 2
    scores = [[-1.0, 0.0] if (i % len(COMPS_ROWS) + i // len(COMPS_ROWS)) % 3 == 2 else [0.0, -1.0]
              for i in range(len(items))]
    predictions = ranking_predictions(items, scores, whole_sentence=True)
    (tmp_path / "predictions.json").write_text(json.dumps(predictions), encoding="utf-8")
    ours = target_accuracy_metric(predictions, items, whole_sentence=True)
    assert len(set(ours.values())) > 1 and 0 < min(ours.values())

    pipeline = Path(default_pipeline_dir()) / "evaluation_pipeline"
    args = {"paths": [str(pipeline), str(official_deps)], "predictions": str(tmp_path / "predictions.json"),
            "data": str(data)}
    proc = run_child(OFFICIAL_COMPS_CHILD, args, tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    official = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 100 * sum(ours.values()) / len(ours) == pytest.approx(official, abs=1e-9)
