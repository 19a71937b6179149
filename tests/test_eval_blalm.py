"""``blalm eval`` on a blalm checkpoint equals ``blalm eval`` on its exported Hugging Face folder."""

from __future__ import annotations

import pytest

from blalm.config import from_dict
from blalm.eval.config import EvalConfig
from blalm.eval.suite import evaluate_model
from test_eval_suite import make_mini_eval
from test_hf_export import checkpoints, exports, tokenizer_dir  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def mini_eval(data_dir, tmp_path_factory):
    return make_mini_eval(data_dir / "eval", tmp_path_factory.mktemp("mini_eval_blalm"))


@pytest.mark.parametrize("name", ["blalm", "transformer"])
def test_checkpoint_and_export_score_the_same(checkpoints, exports, mini_eval, name):  # noqa: F811
    cfg = from_dict(EvalConfig, {"suite": "fast", "tasks": ["blimp", "blimp_supplement"],
                                 "data_dir": str(mini_eval), "device": "cpu", "progress": False})
    native = evaluate_model(checkpoints[name], cfg)["tasks"]
    exported = evaluate_model(exports[name], cfg)["tasks"]
    for task in ("blimp", "blimp_supplement"):
        assert native[task]["status"] == "ok"
        assert native[task]["score"] == pytest.approx(exported[task]["score"], abs=1e-9)
        for paradigm, detail in native[task]["per_paradigm"].items():
            assert detail == pytest.approx(exported[task]["per_paradigm"][paradigm]), paradigm
