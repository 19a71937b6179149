"""The mLSTM token mixer (guide §2) in three pure-PyTorch forms behind a registry.

- :func:`mlstm_parallel` — quadratic, attention-like; the reference.
- :func:`mlstm_chunkwise` — chunked; the training path.
- :func:`mlstm_recurrent` / :func:`mlstm_step` — token by token; decoding.

All are numerically stabilised the same way (see ``parallel.py``) and agree to float64 precision,
with or without an initial state.
"""

from blalm.model.ops.mlstm.chunkwise import mlstm_chunkwise
from blalm.model.ops.mlstm.common import MLSTMState
from blalm.model.ops.mlstm.parallel import mlstm_parallel
from blalm.model.ops.mlstm.recurrent import mlstm_recurrent, mlstm_step
from blalm.model.ops.mlstm.registry import (
    AUTO_KERNEL,
    MLSTMKernel,
    available_mlstm_kernels,
    decoding_kernels,
    get_mlstm_kernel,
    known_kernel_names,
    mlstm_kernel_spec,
    register_mlstm_kernel,
    resolve_mlstm_kernel,
)
from blalm.model.ops.mlstm import backends  # noqa: E402,F401  (registers parallel_compiled, triton)

__all__ = [
    "AUTO_KERNEL",
    "MLSTMKernel",
    "MLSTMState",
    "decoding_kernels",
    "mlstm_kernel_spec",
    "known_kernel_names",
    "resolve_mlstm_kernel",
    "available_mlstm_kernels",
    "get_mlstm_kernel",
    "mlstm_chunkwise",
    "mlstm_parallel",
    "mlstm_recurrent",
    "mlstm_step",
    "register_mlstm_kernel",
]
