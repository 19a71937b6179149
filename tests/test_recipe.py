"""The sample-efficiency recipe's switches (issue 18): residual dropout and the warm-up-stable-decay
schedule. Each is off by default and must then change nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from blalm.model.config import ModelConfig
from blalm.model.decoder import build_model
from blalm.run.checkpoint import load_model_state, read_latest
from blalm.run.schedule import lr_factor
from blalm.train.trainer import train
from test_train_helpers import tiny_config, train_data  # noqa: F401

TINY = ModelConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, chunk_size=8,
                   short_conv=True)


def test_wsd_is_flat_then_decays_linearly_to_the_floor():
    total = 100
    f = [lr_factor(s, total, 0.1, 0.05, schedule="wsd", decay_fraction=0.2) for s in range(total)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])      # warm-up as for cosine
    assert f[10:80] == [1.0] * 70                                           # stable
    steps = [a - b for a, b in zip(f[79:], f[80:])]
    assert steps == pytest.approx([0.95 / 20] * 20)                         # one linear ramp
    assert f[-1] == pytest.approx(0.05)
    # the cosine default is untouched by the new arguments
    assert lr_factor(55, total, 0.1, 0.0) == lr_factor(55, total, 0.1, 0.0, "cosine", 0.9)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(50, total, 0.1, 0.0, schedule="linear")


def test_dropout_zero_is_the_plain_model_and_dropout_acts_in_training_only():
    ids = torch.randint(0, TINY.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    plain = build_model(TINY)
    torch.manual_seed(0)
    dropped = build_model(dataclasses.replace(TINY, dropout=0.3))
    assert plain.state_dict().keys() == dropped.state_dict().keys()       # no new weights to save or export
    for a, b in zip(plain.state_dict().values(), dropped.state_dict().values()):
        assert torch.equal(a, b)
    plain.eval(), dropped.eval()
    assert torch.equal(plain(ids).logits, dropped(ids).logits)            # eval: dropout is off
    dropped.train()
    first, second = dropped(ids).logits, dropped(ids).logits
    assert not torch.allclose(first, second)                               # training: random masks
    assert not torch.allclose(first, plain(ids).logits)
    with pytest.raises(Exception, match="dropout"):
        build_model(dataclasses.replace(TINY, dropout=1.0))


def test_a_run_with_dropout_and_wsd_is_reproducible(train_data, tmp_path):
    """The dropout masks come from the seeded torch RNG: two runs of one config end bit-identical."""
    corpus, tokenizer = train_data
    extra = {"model.dropout": 0.1, "schedule": "wsd", "decay_fraction": 0.3, "epochs": 1}
    finals = []
    for name in ("a", "b"):
        train(tiny_config(corpus, tokenizer, **extra), tmp_path / name)
        finals.append(load_model_state(read_latest(tmp_path / name / "checkpoints")))
    assert finals[0].keys() == finals[1].keys()
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    plain = load_model_state(read_latest(_train_plain(corpus, tokenizer, tmp_path / "plain") / "checkpoints"))
    assert not all(torch.equal(plain[k], finals[0][k]) for k in plain)     # dropout did change the run


def _train_plain(corpus, tokenizer, run_dir):
    train(tiny_config(corpus, tokenizer, epochs=1), run_dir)
    return run_dir


@pytest.mark.slow
def test_layer_compiled_training_matches_eager(train_data, tmp_path):
    """``compile = true`` with the default ``compile_scope = "layer"`` trains the same model as eager
    (same losses to float tolerance; the checkpoints hold the plain parameter names)."""
    from blalm.run.metrics import read_metrics

    corpus, tokenizer = train_data
    losses = {}
    for name, extra in (("eager", {}), ("layer", {"compile": True}),
                        ("graphs", {"compile": True, "compile_mode": "reduce-overhead"})):   # no CUDA graphs on a CPU
        train(tiny_config(corpus, tokenizer, epochs=1, max_steps=4, **extra), tmp_path / name)
        losses[name] = [m["loss"] for m in read_metrics(tmp_path / name, "train")]
        state = load_model_state(read_latest(tmp_path / name / "checkpoints"))
        assert not any("_orig_mod" in k for k in state)
    assert losses["layer"] == pytest.approx(losses["eager"], rel=1e-4)
    assert losses["graphs"] == pytest.approx(losses["eager"], rel=1e-4)


def test_weight_average_follows_the_formula_with_its_warm_up():
    from blalm.train.ema import WeightAverage, ema_decay_at

    torch.manual_seed(0)
    model = build_model(TINY)
    ema = WeightAverage(model, 0.99)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(step=1)
    d = ema_decay_at(1, 0.99)
    assert d == pytest.approx(2 / 11)
    for avg, p0 in zip(ema.average, start):
        torch.testing.assert_close(avg, d * p0 + (1 - d) * (p0 + 1.0))
    assert ema_decay_at(10_000, 0.99) == 0.99
    averaged = ema.state_dict()
    with ema.swapped_in():
        assert all(torch.equal(p, averaged[n]) for n, p in model.named_parameters())
    assert all(torch.equal(p, p0 + 1.0) for p, p0 in zip(model.parameters(), start))   # its own weights back


def test_weight_average_without_warm_up_uses_its_decay_from_the_first_step():
    from blalm.train.ema import WeightAverage, describe_ema, ema_decay_at, ema_full_decay_step

    torch.manual_seed(0)
    model = build_model(TINY)
    ema = WeightAverage(model, 0.9, warmup=False)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(step=1)
    for avg, p0 in zip(ema.average, start):
        torch.testing.assert_close(avg, 0.9 * p0 + 0.1 * (p0 + 1.0))
    # the warm-up reaches 0.999 only at step 8,990: a 4,240-step run never uses the decay it was given
    assert ema_full_decay_step(0.999) == 8990
    assert ema_decay_at(8990, 0.999) == 0.999 > ema_decay_at(8989, 0.999)
    assert ema_decay_at(4240, 0.999) == ema_decay_at(4240, 0.998) < 0.998
    assert "not reached" in describe_ema(0.999, True, 4240) and "8,990" in describe_ema(0.999, True, 4240)
    assert "reached at step 890" in describe_ema(0.99, True, 4240)


def test_ema_checkpoints_hold_the_average_and_train_exactly_as_without(train_data, tmp_path):
    """The average changes nothing of the training: the trained weights (train_weights.safetensors)
    equal a run without it, bit for bit; model.safetensors holds the average; a killed run resumes
    to the very files of an uninterrupted one."""
    import os

    from blalm.run.checkpoint import load_tensors
    from test_train_helpers import DEMO_TRAIN_CONFIG, run_train_subprocess, tiny_overrides

    corpus, tokenizer = train_data
    train(tiny_config(corpus, tokenizer, epochs=1), tmp_path / "plain")
    train(tiny_config(corpus, tokenizer, epochs=1, ema_decay=0.9), tmp_path / "ema")
    plain = load_model_state(read_latest(tmp_path / "plain" / "checkpoints"))
    latest = read_latest(tmp_path / "ema" / "checkpoints")
    trained, average = load_tensors(latest, "train_weights.safetensors"), load_model_state(latest)
    assert all(torch.equal(trained[k], plain[k]) for k in plain)
    assert not all(torch.equal(average[k], plain[k]) for k in plain)
    args = [str(DEMO_TRAIN_CONFIG), "--out", str(tmp_path / "killed"),
            *[a for o in tiny_overrides(corpus, tokenizer, epochs=1, ema_decay=0.9) for a in ("--set", o)]]
    killed = run_train_subprocess(args, {"BLALM_FAULT": "checkpoint_done@2"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run_train_subprocess(args, {k: v for k, v in os.environ.items() if k != "BLALM_FAULT"})
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout + resumed.stderr, resumed.stderr[-2000:]
    again = read_latest(tmp_path / "killed" / "checkpoints")
    for name in ("model.safetensors", "train_weights.safetensors"):
        a, b = load_tensors(latest, name), load_tensors(again, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
