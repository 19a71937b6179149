"""mLSTM kernels looked up by name: the three pure-PyTorch forms, and any backend registered later
(:mod:`~blalm.model.ops.mlstm.backends` adds the GPU ones when the package is imported; they stay
out of this module because the exported Hugging Face code bundles it, see blalm.model.export).

Every kernel takes ``(q, k, v, i_pre, f_pre, *, initial_state=None, return_last_state=False,
eps=1e-6, scale=None)`` with the shapes of :func:`~blalm.model.ops.mlstm.mlstm_parallel`;
"chunkwise" also takes ``chunk_size``.
"""

from __future__ import annotations

from collections.abc import Callable

from blalm.errors import ConfigError
from blalm.model.ops.mlstm.chunkwise import mlstm_chunkwise
from blalm.model.ops.mlstm.parallel import mlstm_parallel
from blalm.model.ops.mlstm.recurrent import mlstm_recurrent

_KERNELS: dict[str, Callable] = {}


def register_mlstm_kernel(name: str, fn: Callable) -> None:
    """Make ``fn`` available as ``get_mlstm_kernel(name)``; a name taken by another function is refused."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an mLSTM kernel name must be a non-empty string; got {name!r}")
    if not callable(fn):
        raise TypeError(f"the mLSTM kernel {name!r} must be callable; got {type(fn).__name__}")
    if _KERNELS.get(name, fn) is not fn:
        raise ValueError(f"an mLSTM kernel named {name!r} is already registered ({_KERNELS[name]!r})")
    _KERNELS[name] = fn


def available_mlstm_kernels() -> list[str]:
    """The registered kernel names, in registration order."""
    return list(_KERNELS)


def get_mlstm_kernel(name: str) -> Callable:
    """The kernel registered as ``name``; an unknown name raises ConfigError listing the known ones."""
    try:
        return _KERNELS[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(n) for n in _KERNELS)
        raise ConfigError(f"unknown mLSTM kernel {name!r}: set the kernel to one of {known}") from None


register_mlstm_kernel("parallel", mlstm_parallel)
register_mlstm_kernel("chunkwise", mlstm_chunkwise)
register_mlstm_kernel("recurrent", mlstm_recurrent)
