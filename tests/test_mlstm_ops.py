"""The three mLSTM forms (parallel, chunkwise, recurrent/step) compute the same function.

float64, random inputs with fixed seeds: outputs, last states and gradients agree within 1e-6,
with and without an initial state, for lengths that are and are not multiples of the chunk size.
"""

from __future__ import annotations

import pytest
import torch

from blalm.errors import ConfigError
from blalm.model.ops.mlstm import (
    available_mlstm_kernels,
    get_mlstm_kernel,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
    mlstm_step,
    register_mlstm_kernel,
)

TOL = 1e-6
B, H = 2, 3


def make_inputs(
    seq_len: int,
    dk: int,
    dv: int,
    *,
    seed: int,
    dtype: torch.dtype = torch.float64,
    i_range: tuple[float, float] | None = None,
    f_range: tuple[float, float] | None = None,
) -> list[torch.Tensor]:
    """q, k, v and gate pre-activations; gates normal-ish by default or uniform in the given ranges."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(B, H, seq_len, generator=gen, dtype=torch.float64)

    q, k = randn(B, H, seq_len, dk), randn(B, H, seq_len, dk)
    v = randn(B, H, seq_len, dv)
    i_pre = uniform(*i_range) if i_range else 2.0 * randn(B, H, seq_len) - 1.0
    f_pre = uniform(*f_range) if f_range else 1.5 * randn(B, H, seq_len) + 2.0
    return [x.to(dtype) for x in (q, k, v, i_pre, f_pre)]


def make_state(dk: int, dv: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(B, H, dk, dv, generator=gen, dtype=torch.float64)
    n = torch.randn(B, H, dk, generator=gen, dtype=torch.float64)
    m = 2.0 * torch.randn(B, H, generator=gen, dtype=torch.float64)
    return c, n, m


def run_form(form: str, inputs, state=None, chunk_size: int = 32):
    """(h, last_state) of one form."""
    kwargs = {"initial_state": state, "return_last_state": True}
    if form == "chunkwise":
        return mlstm_chunkwise(*inputs, chunk_size=chunk_size, **kwargs)
    return get_mlstm_kernel(form)(*inputs, **kwargs)


def outputs_and_grads(form: str, inputs, state=None, chunk_size: int = 32):
    """h, last state, and the gradients of a fixed random functional of both w.r.t. all inputs."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    state_leaves = None if state is None else tuple(x.detach().clone().requires_grad_() for x in state)
    h, last = run_form(form, leaves, state_leaves, chunk_size)
    gen = torch.Generator().manual_seed(1234)
    loss = (h * torch.randn(h.shape, generator=gen, dtype=h.dtype)).sum()
    c, n, m = last
    loss = loss + (c * torch.randn(c.shape, generator=gen, dtype=c.dtype)).sum()
    loss = loss + (n * torch.randn(n.shape, generator=gen, dtype=n.dtype)).sum() + m.sum()
    targets = leaves + (list(state_leaves) if state_leaves else [])
    grads = torch.autograd.grad(loss, targets, allow_unused=True, materialize_grads=True)
    return h.detach(), tuple(x.detach() for x in last), grads


def assert_close(actual, expected, tol=TOL, what=""):
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    err = (actual - expected).abs().max().item()
    assert err <= tol, f"{what}: max abs difference {err:.3g} > {tol:g}"


CASES = [  # (S, chunk_size, Dk, Dv)
    (1, 32, 8, 8),
    (7, 32, 16, 8),
    (64, 32, 8, 8),
    (64, 64, 16, 16),
    (100, 32, 16, 8),
    (130, 64, 8, 8),
    (130, 32, 16, 8),
]


@pytest.mark.parametrize(("seq_len", "chunk_size", "dk", "dv"), CASES)
@pytest.mark.parametrize("with_state", [False, True], ids=["empty", "state"])
def test_forms_agree_on_outputs_states_and_gradients(seq_len, chunk_size, dk, dv, with_state):
    inputs = make_inputs(seq_len, dk, dv, seed=seq_len + dk)
    state = make_state(dk, dv, seed=7) if with_state else None
    ref_h, ref_last, ref_grads = outputs_and_grads("parallel", inputs, state)
    assert ref_h.shape == (B, H, seq_len, dv)
    assert ref_h.abs().max() > 0.1  # not a degenerate all-zero output
    for form in ("chunkwise", "recurrent"):
        h, last, grads = outputs_and_grads(form, inputs, state, chunk_size)
        assert_close(h, ref_h, what=f"{form} h")
        for name, a, b in zip("Cnm", last, ref_last, strict=True):
            assert_close(a, b, what=f"{form} last {name}")
        names = ["q", "k", "v", "i_pre", "f_pre", "C0", "n0", "m0"][: len(ref_grads)]
        for name, a, b in zip(names, grads, ref_grads, strict=True):
            assert_close(a, b, what=f"{form} grad {name}")


