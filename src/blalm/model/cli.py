"""The model stage's verbs: ``blalm model summary``, ``blalm export`` and ``blalm generate``.
torch and transformers are imported inside the functions so ``blalm --help`` stays fast."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from blalm.config import Origin, deep_merge, load_config, to_dict
from blalm.model.config import ModelConfig


def load_model_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ModelConfig:
    """``configs/model/*.toml`` (or the defaults) with ``key=value`` overrides. A key may also be
    written as in a training config, under ``model.`` (``model.short_conv=true`` = ``short_conv=true``)."""
    return load_config(ModelConfig, path, overrides, prepare=_accept_model_prefix)


def _accept_model_prefix(data: dict[str, Any], origin: Origin) -> dict[str, Any]:
    inline = data.pop("model", None)
    if inline is None:
        return data
    if not isinstance(inline, dict):
        raise origin.error("model", f"'model' must be a table of model config keys, got {inline!r}",
                           "give dotted keys, e.g. --set model.short_conv=true")
    for key in [k for k in origin.overrides if k.startswith("model.")]:
        origin.overrides[key.removeprefix("model.")] = origin.overrides.pop(key)
    return deep_merge(data, inline)


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


def run_export(args: argparse.Namespace) -> int:
    from blalm.model.export import export_hf

    out = export_hf(args.checkpoint, args.out, tokenizer_dir=args.tokenizer)
    print(f"exported {args.checkpoint} to {out}; load it with "
          f"AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True) and "
          f"AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from blalm.model.generate import generate_text

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = generate_text(args.checkpoint, args.prompt, args.max_new_tokens, temperature=args.temperature,
                           top_k=args.top_k, seed=args.seed, tokenizer_dir=args.tokenizer,
                           start_token=args.start_token, device=device)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(result["prompt"] + result["completion"])
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
    add_config_args(summary, "model", "--set short_conv=true, or as in a training config: --set model.short_conv=true")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON (includes the full config)")
    summary.set_defaults(func=run_summary)

    export = subparsers.add_parser(
        "export", help="write a model checkpoint as a self-contained Hugging Face folder",
        description="Write CHECKPOINT as a Hugging Face model folder: safetensors weights, config.json, the "
                    "tokenizer, and modelling code generated from blalm's own sources, so that "
                    "AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True) loads it without blalm "
                    "(transformers 4.51 or 5.x).")
    export.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="model checkpoint folder (model.safetensors + model_config.json), e.g. one "
                             "written by training")
    export.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (new, empty, or an earlier export, which is replaced)")
    export.add_argument("--tokenizer", metavar="DIR", default=None,
                        help="tokenizer folder (default: the tokenizer copied into the checkpoint)")
    export.set_defaults(func=run_export)

    gen = subparsers.add_parser(
        "generate", help="continue a prompt with a model checkpoint",
        description="Continue --prompt with the model in CHECKPOINT (greedy by default), using the decoding "
                    "cache: the mLSTM's recurrent state, the SWA window, the attention KV cache. Stops at EOS.")
    gen.add_argument("checkpoint", metavar="CHECKPOINT", help="model checkpoint folder")
    gen.add_argument("--prompt", required=True, help="the text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=50, metavar="N",
                     help="generate at most N tokens (default 50)")
    gen.add_argument("--temperature", type=float, default=0.0, metavar="T",
                     help="0 = greedy (default); > 0 samples from softmax(logits / T)")
    gen.add_argument("--top-k", type=int, default=None, metavar="K",
                     help="when sampling, only from the K most likely tokens (default: all)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed for sampling (default 0)")
    gen.add_argument("--tokenizer", metavar="DIR", default=None,
                     help="tokenizer folder (default: the tokenizer copied into the checkpoint)")
    gen.add_argument("--start-token", choices=("eos", "bos", "none"), default="eos",
                     help="token put before the prompt: eos (default; training streams end every line with "
                          "EOS, so this starts a new line as in training), bos, or none")
    gen.add_argument("--device", default="auto", help="cpu, cuda, or auto (default: cuda when available)")
    gen.add_argument("--json", action="store_true", help="print the result as JSON (with the new token ids)")
    gen.set_defaults(func=run_generate)
