"""Training-step variants of the paper-scale models, timed as ``blalm bench train`` times the model
(issue 14: "measure each step and keep what pays"). One variant per process:

    PYTHONPATH=src python docs/results/scripts/train_variants.py VARIANT [--set key=value ...]

VARIANT:
  whole       the model compiled whole (what ``compile = true`` does today)
  regional    each decoder layer compiled on its own (one graph reused by every layer: compile time)
  liger_flce  the trunk compiled whole, the LM head + cross-entropy through Liger-Kernel's fused
              linear cross-entropy (no (B, S, V) logits in memory)
Prints one JSON row (tokens/s, first step = compile, peak memory). CUDA only; liger_flce needs
liger-kernel installed.
"""

from __future__ import annotations

import argparse
import json

import torch

from blalm.bench.train import make_step, result_row, timed
from blalm.model.decoder import build_model, count_parameters
from blalm.train.config import load_train_config
from blalm.train.execution import resolve_for
from blalm.train.optim import build_optimizers


def trunk(model, ids):
    x = model.embed_tokens(ids)
    rope = model.rotary(ids.shape[1], 0, device=ids.device)
    for layer in model.layers:
        x = layer(x, rope)
    return model.norm(x)


def loss_function(variant: str, model):
    if variant == "whole":
        forward = torch.compile(model)
        return lambda ids: forward(ids, labels=ids).loss
    if variant == "regional":
        for layer in model.layers:
            layer.compile()
        return lambda ids: model(ids, labels=ids).loss
    if variant == "liger_flce":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        flce = LigerFusedLinearCrossEntropyLoss()
        compiled_trunk = torch.compile(trunk)

        def loss(ids):
            x = compiled_trunk(model, ids)
            hidden = x[:, :-1].reshape(-1, x.shape[-1])
            return flce(model.lm_head.weight.to(hidden.dtype), hidden, ids[:, 1:].reshape(-1))

        return loss
    raise SystemExit(f"unknown variant {variant!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument("--config", default="configs/train/strict_small.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    gpu = ["micro_batch=64", 'model.mlstm_kernel="triton"'] if torch.cuda.is_available() else []
    cfg = load_train_config(args.config, [*gpu, *args.overrides])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = resolve_for(cfg, device)
    torch.manual_seed(0)
    model = build_model(cfg.model, device).train()
    optimizers, _ = build_optimizers(model, cfg, fused=device.type == "cuda")
    step = make_step(model, list(optimizers.values()), cfg, device, loss_function(args.variant, model))
    times, first = timed(step, args.steps, args.warmup, device)
    row = result_row(f"blalm-{cfg.model.mixer}-{cfg.model.num_layers}L", count_parameters(model)["total"], times,
                     cfg, device, {"variant": args.variant, "optimizer": cfg.optimizer, "first_step_s": first})
    row.pop("versions", None)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