def test_both_branches_of_the_normaliser_are_exercised():
    """The max(|n·q|, exp(-m)) lower bound is active for some tokens and not for others."""
    q, k, v, i_pre, f_pre = make_inputs(100, 16, 8, seed=116)
    log_f = torch.nn.functional.logsigmoid(f_pre)
    m = torch.full((B, H), float("-inf"), dtype=torch.float64)
    lower_bound_active = []
    state = None
    for t in range(100):
        _, state = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i_pre[:, :, t], f_pre[:, :, t], state)
        c, n, m_t = state
        m = torch.maximum(log_f[:, :, t] + m, i_pre[:, :, t])
        assert torch.equal(m, m_t)  # the stabiliser is the guide's m_t = max(log f_t + m_{t-1}, ĩ_t)
        normaliser = (q[:, :, t] * 16**-0.5 * n).sum(-1).abs()
        lower_bound_active.append(normaliser < torch.exp(-m_t))
    active = torch.stack(lower_bound_active)
    assert active.any() and not active.all()


def test_empty_state_equals_zero_state_with_minus_inf_stabiliser():
    inputs = make_inputs(40, 8, 8, seed=3)
    empty = (
        torch.zeros(B, H, 8, 8, dtype=torch.float64),
        torch.zeros(B, H, 8, dtype=torch.float64),
        torch.full((B, H), float("-inf"), dtype=torch.float64),
    )
    ref = mlstm_parallel(*inputs)
    for form in ("parallel", "chunkwise", "recurrent"):
        h, last = run_form(form, inputs, empty, chunk_size=16)
        assert_close(h, ref, what=form)
        assert all(torch.isfinite(x).all() for x in last)


@pytest.mark.parametrize("form", ["parallel", "chunkwise", "recurrent"])
@pytest.mark.parametrize("split", [1, 37, 64])
def test_continuing_from_a_last_state_equals_the_whole(form, split):
    inputs = make_inputs(100, 16, 8, seed=11)
    whole_h, whole_last = run_form(form, inputs, chunk_size=32)
    first = [x[:, :, :split] for x in inputs]
    second = [x[:, :, split:] for x in inputs]
    h1, state = run_form(form, first, chunk_size=32)
    h2, last = run_form(form, second, state, chunk_size=32)
    assert_close(torch.cat([h1, h2], dim=2), whole_h, what=f"{form} continued h")
    for name, a, b in zip("Cnm", last, whole_last, strict=True):
        assert_close(a, b, what=f"{form} continued {name}")


def test_decoding_step_by_step_after_a_chunkwise_prefill():
    q, k, v, i_pre, f_pre = make_inputs(90, 16, 8, seed=5)
    whole = mlstm_parallel(q, k, v, i_pre, f_pre)
    prefill = 70
    h, state = mlstm_chunkwise(
        q[:, :, :prefill], k[:, :, :prefill], v[:, :, :prefill], i_pre[:, :, :prefill],
        f_pre[:, :, :prefill], return_last_state=True, chunk_size=32,
    )  # fmt: skip
    assert_close(h, whole[:, :, :prefill], what="prefill")
    for t in range(prefill, 90):
        h_t, state = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i_pre[:, :, t], f_pre[:, :, t], state)
        assert h_t.shape == (B, H, 8)
        assert_close(h_t, whole[:, :, t], what=f"step {t}")


def test_step_from_no_state_is_the_first_token():
    q, k, v, i_pre, f_pre = make_inputs(1, 8, 8, seed=2)
    h, (c, n, m) = mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i_pre[:, :, 0], f_pre[:, :, 0], None)
    assert_close(h, mlstm_parallel(q, k, v, i_pre, f_pre)[:, :, 0], what="first token")
    assert torch.equal(m, i_pre[:, :, 0])  # m_1 = ĩ_1
    assert c.shape == (B, H, 8, 8) and n.shape == (B, H, 8)


@pytest.mark.parametrize(("seq_len", "chunk_size"), [(64, 32), (130, 64)])
def test_extreme_gates_stay_finite_and_agree(seq_len, chunk_size):
    inputs = make_inputs(seq_len, 8, 8, seed=seq_len, i_range=(-30.0, 30.0), f_range=(-30.0, 30.0))
    ref_h, ref_last, ref_grads = outputs_and_grads("parallel", inputs, make_state(8, 8, seed=1))
    scale = ref_h.abs().max().item()
    for form in ("chunkwise", "recurrent"):
        h, last, grads = outputs_and_grads(form, inputs, make_state(8, 8, seed=1), chunk_size)
        assert_close(h, ref_h, tol=TOL * max(1.0, scale), what=f"{form} h")
        for name, a, b in zip("Cnm", last, ref_last, strict=True):
            assert_close(a, b, tol=TOL * max(1.0, b.abs().max().item()), what=f"{form} {name}")
        for a, b in zip(grads, ref_grads, strict=True):
            assert_close(a, b, tol=TOL * max(1.0, b.abs().max().item()), what=f"{form} grad")
    # Saturated gates: input gates of ±30 and forget gates of ~0 and ~1 without any state.
    for i_value in (30.0, -30.0):
        for f_value in (30.0, -30.0):
            q, k, v, _, _ = inputs
            gates = (torch.full_like(inputs[3], i_value), torch.full_like(inputs[4], f_value))
            forms = ("parallel", "chunkwise", "recurrent")
            hs = [run_form(form, (q, k, v, *gates), chunk_size=chunk_size)[0] for form in forms]
            tol = TOL * max(1.0, hs[0].abs().max().item())
            for h in hs[1:]:
                assert_close(h, hs[0], tol=tol, what=f"i={i_value} f={f_value}")


