"""BatchedMuon (Newton–Schulz batched over same-shaped matrices) against torch.optim.Muon."""

from __future__ import annotations

import pytest
import torch

from blalm.train.optim import BatchedMuon


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(48, 32), (48, 32), (32, 64), (48, 32), (32, 64), (16, 16)]   # three groups, one alone
    return [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust", ["match_rms_adamw", "original"])
def test_batched_muon_matches_torch_muon(nesterov, adjust):
    ours, ref = _params(0), _params(0)
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust)
    opt, ref_opt = BatchedMuon(ours, **kw), torch.optim.Muon(ref, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        for a, b in zip(ours, ref):
            grad = torch.randn(a.shape, generator=g)
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
    for a, b in zip(ours, ref):
        # both orthogonalise in bf16; batched and single matmuls may round differently
        assert torch.allclose(a, b, rtol=0, atol=2e-3), (a - b).abs().max()
        assert torch.equal(opt.state[a]["momentum_buffer"], ref_opt.state[b]["momentum_buffer"])
    # the state dict has torch Muon's layout, so checkpoints load into either
    torch.optim.Muon(_params(0), **kw).load_state_dict(opt.state_dict())


def test_params_without_grad_are_left_alone():
    params = _params(0)
    before = [p.detach().clone() for p in params]
    opt = BatchedMuon(params, lr=0.02)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    assert not torch.equal(params[0], before[0])
    assert all(torch.equal(p, b) for p, b in zip(params[1:], before[1:]))
