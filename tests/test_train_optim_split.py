"""The Muon/AdamW split is what the model declares (``parameter_groups()``), not what parameter
names suggest, and building the optimizers checks that every parameter is in exactly one group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from blalm.config import load_config
from blalm.errors import BlalmError
from blalm.model.config import ModelConfig
from blalm.model.decoder import ParameterGroups, build_model
from blalm.train.config import load_train_config
from blalm.train.optim import build_optimizers, check_every_parameter_once, split_parameters

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = REPO_ROOT / "configs/train/demo.toml"


def tiny(*overrides: str):
    cfg = load_config(ModelConfig, REPO_ROOT / "configs/model/tiny_blalm.toml",
                      ["vocab_size=300", "hidden_size=32", "num_heads=2", "intermediate_size=64", *overrides])
    return build_model(cfg)


@pytest.mark.parametrize("overrides", [["swa=dynmod_bounded", "hedgehog=true", "short_conv=true"],
                                       ["mixer=attention", "short_conv=false", "tie_embeddings=true"]])
def test_muon_takes_exactly_the_matrices_each_layer_declares(overrides):
    model = tiny(*overrides)
    groups = model.parameter_groups()
    per_layer = 5 if model.config.mixer == "mlstm" else 4            # + gate/up/down of the FFN
    assert len(groups.matrices) == (per_layer + 3) * model.config.num_layers
    assert {id(p) for p in groups.matrices} | {id(p) for p in groups.other} == {id(p) for p in model.parameters()}
    split = split_parameters(model, "muon")
    assert [id(p) for _, p in split.muon] == [id(p) for p in model.parameters() if id(p) in
                                              {id(q) for q in groups.matrices}]       # in parameters() order
    mixer = model.layers[0].mixer
    assert all(p is not mixer.igate.weight for _, p in split.muon) if model.config.mixer == "mlstm" else True
    assert model.embed_tokens.weight in [p for _, p in split.adamw_decay]        # a matrix, not a hidden one


class Block(nn.Module):
    """Its hidden matrix is named ``igate`` (the old name rule's per-head gate); its gate is ``proj``."""

    def __init__(self) -> None:
        super().__init__()
        self.igate = nn.Linear(4, 4, bias=False)
        self.proj = nn.Linear(4, 2)

    def hidden_matrices(self) -> list[nn.Parameter]:
        return [self.igate.weight]


class Odd(nn.Module):
    """A model whose names mean nothing to a name rule: only its declaration says what is what."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Block(), Block()])
        self.readout = nn.Linear(4, 4, bias=False)      # a hidden matrix outside 'layers.'
        self.scale = nn.Parameter(torch.ones(4))
        self.declared: list[nn.Parameter] | None = None

    def parameter_groups(self) -> ParameterGroups:
        matrices = self.declared if self.declared is not None else (
            [b.hidden_matrices()[0] for b in self.layers] + [self.readout.weight])
        ids = {id(p) for p in matrices}
        return ParameterGroups(matrices=matrices, other=[p for p in self.parameters() if id(p) not in ids])


def test_the_declaration_decides_not_the_names():
    model = Odd()
    cfg = load_train_config(TRAIN_CONFIG)
    optimizers, split = build_optimizers(model, cfg)
    assert [n for n, _ in split.muon] == ["layers.0.igate.weight", "layers.1.igate.weight", "readout.weight"]
    assert {n for n, _ in split.adamw_decay} == {"layers.0.proj.weight", "layers.1.proj.weight"}
    assert {n for n, _ in split.adamw_no_decay} == {"layers.0.proj.bias", "layers.1.proj.bias", "scale"}
    assert [p for g in optimizers["muon"].param_groups for p in g["params"]] == [p for _, p in split.muon]


def test_a_wrong_declaration_or_grouping_is_refused():
    model = Odd()
    cfg = load_train_config(TRAIN_CONFIG)
    model.declared = [model.readout.weight, model.readout.weight]          # twice
    with pytest.raises(RuntimeError, match="readout.weight is declared 2 times"):
        build_optimizers(model, cfg)
    model.declared = [model.scale]                                          # not a matrix
    with pytest.raises(RuntimeError, match="scale is 1-D, not a matrix"):
        build_optimizers(model, cfg)
    model.declared = None
    optimizers, _ = build_optimizers(model, cfg)
    optimizers["adamw"].param_groups[0]["params"].append(model.readout.weight)   # a second group holds it
    with pytest.raises(RuntimeError, match=r"readout.weight is in muon\[0\], adamw\[0\]"):
        check_every_parameter_once(model, optimizers)
    optimizers, _ = build_optimizers(model, cfg)
    optimizers["adamw"].param_groups[-1]["params"].remove(model.scale)
    with pytest.raises(RuntimeError, match="scale is in no optimizer group"):
        check_every_parameter_once(model, optimizers)


def test_muon_needs_a_declaring_model_adamw_does_not():
    plain = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with pytest.raises(BlalmError, match="optimizer = 'muon' needs a model that declares its hidden matrices"):
        build_optimizers(plain, load_train_config(TRAIN_CONFIG))
    optimizers, split = build_optimizers(plain, load_train_config(TRAIN_CONFIG, ["optimizer='adamw'"]))
    assert list(optimizers) == ["adamw"] and not split.muon and len(split.adamw) == 4