@pytest.mark.parametrize("form", ["parallel", "chunkwise", "recurrent"])
def test_float32_inputs_give_float32_outputs_close_to_float64(form):
    inputs64 = make_inputs(100, 16, 8, seed=21)
    state64 = make_state(16, 8, seed=4)
    ref_h, ref_last = run_form("parallel", inputs64, state64)
    inputs32 = [x.float() for x in inputs64]
    state32 = tuple(x.float() for x in state64)
    h, last = run_form(form, inputs32, state32, chunk_size=32)
    assert h.dtype == torch.float32 and all(x.dtype == torch.float32 for x in last)
    assert_close(h.double(), ref_h, tol=1e-4, what=f"{form} float32 h")
    for name, a, b in zip("Cnm", last, ref_last, strict=True):
        assert_close(a.double(), b, tol=1e-4, what=f"{form} float32 {name}")


def test_bfloat16_inputs_compute_in_float32_and_return_bfloat16():
    inputs = [x.bfloat16() for x in make_inputs(20, 8, 8, seed=8)]
    h, (c, n, m) = mlstm_chunkwise(*inputs, return_last_state=True, chunk_size=8)
    assert h.dtype == torch.bfloat16
    assert c.dtype == n.dtype == m.dtype == torch.float32
    ref = mlstm_parallel(*[x.double() for x in inputs])
    assert (h.double() - ref).abs().max() < 0.05


def test_scale_multiplies_q_dot_k():
    q, k, v, i_pre, f_pre = make_inputs(30, 8, 8, seed=9)
    scaled = mlstm_chunkwise(q, k, v, i_pre, f_pre, scale=0.7, chunk_size=8)
    assert_close(scaled, mlstm_parallel(q * 0.7 * 8**0.5, k, v, i_pre, f_pre), what="scale")
    assert_close(mlstm_recurrent(q, k, v, i_pre, f_pre, scale=0.7), scaled, what="recurrent scale")


@pytest.mark.parametrize("form", ["parallel", "chunkwise", "recurrent"])
def test_gradcheck_tiny(form):
    inputs = [x.requires_grad_() for x in make_inputs(5, 3, 2, seed=31)]
    state = tuple(x.requires_grad_() for x in make_state(3, 2, seed=2))

    def fn(q, k, v, i_pre, f_pre, c, n, m):
        h, last = run_form(form, (q, k, v, i_pre, f_pre), (c, n, m), chunk_size=2)
        return h, *last

    assert torch.autograd.gradcheck(fn, (*inputs, *state), eps=1e-6, atol=1e-6)


def test_registry_lists_the_three_forms_and_refuses_unknown_names():
    assert available_mlstm_kernels()[:3] == ["parallel", "chunkwise", "recurrent"]
    assert get_mlstm_kernel("chunkwise") is mlstm_chunkwise
    with pytest.raises(ConfigError) as excinfo:
        get_mlstm_kernel("triton_flash")
    message = str(excinfo.value)
    assert "triton_flash" in message
    assert all(name in message for name in ("parallel", "chunkwise", "recurrent"))


def test_registering_a_backend():
    def doubled(*args, **kwargs):
        return 2 * mlstm_parallel(*args, **kwargs)

    register_mlstm_kernel("test_doubled", doubled)
    register_mlstm_kernel("test_doubled", doubled)  # the same function again is a no-op
    assert "test_doubled" in available_mlstm_kernels()
    inputs = make_inputs(9, 8, 8, seed=1)
    assert_close(get_mlstm_kernel("test_doubled")(*inputs), 2 * mlstm_parallel(*inputs))
    with pytest.raises(ValueError, match="already registered"):
        register_mlstm_kernel("parallel", doubled)
    assert get_mlstm_kernel("parallel") is mlstm_parallel


def test_bad_shapes_and_chunk_sizes_are_refused():
    q, k, v, i_pre, f_pre = make_inputs(10, 8, 8, seed=0)
    with pytest.raises(ValueError, match="i_pre"):
        mlstm_parallel(q, k, v, i_pre[..., :5], f_pre)
    with pytest.raises(ValueError, match="chunk_size"):
        mlstm_chunkwise(q, k, v, i_pre, f_pre, chunk_size=0)
    with pytest.raises(ValueError, match="state C"):
        mlstm_recurrent(q, k, v, i_pre, f_pre, initial_state=make_state(8, 4, seed=0))
