"""The GLUE fine-tuning recipe against the official BabyLM 2025 trainer's own code
(``../shared/babylm-pipeline/evaluation_pipeline/finetune``, imported from there): the same head
layer for layer, the same learning rate at every step, the same steps per epoch, AdamW with the
same weight decay on every parameter, no gradient clipping."""

from __future__ import annotations

import argparse
import importlib
import sys

import pytest
import torch

from blalm.bench.eval import default_pipeline_dir
from blalm.finetune.config import FinetuneConfig
from blalm.finetune.head import ClassifierHead
from blalm.finetune.layout import run_plan
from blalm.finetune.run import build_adamw
from blalm.run.schedule import lr_factor


@pytest.fixture(scope="module")
def official():
    pipeline = default_pipeline_dir()
    if not (pipeline / "evaluation_pipeline" / "finetune").is_dir():
        pytest.fail(f"the official pipeline is not at {pipeline} (set BLALM_PIPELINE_DIR)")
    sys.path.insert(0, str(pipeline))
    try:
        yield {name: importlib.import_module(f"evaluation_pipeline.finetune.{name}")
               for name in ("classifier_model", "utils")}
    finally:
        sys.path.remove(str(pipeline))


def official_args(**kw) -> argparse.Namespace:
    """The official run.py's defaults for what these tests touch."""
    defaults = {"classifier_layer_norm_eps": 1.0e-5, "classifier_dropout": 0.1, "num_labels": 3,
                "learning_rate": 3e-5, "weight_decay": 0.01, "warmup_proportion": 0.06}
    return argparse.Namespace(**{**defaults, **kw})


def test_defaults_are_the_official_run_scripts():
    cfg = FinetuneConfig()
    args = official_args()
    assert (cfg.lr, cfg.weight_decay, cfg.dropout, cfg.warmup_fraction, cfg.min_lr_fraction, cfg.grad_clip) == \
        (args.learning_rate, args.weight_decay, args.classifier_dropout, args.warmup_proportion, 0.1, 0.0)


def test_head_is_the_official_head_layer_for_layer(official):
    torch.manual_seed(0)
    theirs = official["classifier_model"].ClassifierHead(official_args(), 48)
    ours = ClassifierHead(48, 3, dropout=0.1)
    ours.load_state_dict(theirs.nonlinearity.state_dict())        # same keys, same shapes
    assert [type(m) for m in ours] == [type(m) for m in theirs.nonlinearity]
    x = torch.randn(5, 48) * 3 + 1
    theirs.eval(), ours.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize("total", [1, 10, 17, 100, 1703])
def test_learning_rate_at_every_step_is_the_official_schedules(official, total):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = official["utils"].cosine_schedule_with_warmup(opt, int(0.06 * total), total, 0.1)
    theirs = []
    for _ in range(total):                      # the official loop: optimizer.step(), then scheduler.step()
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [lr_factor(s, total, 0.06, 0.1, schedule="official") for s in range(total)]
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("n, batch", [(100, 32), (96, 32), (27243, 16), (40, 32)])
def test_steps_per_epoch_drop_the_short_last_batch_as_the_official_loader(n, batch):
    loader = torch.utils.data.DataLoader(range(n), batch_size=batch, shuffle=True, drop_last=True)
    plan = run_plan(n, batch, epochs=10)
    assert plan.steps_per_epoch == len(loader) and plan.total_steps == 10 * len(loader)


def test_adamw_decays_every_parameter_as_the_official_optimizer():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    cfg = FinetuneConfig()
    optimizers, names = build_adamw(model, cfg, torch.device("cpu"))
    (group,) = optimizers["adamw"].param_groups
    assert group["weight_decay"] == 0.01 and len(group["params"]) == len(list(model.parameters()))
    assert names["adamw"] == [[n for n, _ in model.named_parameters()]]
