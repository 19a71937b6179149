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

register_mlstm_kernel("parallel_compiled", mlstm_parallel_compiled)  # GPU: torch.compile of the reference

try:  # the GPU kernel needs triton (CUDA builds of torch ship it; the CPU build does not)
    from blalm.model.ops.mlstm.triton_parallel import mlstm_parallel_triton
except ImportError:
    pass
else:
    register_mlstm_kernel("triton", mlstm_parallel_triton)
