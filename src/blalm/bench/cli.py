"""``blalm bench``: benchmarks that print JSON lines (speed targets are checked here, not in unit tests)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks printing JSON lines (tokens/s, ms, memory, device, versions)",
                       description="Benchmarks. Each prints one JSON object per line.")
    verbs = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    m = verbs.add_parser("mixer", help="forward+backward time of the token mixers at one shape",
                         description="Times flash SDPA (causal), sliding-window attention and the mLSTM "
                                     "kernels at one (batch, heads, seq, head dim), forward + backward.")
    m.add_argument("--batch", type=int, default=32, help="batch size (default 32, the paper's micro-batch)")
    m.add_argument("--heads", type=int, default=16, help="heads (default 16)")
    m.add_argument("--seq", type=int, default=512, help="sequence length (default 512)")
    m.add_argument("--head-dim", type=int, default=64, help="head dimension (default 64)")
    m.add_argument("--window", type=int, default=128, help="sliding window of the SWA mixer (default 128)")
    m.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                   help="dtype of q, k, v (gates stay float32)")
    m.add_argument("--kernels", default="parallel,chunkwise,parallel_compiled",
                   help="comma-separated mLSTM kernel names from the registry")
    m.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    m.add_argument("--reps", type=int, default=20, help="timed repetitions (median reported)")
    m.add_argument("--warmup", type=int, default=5, help="untimed warm-up repetitions")
    m.add_argument("--check", action="store_true",
                   help="also compare each mLSTM kernel with the float64 reference (outputs and gradients)")
    m.add_argument("--compile", action="store_true",
                   help="run every mixer under torch.compile (as a compiled training step does)")
    m.add_argument("--tiles", default=None, metavar="M,N,W,S;...",
                   help="instead of the mixers, time the triton mLSTM kernel with each tile set "
                        "(BLOCK_M,BLOCK_N,warps,stages; semicolon-separated), forward and forward+backward")
    m.set_defaults(func=run_mixer)

    t = verbs.add_parser("train", help="training-step throughput of a training config's model (and its HF peer)",
                         description="Times optimizer steps of the model in a training CONFIG (configs/train/*.toml) "
                                     "on random tokens: global batch by accumulation, bf16 autocast on GPU, the "
                                     "config's optimizers. Prints tokens/s, step ms, MFU and peak memory. Under "
                                     "torchrun (one process per GPU) it times DDP, the global batch split over the GPUs.")
    from blalm.cli import add_config_args

    add_config_args(t, "training")
    t.add_argument("--steps", type=int, default=10, help="timed optimizer steps (median reported; default 10)")
    t.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (default 3)")
    t.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    t.add_argument("--peers", action="store_true",
                   help="also time the Hugging Face model of the same family and shape (Qwen3 / xLSTM)")
    t.add_argument("--profile", action="store_true",
                   help="instead of timing, print a torch-profiler table of 2 steps (where the time goes)")
    t.set_defaults(func=run_train)

    d = verbs.add_parser("decode", help="decoding tokens/s and cache memory against the context length",
                         description="Prefills a random prompt of each context length through the decoding cache, "
                                     "then decodes tokens one at a time (batch 1). mLSTM caches stay constant in "
                                     "the context length; attention's KV cache grows with it.")
    d.add_argument("config", metavar="CONFIG", help="model config file (configs/model/*.toml)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model config value (e.g. --set num_layers=4); repeatable")
    d.add_argument("--contexts", default="512,4096,32768", help="comma-separated context lengths")
    d.add_argument("--new-tokens", type=int, default=64, help="tokens decoded after each prefill (default 64)")
    d.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="model dtype")
    d.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    d.set_defaults(func=run_decode)


def run_mixer(args: argparse.Namespace) -> int:
    from blalm.bench.mixer import MixerShape, bench_mixers, parse_tiles, tune_tiles
    from blalm.run.device import resolve_device

    device = resolve_device(args.device or "auto").type     # the kernels take "cuda" or "cpu"
    shape = MixerShape(args.batch, args.heads, args.seq, args.head_dim, args.dtype, args.window)
    kernels = [k for k in args.kernels.split(",") if k]
    if args.tiles:
        rows = tune_tiles(shape, parse_tiles(args.tiles), device, args.warmup, args.reps)
    else:
        rows = bench_mixers(shape, kernels, device, args.warmup, args.reps, args.check, args.compile)
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from blalm.bench.train import bench_train, profile_blalm
    from blalm.run.device import Dist, resolve_device
    from blalm.train.config import load_train_config

    cfg = load_train_config(args.config, args.overrides)
    device = resolve_device(args.device or "auto")       # torchrun: one GPU per rank
    if args.profile:
        print(profile_blalm(cfg, device, warmup=args.warmup))
        return 0
    dist = Dist(device)
    try:
        for row in bench_train(cfg, device, args.steps, args.warmup, args.peers and not dist.enabled, dist):
            if dist.is_main:
                print(json.dumps(row), flush=True)
    finally:
        dist.close()
    return 0


def run_decode(args: argparse.Namespace) -> int:
    import torch

    from blalm.bench.decode import bench_decode
    from blalm.model.cli import load_model_config
    from blalm.run.device import resolve_device

    cfg = load_model_config(args.config, args.overrides)
    device = resolve_device(args.device or "auto")
    contexts = [int(c) for c in args.contexts.split(",") if c]
    for row in bench_decode(cfg, device, contexts, args.new_tokens, getattr(torch, args.dtype)):
        print(json.dumps(row), flush=True)
    return 0
