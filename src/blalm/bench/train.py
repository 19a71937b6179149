"""``blalm bench train``: training-step throughput of a training config's model, and its HF peer.

One optimizer step = ``global_batch`` blocks of ``context_length`` random tokens, in micro-batches
with gradient accumulation, bf16 autocast on GPU, the config's optimizers (Muon + AdamW, fused AdamW
on GPU), gradient clipping — the trainer's step without the data loader. The median step time
after warm-up gives tokens/s and MFU (6 · parameters · tokens/s over the device's dense bf16 peak).
With ``peers``, the Hugging Face model of the same family and shape (Qwen3 for the Transformer,
xLSTM for BLaLM) is timed the same way with fused AdamW, so the ratio is measured side by side.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from blalm.model.decoder import build_model, count_parameters
from blalm.bench import device_fields
from blalm.train.config import TrainConfig
from blalm.train.optim import build_optimizers
from blalm.run.device import Dist, precision_context, resolve_precision, seed_everything
from blalm.run.parallel import Parallel
from blalm.train.trainer import wrap_for_training

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def time_steps(step: Callable[[], None], steps: int, warmup: int, device: torch.device,
               warmup_times: list[float] | None = None) -> list[float]:
    """Seconds of each of ``steps`` steps after ``warmup`` untimed ones (whose times, compile
    included in the first, go to ``warmup_times`` when given)."""
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        elif warmup_times is not None:
            warmup_times.append(time.perf_counter() - start)
    return times


def timed(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> tuple[list[float], float | None]:
    """``(times, first)``: :func:`time_steps` with the GPU's peak memory counted from here, and the
    first warm-up step's seconds (compilation included)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first: list[float] = []
    times = time_steps(step, steps, warmup, device, first)
    return times, round(first[0], 2) if first else None


def make_step(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], cfg: TrainConfig,
              device: torch.device, loss_of: Callable[[torch.Tensor], torch.Tensor],
              world_size: int = 1, parallel: Parallel | None = None) -> Callable[[], None]:
    """One optimizer step as the trainer takes it; with ``parallel`` (DDP or FSDP under torchrun)
    the gradients meet across the processes in the last micro-batch only, as in training."""
    parallel = parallel or Parallel(model)
    vocab = cfg.model.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(0)
    batch = torch.randint(0, vocab, (cfg.micro_batch, cfg.context_length), generator=gen).to(device)
    accumulation = cfg.global_batch // (cfg.micro_batch * world_size)
    precision = resolve_precision("auto", device)     # bf16 autocast on GPU, as training runs

    def step() -> None:
        for a in range(accumulation):
            with parallel.sync(last=a == accumulation - 1):
                with precision_context(device, precision):
                    loss = loss_of(batch) / accumulation
                loss.backward()
        parallel.sync_replicated()
        if cfg.grad_clip:
            parallel.clip_grad_norm(model.parameters(), cfg.grad_clip)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step


def result_row(name: str, params: int, times: list[float], cfg: TrainConfig, device: torch.device,
               extra: dict[str, Any]) -> dict[str, Any]:
    step_s = statistics.median(times)
    tokens_per_s = cfg.global_batch * cfg.context_length / step_s
    peak = peak_flops(device)
    row = {"bench": "train", "model": name, "parameters": params, "global_batch": cfg.global_batch,
           "micro_batch": cfg.micro_batch, "context_length": cfg.context_length,
           "step_ms_median": round(step_s * 1e3, 1), "step_ms_min": round(min(times) * 1e3, 1),
           "tokens_per_s": round(tokens_per_s), **extra}
    if peak:
        row["mfu"] = round(6 * params * tokens_per_s / peak, 4)
    return {**row, **device_fields(device)}


def blalm_step(cfg: TrainConfig, device: torch.device, dist: Dist | None = None
               ) -> tuple[torch.nn.Module, Parallel, Callable[[], None]]:
    """The config's model, how it runs over the processes (``cfg.parallelism`` under torchrun:
    DDP, or FSDP2 with the optimizers built on the shards) and one optimizer step of it."""
    dist = dist or Dist()
    seed_everything(cfg.seed)
    model = build_model(cfg.model, device)
    model.train()
    parallel = wrap_for_training(model, cfg, dist, device)     # as blalm train runs it
    optimizers, _ = build_optimizers(model, cfg, fused=device.type == "cuda")
    step = make_step(model, list(optimizers.values()), cfg, device,
                     lambda ids: parallel.module(ids, labels=ids).loss, dist.world_size, parallel)
    return model, parallel, step


