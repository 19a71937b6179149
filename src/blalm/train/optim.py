"""Optimizers and the learning-rate schedule (paper §5).

**The split** (``optimizer = "muon"``) is declared by the model (``model.parameter_groups()``:
each block lists its hidden matrices), not read from parameter names. ``torch.optim.Muon``
takes the 2-D weight matrices of the decoder blocks: the mixers' q/k/v, output-gate and output
projections (attention's q/k/v/o) and the SwiGLU FFN's gate/up/down projections. AdamW takes
everything else: the token
embedding and the LM head (matrices, but not hidden-layer ones: Muon is for hidden layers),
RMSNorm weights, biases, the mLSTM's input and forget gates (one scalar per head: their
``(heads, hidden)`` weights are read as gates, not as hidden projections), the short
convolutions' kernels, the Hedgehog maps, the SWA memory slots and the DynMod α. With
``optimizer = "adamw"`` AdamW takes everything.

**Learning rates.** Muon runs with ``adjust_lr_fn = "match_rms_adamw"`` by default (Moonshot's
scaling, ``0.2·sqrt(max(A, B))``), which makes its updates as large (RMS) as AdamW's, so the
paper's single learning rate (7e-4 strict-small, 5.5e-4 strict) serves both optimizers;
``muon_lr`` sets Muon's apart. Both follow the same schedule: linear warm-up over
``warmup_fraction`` of the steps, then cosine decay to ``min_lr_fraction`` of the peak
(``blalm.run.schedule``, shared with fine-tuning).

**Batched Muon.** ``BatchedMuon`` is ``torch.optim.Muon`` (same hyper-parameters, same state,
same update) with the Newton–Schulz orthogonalisation run once per group of same-shaped
matrices as a batched matmul instead of once per matrix: a BLaLM block has only three shapes, so
192 sequential small iterations become 3 batched ones (on the H100, ``Muon.step`` took 31% of an
eager BLaLM 270M step). ``tests/test_train_muon.py`` holds it to ``torch.optim.Muon``. Under DDP
the ranks split each group's orthogonalisation between them and all-gather the results
(``tests/test_train_ddp.py`` holds the 2-process run to one process). Under FSDP
(``parallelism = "fsdp"``) each process holds some rows of every matrix: the momentum and the
update are computed on those rows, the stack of each shape group is all-gathered whole (one
collective), orthogonalised as under DDP, and each process keeps its rows of the result; so Muon
under FSDP computes what it computes in one process (``tests/test_train_fsdp.py``).

**Weight decay** (decoupled) applies to 2-D weights only (Muon's matrices, embeddings, LM head,
gate weights), never to norms, biases, α, conv kernels, Hedgehog maps or memory slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from blalm.errors import BlalmError
from blalm.run.parallel import is_sharded
from blalm.train.config import TrainConfig



def newton_schulz_batched(updates: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                          eps: float) -> torch.Tensor:
    """Muon's quintic Newton–Schulz orthogonalisation of a stack ``(n, A, B)`` of matrices, in bf16,
    each matrix scaled to unit Frobenius norm first (as ``torch.optim.Muon`` does for one matrix)."""
    a, b, c = coefficients
    x = updates.bfloat16()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


class BatchedMuon(torch.optim.Muon):
    """``torch.optim.Muon`` whose Newton–Schulz step runs batched over same-shaped matrices."""

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - same contract as torch.optim.Muon.step
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_shape: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault((tuple(p.shape), p.dtype, p.device), []).append(p)
            for (shape, _, _), params in by_shape.items():
                self._update(group, shape, params)
        return loss

    def _update(self, group: dict, shape: tuple, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        owner, sharded = params[0], is_sharded(params[0])
        if sharded:   # FSDP: the same update on this process's rows of every matrix
            params, grads, bufs = ([t.to_local() for t in ts] for ts in (params, grads, bufs))
        momentum = group["momentum"]
        torch._foreach_lerp_(bufs, grads, 1 - momentum)
        stacked = torch.stack(bufs)
        update = torch.stack(grads).lerp(stacked, momentum) if group["nesterov"] else stacked
        if sharded:
            ortho = _rows_of(self._orthogonalise(_whole_matrices(update, shape, owner), group), owner)
        else:
            ortho = self._orthogonalise(update, group)
        lr = float(group["lr"])
        adjusted = lr * _muon_lr_ratio(group["adjust_lr_fn"], shape)
        torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        torch._foreach_add_(params, list(ortho.to(params[0].dtype).unbind(0)), alpha=-adjusted)


    @staticmethod
    def _orthogonalise(update: torch.Tensor, group: dict) -> torch.Tensor:
        """Newton–Schulz of the stack; under DDP each rank orthogonalises its share of the matrices
        (every rank holds the same all-reduced gradients and momenta) and the ranks all-gather the
        results, so the optimizer step does not run whole on every GPU."""
        args = (group["ns_coefficients"], group["ns_steps"], group["eps"])
        dist = torch.distributed
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world == 1:
            return newton_schulz_batched(update, *args)
        count = update.shape[0]
        share = -(-count // world)
        if share * world != count:   # pad with zero matrices (they stay zero) to equal shares
            update = torch.cat((update, update.new_zeros(share * world - count, *update.shape[1:])))
        rank = dist.get_rank()
        mine = newton_schulz_batched(update[rank * share:(rank + 1) * share], *args).contiguous()
        gathered = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        return torch.cat(gathered)[:count]


def _stack_placement(param: torch.Tensor):
    """FSDP2's row sharding of a matrix, as the placement of a stack ``(n, A, B)`` of such matrices."""
    from torch.distributed.tensor import Shard

    if param.device_mesh.ndim != 1 or tuple(param.placements) != (Shard(0),):
        raise BlalmError(f"Muon under FSDP takes matrices sharded by rows over one mesh dimension (Shard(0)); "
                         f"got {param.placements} over a {param.device_mesh.ndim}-D mesh: use optimizer = 'adamw'")
    return [Shard(1)]


