"""The Triton mLSTM kernel against the float64 parallel reference (runs where CUDA is; the device)."""

from __future__ import annotations

import pytest
import torch

from blalm.model.ops.mlstm import available_mlstm_kernels, get_mlstm_kernel, mlstm_parallel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or "triton" not in available_mlstm_kernels(),
                                reason="the Triton kernel needs a CUDA GPU (run on the device)")


def _inputs(b, h, s, dk, dv, gate_scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, s, dk, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, h, s, dv, generator=g, dtype=torch.float64)
    i_pre = torch.randn(b, h, s, generator=g, dtype=torch.float64) * 3 * gate_scale - 2
    f_pre = torch.randn(b, h, s, generator=g, dtype=torch.float64) * 3 * gate_scale + 2
    return [q, k, v, i_pre, f_pre]


def _rel(a, b):
    a, b = a.detach().double().cpu(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("s", [1, 7, 64, 100, 130, 512])
@pytest.mark.parametrize("dk, dv", [(16, 16), (64, 64), (128, 64)])
@pytest.mark.parametrize("gate_scale", [1.0, 10.0])
def test_triton_matches_reference_forward_and_backward(s, dk, dv, gate_scale):
    ref_in = [t.requires_grad_() for t in _inputs(2, 3, s, dk, dv, gate_scale)]
    gpu_in = [t.detach().float().cuda().requires_grad_() for t in ref_in]
    ref = mlstm_parallel(*ref_in)
    out = get_mlstm_kernel("triton")(*gpu_in)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    out.backward(grad.float().cuda())
    # float32 kernel vs float64 reference: relative to each tensor's largest value
    assert _rel(out, ref) < 1e-4
    for name, a, b in zip("qkvif", gpu_in, ref_in):
        assert _rel(a.grad, b.grad) < 2e-4, (name, _rel(a.grad, b.grad))


def test_triton_bf16_close_to_reference():
    ref_in = [t.requires_grad_() for t in _inputs(4, 16, 512, 64, 64)]
    gpu_in = [(t.detach().to(torch.bfloat16) if t.dim() == 4 else t.detach().float()).cuda().requires_grad_()
              for t in ref_in]
    ref = mlstm_parallel(*ref_in)
    out = get_mlstm_kernel("triton")(*gpu_in)
    assert out.dtype == torch.bfloat16
    grad = torch.randn_like(ref)
    ref.backward(grad)
    out.backward(grad.to(torch.bfloat16).cuda())
    assert _rel(out, ref) < 3e-2
    for name, a, b in zip("qkvif", gpu_in, ref_in):
        assert _rel(a.grad, b.grad) < 5e-2, name


def test_triton_falls_back_for_states():
    q, k, v, i_pre, f_pre = (t.float().cuda() for t in _inputs(1, 2, 40, 16, 16))
    h, state = get_mlstm_kernel("triton")(q, k, v, i_pre, f_pre, return_last_state=True)
    h_ref, state_ref = mlstm_parallel(q, k, v, i_pre, f_pre, return_last_state=True)
    assert torch.allclose(h, h_ref, atol=1e-5) and all(torch.allclose(a, b, atol=1e-4) for a, b in zip(state, state_ref))
