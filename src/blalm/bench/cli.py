"""``blalm bench``: benchmarks that print JSON lines (speed targets are checked here, not in unit tests)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
    m.add_argument("--peers", default="", metavar="NAMES",
                   help="also time these peer kernels, each in its own process (a compiler abort becomes "
                        "an error row): comma-separated from nxai_triton_limit_chunk, nxai_triton_xl_chunk, "
                        "fla_chunk_simple_gla, fla_parallel_forgetting_attn, or 'all' (CUDA only; needs "
                        "mlstm_kernels / fla-core installed)")
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
    t.add_argument("--reference", action="store_true",
                   help="also time a plain ~100-line PyTorch decoder of the same shape (SDPA or the naive "
                        "quadratic mLSTM, F.rms_norm, SwiGLU, RoPE, fused AdamW; compiled when the config "
                        "compiles) and print ours / plain")
    t.add_argument("--profile", action="store_true",
                   help="instead of timing, print a torch-profiler table of 2 steps (where the time goes); "
                        "under torchrun rank 0's, with every rank stepping (DDP or FSDP: --set parallelism=...)")
    t.add_argument("--trace", type=Path, default=None, metavar="FILE",
                   help="with --profile: also write rank 0's Chrome trace to FILE (chrome://tracing, Perfetto: "
                        "all-reduces overlapped with the backward or exposed after it)")
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

    e = verbs.add_parser("eval", help="per-task wall time and sentences/s of the zero-shot suite (and the official pipeline's)",
                         description="Scores MODEL (a blalm checkpoint or a Hugging Face folder) on the suite REPEAT "
                                     "times in one process (the first pass cold: data read and tokenized; later "
                                     "passes warm: from the weights in memory to the scores) and prints JSON lines "
                                     "per task (seconds, sentences/s, read/tokenize/score split) and a table. "
                                     "--official also times the official BabyLM pipeline on the same model.")
    e.add_argument("model", metavar="MODEL", type=Path, help="a blalm checkpoint folder or a Hugging Face model folder")
    e.add_argument("--suite", choices=("fast", "full"), default="fast", help="fast (default) or full")
    e.add_argument("--tasks", nargs="+", default=["blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj",
                                                  "wug_past", "reading"], metavar="TASK",
                   help="tasks to time (default: every scored task; 'reading' = eye tracking + self-paced reading)")
    e.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="bf16", help="GPU forward precision (default bf16)")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: cuda when available")
    e.add_argument("--data-dir", type=Path, default=None, metavar="PATH",
                   help="evaluation data folder (default: $BLALM_DATA_DIR/eval, else ../shared/data/eval)")
    e.add_argument("--batch-size", type=int, default=1024, metavar="N", help="most sequences per forward pass (default 1024)")
    e.add_argument("--token-budget", type=int, default=0, metavar="N",
                   help="most padded tokens per forward pass (default 0: 1024 on the CPU, 16384 on a GPU)")
    e.add_argument("--shared-prefix-min", type=int, default=32, metavar="N",
                   help="blalm models: run a prefix of at least N tokens shared by candidates once (0 = never; default 32)")
    e.add_argument("--compile", action="store_true", help="torch.compile the model (static bucketed shapes)")
    e.add_argument("--repeat", type=int, default=2, metavar="N", help="passes over the suite in one process (default 2)")
    e.add_argument("--profile", action="store_true",
                   help="instead of timing, print a torch-profiler table of one warm pass (after a cold one): "
                        "where the scoring time goes, by device time on a GPU")
    e.add_argument("--trace", type=Path, default=None, metavar="FILE",
                   help="with --profile: also write the warm pass's Chrome trace to FILE (chrome://tracing, Perfetto)")
    e.add_argument("--official", action="store_true",
                   help="also run the official pipeline (BLALM_PIPELINE_DIR, else ../shared/babylm-pipeline) on the "
                        "same model in a subprocess and print its seconds per task beside ours")
    e.add_argument("--official-deps", type=Path, default=None, metavar="DIR",
                   help="a folder with the official pipeline's extra packages (scipy; pandas, statsmodels for "
                        "reading), e.g. from 'pip install --target DIR'; default: this environment's")
    e.add_argument("--workdir", type=Path, default=Path(".cache"), metavar="DIR",
                   help="where the official run's private folder goes (default .cache; removed afterwards)")
    e.set_defaults(func=run_eval_bench)


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
    if args.peers:
        import itertools

        from blalm.bench.peers import PEERS, bench_peers

        names = list(PEERS) if args.peers == "all" else [n for n in args.peers.split(",") if n]
        rows = itertools.chain(rows, bench_peers(shape, names, args.warmup, args.reps))
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from blalm.bench.train import bench_train, profile_blalm
    from blalm.run.device import Dist, resolve_device
    from blalm.train.config import load_train_config

    cfg = load_train_config(args.config, args.overrides)
    device = resolve_device(args.device or "auto")       # torchrun: one GPU per rank
    dist = Dist(device)
    try:
        if args.profile:
            table = profile_blalm(cfg, device, warmup=args.warmup, dist=dist,
                                  trace=args.trace if dist.is_main else None)
            if dist.is_main:
                print(table)
            return 0
        for row in bench_train(cfg, device, args.steps, args.warmup, args.peers and not dist.enabled, dist,
                               reference=args.reference and not dist.enabled):
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


def run_eval_bench(args: argparse.Namespace) -> int:
    from blalm.bench.eval import bench_official, bench_ours, format_bench_table, profile_ours
    from blalm.config import from_dict
    from blalm.eval.config import EvalConfig

    data = {"suite": args.suite, "tasks": list(args.tasks), "precision": args.precision, "device": args.device,
            "batch_size": args.batch_size, "token_budget": args.token_budget,
            "shared_prefix_min": args.shared_prefix_min, "compile": bool(args.compile), "progress": False}
    if args.data_dir is not None:
        data["data_dir"] = str(args.data_dir)
    cfg = from_dict(EvalConfig, data, where="command line")
    if args.profile:
        print(profile_ours(args.model, cfg, trace=args.trace, log=lambda m: print(m, file=sys.stderr)))
        return 0
    rows = bench_ours(args.model, cfg, repeat=max(1, args.repeat), log=lambda m: print(m, file=sys.stderr))
    if args.official:
        rows += bench_official(args.model, cfg, args.workdir, deps=args.official_deps)
    for row in rows:
        print(json.dumps(row), flush=True)
    print(format_bench_table(rows))
    return 0