def _whole_matrices(local: torch.Tensor, shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """The whole matrices ``(n, A, B)`` on every process from each process's rows ``(n, a, B)`` of
    them (one all-gather for the stack): Newton-Schulz needs every matrix whole."""
    from torch.distributed.tensor import DTensor

    n = local.shape[0]
    rows, cols = shape
    return DTensor.from_local(local, like.device_mesh, _stack_placement(like), run_check=False,
                              shape=torch.Size((n, rows, cols)), stride=(rows * cols, cols, 1)).full_tensor()


def _rows_of(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This process's rows of every matrix of the stack ``whole`` (no communication)."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole, like.device_mesh, _stack_placement(like), src_data_rank=None).to_local()


def _muon_lr_ratio(adjust_lr_fn: str | None, shape: tuple) -> float:
    """``torch.optim.Muon``'s learning-rate adjustment for a matrix of ``shape``."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


@dataclass
class ParamSplit:
    """Which optimizer holds which parameter (names as in ``model.named_parameters()``)."""

    muon: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    adamw_decay: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    adamw_no_decay: list[tuple[str, nn.Parameter]] = field(default_factory=list)

    @property
    def adamw(self) -> list[tuple[str, nn.Parameter]]:
        return self.adamw_decay + self.adamw_no_decay

    def summary(self) -> dict[str, dict[str, int]]:
        def count(items):
            return {"tensors": len(items), "parameters": sum(p.numel() for _, p in items)}
        return {"muon": count(self.muon), "adamw": count(self.adamw),
                "adamw_decay": count(self.adamw_decay), "adamw_no_decay": count(self.adamw_no_decay)}

    def describe(self) -> str:
        s = self.summary()
        lines = []
        if self.muon:
            lines.append(f"  Muon : {s['muon']['tensors']:4d} tensors {s['muon']['parameters']:>14,} parameters "
                         f"(2-D matrices of the blocks: q/k/v, output gate, out projections, FFN)")
        what = ("embeddings, LM head, norms, biases, gates, conv kernels, Hedgehog maps, memory, DynMod alpha"
                if self.muon else "all parameters")
        lines.append(f"  AdamW: {s['adamw']['tensors']:4d} tensors {s['adamw']['parameters']:>14,} parameters "
                     f"({what}; weight decay on the {s['adamw_decay']['tensors']} 2-D ones)")
        return "optimizer split:\n" + "\n".join(lines)


def muon_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The matrices the model declares for Muon (``model.parameter_groups().matrices``), checked:
    2-D parameters of the model, each once, and with ``other`` every parameter exactly once."""
    declare = getattr(model, "parameter_groups", None)
    if declare is None:
        raise BlalmError(f"optimizer = 'muon' needs a model that declares its hidden matrices "
                         f"(parameter_groups()); {type(model).__name__} does not: use optimizer = 'adamw'")
    groups = declare()
    names = {id(p): n for n, p in model.named_parameters()}
    counts: dict[int, int] = {}
    for param in groups.matrices + groups.other:
        counts[id(param)] = counts.get(id(param), 0) + 1
    problems = [f"{names.get(i, '<not a parameter of the model>')} is declared {c} times"
                for i, c in counts.items() if c != 1 or i not in names]
    problems += [f"{n} is declared in no group" for i, n in names.items() if i not in counts]
    problems += [f"{names.get(id(p), '?')} is {p.ndim}-D, not a matrix" for p in groups.matrices if p.ndim != 2]
    if problems:
        raise RuntimeError(f"{type(model).__name__}.parameter_groups() is wrong: {'; '.join(problems[:5])}")
    return groups.matrices


def split_parameters(model: nn.Module, optimizer: str = "muon") -> ParamSplit:
    """Put every trainable parameter of ``model`` in exactly one group (see the module docstring),
    in ``named_parameters()`` order: Muon the model's declared matrices, AdamW the rest (weight
    decay on its 2-D ones)."""
    muon = {id(p) for p in muon_matrices(model)} if optimizer == "muon" else set()
    split = ParamSplit()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in muon:
            split.muon.append((name, param))
        elif param.ndim == 2:
            split.adamw_decay.append((name, param))
        else:
            split.adamw_no_decay.append((name, param))
    return split


def check_every_parameter_once(model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Every trainable parameter of ``model`` is in exactly one group of one optimizer, and the
    optimizers hold nothing else (RuntimeError naming what is wrong)."""
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    held: dict[int, list[str]] = {}
    for opt_name, opt in optimizers.items():
        for index, group in enumerate(opt.param_groups):
            for p in group["params"]:
                held.setdefault(id(p), []).append(f"{opt_name}[{index}]")
    problems = [f"{n} is in no optimizer group" for i, n in names.items() if i not in held]
    problems += [f"{names.get(i, 'a tensor that is not a trainable parameter')} is in {', '.join(where)}"
                 for i, where in held.items() if len(where) > 1 or i not in names]
    if problems:
        raise RuntimeError(f"the optimizer groups do not hold every parameter once: {'; '.join(problems[:5])}")


def build_optimizers(model: nn.Module, cfg: TrainConfig, fused: bool = False
                     ) -> tuple[dict[str, torch.optim.Optimizer], ParamSplit]:
    """``{"muon": Muon, "adamw": AdamW}`` (Muon only when ``cfg.optimizer == "muon"``) and the split.
    Every group records its peak learning rate as ``base_lr`` (the schedule scales it)."""
    split = split_parameters(model, cfg.optimizer)
    optimizers: dict[str, torch.optim.Optimizer] = {}
    if split.muon:
        muon_lr = cfg.muon_lr if cfg.muon_lr is not None else cfg.lr
        optimizers["muon"] = BatchedMuon(
            [{"params": [p for _, p in split.muon], "base_lr": muon_lr}],
            lr=muon_lr, weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum, nesterov=cfg.muon_nesterov,
            ns_steps=cfg.muon_ns_steps, adjust_lr_fn=cfg.muon_adjust_lr)
    groups = []
    if split.adamw_decay:
        groups.append({"params": [p for _, p in split.adamw_decay], "weight_decay": cfg.weight_decay,
                       "base_lr": cfg.lr})
    if split.adamw_no_decay:
        groups.append({"params": [p for _, p in split.adamw_no_decay], "weight_decay": 0.0, "base_lr": cfg.lr})
    extra = {"fused": True} if fused else {}
    optimizers["adamw"] = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                            eps=cfg.adam_eps, **extra)
    check_every_parameter_once(model, optimizers)
    return optimizers, split


def param_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[list[str]]:
    """The parameter names of each group of ``optimizer``, in the optimizer's order."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [[by_id[id(p)] for p in group["params"]] for group in optimizer.param_groups]
