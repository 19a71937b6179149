"""Fast by default: what ``compile = "auto"`` and ``micro_batch = 0`` mean on the device at hand.

``blalm train CONFIG --out DIR`` on a CUDA GPU runs the fastest measured path without flags:
the mLSTM kernel ``auto`` (Triton, :mod:`blalm.model.ops.mlstm`), each decoder layer compiled, and
the largest micro-batch whose activations fit the GPU's memory, the global batch kept by gradient
accumulation. On the CPU nothing changes: no compilation, and ``micro_batch = 0`` is at most 8
blocks (the former default). The resolved values are what the run's ``config.json`` records.

The memory estimate (:func:`estimated_bytes`) is a rule fitted to the peaks measured on an H100 and
an H200 (``docs/results/performance.md``): the weights, gradients and optimizer moments take
16 bytes a parameter, and a block of ``S`` tokens needs about ``c · S · L · D`` bytes of
activations in the L layers of width D (c ≈ 41 compiled, ≈ 2× that eager; 48 / 96 are used, with
a 20% margin on the GPU's memory) plus ``10 · S · V`` for the logits and their gradient. The
paper's 270M BLaLM peaked at 35.2 GiB at micro-batch 64 compiled on an H200 (33.9 GiB eager at
micro-batch 32 on an H100), which the rule puts at 44.6 GiB (42.3 GiB): on the safe side.
"""

from __future__ import annotations

import dataclasses

from blalm.train.config import TrainConfig, largest_divisor_at_most

CPU_MICRO_BATCH = 8                  # micro_batch = 0 on the CPU: at most this many blocks a pass
BYTES_PER_PARAMETER = 16             # fp32 weights, gradients and two optimizer moments
ACTIVATION_BYTES = {True: 48, False: 96}   # per token, layer and hidden unit; compiled / eager
LOGIT_BYTES = 10                     # per token and vocabulary entry (bf16 logits, fp32 loss, gradient)
MEMORY_SHARE = 0.8                   # of the GPU's memory the estimate may take


def estimated_bytes(cfg: TrainConfig, parameters: int, micro_batch: int, compiled: bool) -> int:
    """Peak training memory of one process at ``micro_batch`` (see the module docstring)."""
    m = cfg.model
    per_block = cfg.context_length * (ACTIVATION_BYTES[compiled] * m.num_layers * m.hidden_size
                                      + LOGIT_BYTES * m.vocab_size)
    return BYTES_PER_PARAMETER * parameters + micro_batch * per_block


def choose_micro_batch(cfg: TrainConfig, parameters: int, world_size: int, memory_bytes: int | None,
                       compiled: bool) -> int:
    """The largest divisor of the blocks each process takes per step (``global_batch / world_size``)
    that fits ``MEMORY_SHARE`` of ``memory_bytes`` (the GPU's memory; None = the CPU: at most
    ``CPU_MICRO_BATCH``). At least 1, even when nothing seems to fit (the run then finds out)."""
    per_process = max(1, cfg.global_batch // world_size)
    if memory_bytes is None:
        return largest_divisor_at_most(per_process, CPU_MICRO_BATCH)
    fits = [d for d in range(1, per_process + 1) if per_process % d == 0
            and estimated_bytes(cfg, parameters, d, compiled) <= MEMORY_SHARE * memory_bytes]
    return max(fits, default=1)


def resolve_execution(cfg: TrainConfig, device_type: str, parameters: int, world_size: int = 1,
                      memory_bytes: int | None = None) -> TrainConfig:
    """``cfg`` with ``compile = "auto"`` and ``micro_batch = 0`` made concrete for ``device_type``
    ("cuda" or "cpu"; ``memory_bytes`` the GPU's memory). Values given explicitly are kept."""
    cuda = device_type == "cuda"
    compiled = cuda if cfg.compile == "auto" else bool(cfg.compile)
    micro = cfg.micro_batch or choose_micro_batch(cfg, parameters, world_size, memory_bytes if cuda else None,
                                                  compiled)
    return dataclasses.replace(cfg, compile=compiled, micro_batch=micro)


def resolve_for(cfg: TrainConfig, device, world_size: int = 1) -> TrainConfig:
    """:func:`resolve_execution` for a ``torch.device``: the parameter count from the model built on
    the meta device (no memory), the GPU's total memory from CUDA."""
    import torch

    from blalm.model.decoder import build_model, count_parameters

    if cfg.compile != "auto" and cfg.micro_batch:
        return cfg
    parameters = count_parameters(build_model(cfg.model, "meta"))["total"]
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    return resolve_execution(cfg, device.type, parameters, world_size, memory)