def bench_blalm(cfg: TrainConfig, device: torch.device, steps: int, warmup: int,
                dist: Dist | None = None) -> dict[str, Any]:
    """One training config's step time; under ``torchrun`` (``dist`` enabled) DDP or FSDP over the
    ranks (``cfg.parallelism``), the global batch split between them, tokens/s counted over all of them."""
    world = dist.world_size if dist is not None else 1
    model, parallel, step = blalm_step(cfg, device, dist)
    times, first = timed(step, steps, warmup, device)
    name = f"blalm-{cfg.model.mixer}-{cfg.model.num_layers}L"
    row = result_row(name, count_parameters(model)["total"], times, cfg, device,
                     {"optimizer": cfg.optimizer, "compile": cfg.compile, "mlstm_kernel": cfg.model.mlstm_kernel,
                      "mechanisms": cfg.model.mechanisms(), "world_size": world, "parallelism": parallel.kind,
                      "ddp_bucket_cap_mb": cfg.ddp_bucket_cap_mb if parallel.kind == "ddp" else None,
                      "first_step_s": first})
    if "mfu" in row:
        row["mfu"] = round(row["mfu"] / world, 4)   # per GPU
    return row


def hf_peer(cfg: TrainConfig) -> tuple[str, Any]:
    """The Hugging Face model of the same family and shape (built from its config, random weights)."""
    import transformers

    m = cfg.model
    if m.mixer == "attention":
        config = transformers.Qwen3Config(
            vocab_size=m.vocab_size, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
            num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_heads,
            head_dim=m.head_dim, tie_word_embeddings=m.tie_embeddings, max_position_embeddings=cfg.context_length)
        return "hf-qwen3", transformers.Qwen3ForCausalLM(config)
    config = transformers.xLSTMConfig(
        vocab_size=m.vocab_size, hidden_size=m.hidden_size, num_hidden_layers=m.num_layers, num_heads=m.num_heads,
        tie_word_embeddings=m.tie_embeddings)
    return "hf-xlstm", transformers.xLSTMForCausalLM(config)


def bench_peer(cfg: TrainConfig, device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    seed_everything(cfg.seed)
    name, model = hf_peer(cfg)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    step = make_step(model, [opt], cfg, device, lambda ids: model(input_ids=ids, labels=ids).loss)
    times, first = timed(step, steps, warmup, device)
    params = sum(p.numel() for p in model.parameters())
    return result_row(name, params, times, cfg, device, {"optimizer": "adamw (fused)", "compile": False,
                                                         "first_step_s": first})


def bench_reference(cfg: TrainConfig, device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    """The plain PyTorch decoder of the same shape (:mod:`blalm.bench.reference`), fused AdamW,
    compiled when the config compiles, timed exactly as the blalm model is."""
    from blalm.bench.reference import PlainDecoder

    seed_everything(cfg.seed)
    model = PlainDecoder(cfg.model).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    forward = torch.compile(model) if cfg.compile else model
    step = make_step(model, [opt], cfg, device, forward)
    times, first = timed(step, steps, warmup, device)
    name = "plain-naive-mlstm" if cfg.model.mixer == "mlstm" else "plain-sdpa"
    params = sum(p.numel() for p in model.parameters())
    return result_row(name, params, times, cfg, device, {"optimizer": "adamw (fused)", "compile": cfg.compile,
                                                         "first_step_s": first})


def profile_blalm(cfg: TrainConfig, device: torch.device, steps: int = 2, warmup: int = 3,
                  row_limit: int = 25, dist: Dist | None = None, trace: Path | None = None) -> str:
    """A torch-profiler table of ``steps`` optimizer steps (after warm-up): where the step time goes.
    Under ``torchrun`` every rank runs the profiled steps (DDP or FSDP, as :func:`bench_blalm`) and
    the table is this rank's; ``trace``: also write this rank's Chrome trace there (the collectives'
    overlap with the backward is seen on its timeline)."""
    from blalm.bench import profiler_table
    from blalm.train.execution import resolve_for

    _, _, step = blalm_step(resolve_for(cfg, device, dist.world_size if dist is not None else 1), device, dist)
    time_steps(step, 0, warmup, device)
    return profiler_table(lambda: time_steps(step, steps, 0, device), device, row_limit, trace)


def bench_train(cfg: TrainConfig, device: torch.device, steps: int = 10, warmup: int = 3,
                peers: bool = False, dist: Dist | None = None, reference: bool = False) -> Iterator[dict[str, Any]]:
    """The config's model, then (``reference``) the plain decoder of the same shape with the ratio
    ``ours / plain`` of tokens/s, then (``peers``) the Hugging Face model. ``compile = "auto"`` and
    ``micro_batch = 0`` are resolved for ``device`` as ``blalm train`` resolves them."""
    from blalm.train.execution import resolve_for

    cfg = resolve_for(cfg, device, dist.world_size if dist is not None else 1)
    ours = bench_blalm(cfg, device, steps, warmup, dist)
    yield ours
    if reference:
        torch._dynamo.reset()
        plain = bench_reference(cfg, device, steps, warmup)
        plain["ours_over_plain"] = round(ours["tokens_per_s"] / plain["tokens_per_s"], 3)
        yield plain
    if peers:
        try:
            yield bench_peer(cfg, device, steps, warmup)
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            yield {"bench": "train", "model": "hf-peer", "error": f"{type(exc).__name__}: {exc}"[:500]}
