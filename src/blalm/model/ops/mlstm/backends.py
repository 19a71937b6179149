"""Optional fast mLSTM kernels, registered beside the three pure-PyTorch forms when
``blalm.model.ops.mlstm`` is imported:

- ``parallel_compiled``: the parallel form under ``torch.compile`` (:mod:`.compiled`);
- ``triton``: the tiled GPU kernel (:mod:`.triton_parallel`), when triton is installed.

They live apart from :mod:`.registry` because ``blalm export`` bundles the registry into the
self-contained Hugging Face modelling code, which carries the pure-PyTorch forms only.
"""

from __future__ import annotations

from blalm.model.ops.mlstm.compiled import mlstm_parallel_compiled
from blalm.model.ops.mlstm.registry import register_mlstm_kernel

register_mlstm_kernel("parallel_compiled", mlstm_parallel_compiled)  # torch.compile of the reference

# the tiled GPU kernel: training only (no states: decoding uses the chunkwise and step forms),
# CUDA tensors, head sizes powers of two >= 16, float32/bf16/fp16; "auto"'s choice where it fits
TRITON_CAPABILITIES = dict(prefill=False, devices=("cuda",), min_head_dim=16, head_dim_power_of_two=True,
                           float64=False, auto_priority=20)
try:  # the GPU kernel needs triton (CUDA builds of torch ship it; the CPU build does not)
    from blalm.model.ops.mlstm.triton_parallel import mlstm_parallel_triton
except ImportError:
    register_mlstm_kernel("triton", None, missing="the triton package is not installed (CUDA builds of torch "
                                                  "ship it; it needs a CUDA GPU)", **TRITON_CAPABILITIES)
else:
    register_mlstm_kernel("triton", mlstm_parallel_triton, **TRITON_CAPABILITIES)
