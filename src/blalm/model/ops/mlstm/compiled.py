"""``parallel_compiled``: the parallel (reference) form under ``torch.compile``.

On a GPU, inductor fuses the gate arithmetic, the decay matrix and the masking around two
batched matmuls, which makes the quadratic form the fastest pure-PyTorch mLSTM at the paper's
short context (S = 512). Numerically it is the reference itself (compiled), so it is held to the
reference by the same tests. Compilation happens on the first call.
"""

from __future__ import annotations

import functools

import torch

from blalm.model.ops.mlstm.parallel import mlstm_parallel


@functools.cache
def _compiled():
    return torch.compile(mlstm_parallel, dynamic=False, fullgraph=True)


def mlstm_parallel_compiled(q, k, v, i_pre, f_pre, **kwargs):
    return _compiled()(q, k, v, i_pre, f_pre, **kwargs)
