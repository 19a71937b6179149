"""mLSTM kernels looked up by name, each with a declaration of what it can do.

The three pure-PyTorch forms are registered here; :mod:`~blalm.model.ops.mlstm.backends` adds the
GPU ones when the package is imported (they stay out of this module because the exported Hugging
Face code bundles it, see blalm.model.export).

Every kernel takes ``(q, k, v, i_pre, f_pre, *, initial_state=None, return_last_state=False,
eps=1e-6, scale=None)`` with the shapes of :func:`~blalm.model.ops.mlstm.mlstm_parallel` (a kernel
that declares ``prefill=False`` refuses the two state arguments); one that declares
``chunk_size=True`` also takes ``chunk_size`` (any positive integer). Its :class:`MLSTMKernel`
says where it runs (device types, head sizes, float64 or not), whether it has a backward
(``training``), whether it can start from and return a recurrent state (``prefill``: filling a
decoding cache), and its one-token form, if any (``step``). The model asks
:func:`resolve_mlstm_kernel` for the kernel of a device and shape: a named kernel that cannot run
there is an error naming why, never a silent substitute; ``"auto"`` picks the capable kernel with
the highest ``auto_priority``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from blalm.errors import ConfigError
from blalm.model.ops.mlstm.chunkwise import mlstm_chunkwise
from blalm.model.ops.mlstm.parallel import mlstm_parallel
from blalm.model.ops.mlstm.recurrent import mlstm_recurrent, mlstm_step

AUTO_KERNEL = "auto"


@dataclass(frozen=True)
class MLSTMKernel:
    """One registered kernel and what it can do."""

    name: str
    fn: Callable | None                   # None: registered but not usable here (see ``missing``)
    training: bool = True                 # differentiable: autograd through it, or its own backward
    prefill: bool = True                  # takes initial_state / return_last_state
    step: Callable | None = None          # its one-token decoding form (mlstm_step's signature), if any
    chunk_size: bool = False              # takes chunk_size (any positive integer)
    devices: tuple[str, ...] = ("cpu", "cuda")   # torch device types it runs on
    min_head_dim: int = 1                 # q/k and v head sizes it takes ...
    head_dim_power_of_two: bool = False   # ... and whether they must be powers of two
    float64: bool = True                  # runs float64 inputs
    auto_priority: int = 0                # "auto" picks the capable kernel with the highest (0 = never)
    missing: str = ""                     # why it cannot run on this machine at all ("" = it can)

    def unfit(self, device_type: str, head_dim_qk: int, head_dim_v: int, float64: bool = False) -> str:
        """Why this kernel cannot run on ``device_type`` with these head sizes ("" when it can)."""
        if self.missing:
            return self.missing
        if device_type not in self.devices:
            return f"it runs on {' or '.join(self.devices)} tensors, not {device_type}"
        for what, dim in (("q/k", head_dim_qk), ("v", head_dim_v)):
            if dim < self.min_head_dim or (self.head_dim_power_of_two and dim & (dim - 1)):
                rule = "a power of two" if self.head_dim_power_of_two else "an integer"
                return f"its {what} head size must be {rule} >= {self.min_head_dim}, not {dim}"
        if float64 and not self.float64:
            return "it does not run float64 inputs"
        return ""

    def unfit_here(self, head_dim_qk: int, head_dim_v: int) -> str:
        """Why this kernel cannot run on any device of this machine ("" when it can on one)."""
        reasons = [self.unfit(d, head_dim_qk, head_dim_v) for d in self.devices if device_available(d)]
        if not reasons:
            return self.missing or f"it needs a {' or '.join(d.upper() for d in self.devices)} device, none is visible"
        return "" if "" in reasons else reasons[0]


_KERNELS: dict[str, MLSTMKernel] = {}


def device_available(device_type: str) -> bool:
    return device_type == "cpu" or (device_type == "cuda" and torch.cuda.is_available())


def register_mlstm_kernel(name: str, fn: Callable | None, **capabilities) -> MLSTMKernel:
    """Make ``fn`` available as ``get_mlstm_kernel(name)``, with the capabilities of
    :class:`MLSTMKernel` (keyword arguments); a name taken by another function is refused."""
    if not isinstance(name, str) or not name or name == AUTO_KERNEL:
        raise ValueError(f"an mLSTM kernel name must be a non-empty string other than {AUTO_KERNEL!r}; got {name!r}")
    if fn is not None and not callable(fn):
        raise TypeError(f"the mLSTM kernel {name!r} must be callable; got {type(fn).__name__}")
    known = _KERNELS.get(name)
    if known is not None and known.fn is not None and known.fn is not fn:
        raise ValueError(f"an mLSTM kernel named {name!r} is already registered ({known.fn!r})")
    spec = MLSTMKernel(name, fn, **capabilities)
    _KERNELS[name] = spec
    return spec


def available_mlstm_kernels() -> list[str]:
    """The kernel names usable on this machine, in registration order."""
    return [name for name, spec in _KERNELS.items() if not spec.missing]


def mlstm_kernel_spec(name: str) -> MLSTMKernel:
    """The declaration of the kernel ``name``; an unknown name raises ConfigError listing the known ones."""
    try:
        return _KERNELS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown mLSTM kernel {name!r}: set model.mlstm_kernel to one of "
                          f"{known_kernel_names()}") from None


def known_kernel_names() -> str:
    """The names ``model.mlstm_kernel`` takes in this process, quoted: ``'auto', 'parallel', ...``."""
    return ", ".join(repr(n) for n in [AUTO_KERNEL, *_KERNELS])


def get_mlstm_kernel(name: str) -> Callable:
    """The function of the kernel ``name`` (ConfigError when unknown or not usable on this machine)."""
    spec = mlstm_kernel_spec(name)
    if spec.fn is None:
        raise ConfigError(f"the mLSTM kernel {name!r} cannot run here: {spec.missing}")
    return spec.fn


def resolve_mlstm_kernel(name: str, device_type: str, head_dim_qk: int, head_dim_v: int,
                         float64: bool = False) -> MLSTMKernel:
    """The kernel that runs ``name`` on ``device_type`` with these head sizes: ``name`` itself when
    it can (ConfigError saying why when it cannot), or for ``"auto"`` the capable kernel with the
    highest ``auto_priority``."""
    if name == AUTO_KERNEL:
        capable = [s for s in _KERNELS.values() if s.auto_priority > 0
                   and not s.unfit(device_type, head_dim_qk, head_dim_v, float64)]
        if not capable:   # pragma: no cover - chunkwise runs everywhere
            raise ConfigError(f"no mLSTM kernel runs on {device_type} with head sizes {head_dim_qk}/{head_dim_v}")
        return max(capable, key=lambda s: s.auto_priority)
    spec = mlstm_kernel_spec(name)
    problem = spec.unfit(device_type, head_dim_qk, head_dim_v, float64)
    if problem:
        raise ConfigError(f"mlstm_kernel = {name!r} cannot run on {device_type}"
                          f"{' float64' if float64 else ''} with head sizes {head_dim_qk}/{head_dim_v}: {problem}; "
                          f"use mlstm_kernel = 'auto' (the best kernel that can) or 'chunkwise'")
    return spec


def decoding_kernels() -> tuple[MLSTMKernel, Callable]:
    """What decoding runs, whatever the training kernel: a prompt from the cached state with
    ``chunkwise`` (it takes and returns states on every device) and each new token with the
    ``recurrent`` form's one-token step."""
    prefill, recurrent = _KERNELS["chunkwise"], _KERNELS["recurrent"]
    assert prefill.prefill and recurrent.step is not None
    return prefill, recurrent.step


register_mlstm_kernel("parallel", mlstm_parallel)                                   # the quadratic reference
register_mlstm_kernel("chunkwise", mlstm_chunkwise, chunk_size=True, auto_priority=10)  # runs everywhere
register_mlstm_kernel("recurrent", mlstm_recurrent, step=mlstm_step)                 # token by token
