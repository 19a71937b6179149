"""``blalm model ...`` verbs. torch is imported inside the functions so ``blalm --help`` stays fast."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from blalm.config import load_config, to_dict
from blalm.model.config import ModelConfig


def load_model_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ModelConfig:
    """``configs/model/*.toml`` (or the defaults) with ``key=value`` overrides."""
    return load_config(ModelConfig, path, overrides)


def model_summary(config: ModelConfig) -> dict[str, Any]:
    """Parameter counts and shape of the model ``config`` describes, built on the ``meta``
    device (no memory, instant even at paper scale)."""
    import torch

    from blalm.model.decoder import BlalmForCausalLM, count_parameters

    with torch.device("meta"):
        model = BlalmForCausalLM(config)
    counts = count_parameters(model)
    layer = model.layers[0]
    return {
        "parameters": counts["total"],
        "non_embedding_parameters": counts["non_embedding"],
        "embedding_parameters": counts["embedding"],
        "per_layer": {
            "mixer": sum(p.numel() for p in layer.mixer.parameters()),
            "ffn": sum(p.numel() for p in layer.ffn.parameters()),
            "norms": sum(p.numel() for p in layer.mixer_norm.parameters()) + sum(p.numel() for p in layer.ffn_norm.parameters()),
        },
        "mixer": config.mixer,
        "mechanisms": config.mechanisms(),
        "mlstm_kernel": config.mlstm_kernel if config.mixer == "mlstm" else None,
        "layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "heads": config.num_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "tie_embeddings": config.tie_embeddings,
        "config": to_dict(config),
    }


def format_summary(summary: dict[str, Any]) -> str:
    def millions(n: int) -> str:
        return f"{n:,} ({n / 1e6:.1f}M)"

    mechanisms = ", ".join(summary["mechanisms"]) or "none"
    mixer = summary["mixer"] + (f" (kernel {summary['mlstm_kernel']})" if summary["mlstm_kernel"] else "")
    per_layer = summary["per_layer"]
    lines = [
        f"parameters:      {millions(summary['parameters'])}",
        f"non-embedding:   {millions(summary['non_embedding_parameters'])}",
        f"embedding:       {millions(summary['embedding_parameters'])}"
        f"{' (tied with the LM head)' if summary['tie_embeddings'] else ' (embedding + untied LM head)'}",
        f"layers:          {summary['layers']} x [mixer {per_layer['mixer']:,} + ffn {per_layer['ffn']:,}"
        f" + norms {per_layer['norms']:,}]",
        f"mixer:           {mixer}",
        f"mechanisms:      {mechanisms}",
        f"hidden / ffn:    {summary['hidden_size']} / {summary['intermediate_size']}",
        f"heads:           {summary['heads']} x head dim {summary['head_dim']}",
        f"vocab:           {summary['vocab_size']}",
    ]
    return "\n".join(lines)


def run_summary(args: argparse.Namespace) -> int:
    summary = model_summary(load_model_config(args.config, args.overrides))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from blalm.cli import add_config_args

    parser = subparsers.add_parser(
        "model", help="inspect model configs (decoder family: Transformer baseline, BLaLM)",
        description="Model stage: the Qwen-style decoder family (attention or mLSTM mixer) and its "
                    "configs under configs/model/.")
    sub = parser.add_subparsers(dest="model_verb", required=True, metavar="SUBVERB")
    summary = sub.add_parser(
        "summary", help="parameter counts, layers, mixer and mechanisms of a model config",
        description="Build the model on the meta device (no memory) and print its parameter counts "
                    "(total, non-embedding), layers, mixer, mechanisms and head dim.")
    add_config_args(summary, "model")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON (includes the full config)")
    summary.set_defaults(func=run_summary)
