"""How a training step runs over the processes of a ``torchrun`` launch: DDP or FSDP2.

:func:`parallelize` turns a model into a :class:`Parallel`: what the step calls (``module``), how
the gradients of accumulated micro-batches meet across the processes (:meth:`Parallel.sync`,
:meth:`Parallel.sync_replicated`) and the gradient clipping over them (:meth:`Parallel.clip_grad_norm`).

- ``"ddp"`` (data parallel, every process holds the whole model): ``DistributedDataParallel``
  with ``gradient_as_bucket_view=True`` (the gradients live in DDP's all-reduce buckets: no copy
  in and out) and ``bucket_cap_mb`` (DDP's 25 MiB by default); ``no_sync`` for all micro-batches
  but the last.
- ``"fsdp"`` (``torch.distributed.fsdp.fully_shard``, FSDP2): every decoder layer, then the root,
  sharded over the processes (row-wise, ``Shard(0)``); the parameters become ``DTensor`` shards, a
  forward all-gathers each layer's weights and a backward reduce-scatters its gradients
  (``set_requires_gradient_sync(False)`` for all micro-batches but the last). FSDP2 cannot shard
  0-D parameters (DynMod's α): they stay whole on every process (``replicated``) and their
  gradients are averaged by :meth:`Parallel.sync_replicated`. For models that do not fit one GPU.

In one process both are the model itself. Checkpoints stay full (unsharded) in either case:
:func:`full_tensors` gathers a sharded state on every process (rank 0 keeps it) and
:func:`shard_like` cuts a full tensor into the local shard of a sharded parameter, so a run
saved under FSDP resumes under DDP or in one process and the other way round
(:class:`blalm.run.session.RunSession` calls both).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import ContextManager, Iterable, Literal

import torch
from torch import nn

from blalm.run.device import Dist

Parallelism = Literal["ddp", "fsdp"]


def _dtensor_type():
    from torch.distributed.tensor import DTensor

    return DTensor


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (an FSDP shard of a parameter, its gradient or state)."""
    return torch.distributed.is_available() and isinstance(tensor, _dtensor_type())


@dataclass
class Parallel:
    """A model as one training step drives it over the processes (see the module docstring)."""

    module: nn.Module                 # what the step calls: the model, compiled, DDP-wrapped or sharded
    kind: Literal["single", "ddp", "fsdp"] = "single"
    replicated: list[nn.Parameter] = field(default_factory=list)   # FSDP: whole on every process

    def sync(self, last: bool) -> ContextManager:
        """The context of one micro-batch's forward and backward: gradients meet across the
        processes only in the ``last`` one (before it they accumulate locally)."""
        if last or self.kind == "single":
            return contextlib.nullcontext()
        if self.kind == "ddp":
            return self.module.no_sync()
        return _fsdp_no_sync(self.module)

    def sync_replicated(self) -> None:
        """Average the gradients of the parameters FSDP left whole (after the last backward)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.replicated]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat /= torch.distributed.get_world_size()
        offset = 0
        for p, g in zip(self.replicated, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def clip_grad_norm(self, params: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
        """Clip the gradients of ``params`` to the global 2-norm ``max_norm`` (``inf``: measure only);
        return the norm before clipping. Sharded gradients count every shard once, on every process."""
        params = list(params)
        if self.kind != "fsdp":
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        grads = [p.grad for p in params if p.grad is not None]
        sharded, whole = [g for g in grads if is_sharded(g)], [g for g in grads if not is_sharded(g)]
        norms = [torch.nn.utils.get_total_norm(whole)] if whole else []
        if sharded:
            norms.append(torch.nn.utils.get_total_norm(sharded).full_tensor())   # an all-reduce
        total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
        # torch's own formula (clip_grad_norm_), applied to the local shards: torch 2.13's
        # clip_grads_with_norm_ leaves DTensor gradients unchanged when given a plain norm
        coefficient = (max_norm / (total + 1e-6)).clamp(max=1.0)
        local = whole + [g.to_local() for g in sharded]
        if local:
            torch._foreach_mul_(local, coefficient)
        return total


@contextlib.contextmanager
def _fsdp_no_sync(module: nn.Module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def parallelize(model: nn.Module, parallelism: Parallelism, dist: Dist, device: torch.device,
                bucket_cap_mb: float | None = None, compile_model: bool = False,
                compile_mode: str | None = None) -> Parallel:
    """``model`` as the step drives it: in one process itself (``torch.compile``-d when
    ``compile_model``), under ``torchrun`` wrapped in DDP or sharded in place with FSDP2 (the
    optimizers must then be built on ``model``'s parameters after this call)."""
    if not dist.enabled:
        return Parallel(torch.compile(model, mode=compile_mode) if compile_model else model)
    if parallelism == "fsdp":
        replicated = shard_model(model, device)
        return Parallel(torch.compile(model, mode=compile_mode) if compile_model else model, "fsdp", replicated)
    module = torch.compile(model, mode=compile_mode) if compile_model else model
    ddp = nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True,
        **({"bucket_cap_mb": bucket_cap_mb} if bucket_cap_mb is not None else {}))
    return Parallel(ddp, "ddp")


def shard_model(model: nn.Module, device: torch.device) -> list[nn.Parameter]:
    """``fully_shard`` every decoder layer (``model.layers``), then the root, over all processes;
    the 0-D parameters (which FSDP2 cannot shard) are left whole and returned."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    replicated = [p for p in model.parameters() if p.ndim == 0]
    ignored = set(replicated) or None
    for layer in getattr(model, "layers", ()):
        fully_shard(layer, mesh=mesh, ignored_params=ignored)
    fully_shard(model, mesh=mesh, ignored_params=ignored)
    return replicated


def full_tensors(tensors: dict[str, torch.Tensor], keep: bool) -> dict[str, torch.Tensor]:
    """``tensors`` with every sharded one gathered whole (a collective: every process calls it, in
    the same order); the gathered copies land on the CPU, one at a time, and only where ``keep``
    (rank 0), elsewhere they are dropped. Without sharded tensors: ``tensors`` itself."""
    if not any(is_sharded(t) for t in tensors.values()):
        return tensors
    out = {}
    for key, tensor in tensors.items():
        if is_sharded(tensor):
            whole = tensor.full_tensor()
            if keep:
                out[key] = whole.cpu()
            del whole
        elif keep:
            out[key] = tensor
    return out


def shard_like(full: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``full`` cut like the sharded ``target`` (this process's shard, no communication); a full
    tensor for an unsharded ``target`` comes back as it is."""
    if not is_sharded(target):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(target.device_mesh.device_type), target.device_mesh, target.placements,
                             src_data_rank=None)


def shard_state(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A full ``state_dict`` for ``module`` with each tensor cut like the module's own (sharded) one."""
    own = module.state_dict()
    return {key: shard_like(value, own[key]) if key in own else value for key, value in state.items()}
