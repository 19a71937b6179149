"""The mLSTM kernel registry declares what each kernel can do, and the model asks it: a named
kernel that cannot run a model here is an error when the model is built (or, for a device or
dtype it does not take, when it is called), never a silent other kernel; ``auto`` picks the best
capable one (chunkwise on the CPU, so results stay bit-identical)."""

from __future__ import annotations

import json

import pytest
import torch

from blalm.errors import ConfigError
from blalm.model.checkpoint import CONFIG_FILE, load_model, save_model
from blalm.model.cli import load_model_config
from blalm.model.decoder import build_model
from blalm.model.ops.mlstm import (
    available_mlstm_kernels,
    decoding_kernels,
    mlstm_kernel_spec,
    mlstm_parallel,
    register_mlstm_kernel,
    resolve_mlstm_kernel,
)

VOCAB = 97


def tiny(repo_root, *overrides: str):
    torch.manual_seed(0)
    cfg = load_model_config(repo_root / "configs/model/tiny_blalm.toml",
                            [f"vocab_size={VOCAB}", "chunk_size=4", "igate_bias_init=0.0", *overrides])
    return build_model(cfg)


def inputs(dk: int = 8, dv: int = 8, seq: int = 11, dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 3, seq, dk, generator=gen, dtype=dtype) for _ in range(2))
    v = torch.randn(2, 3, seq, dv, generator=gen, dtype=dtype)
    i_pre, f_pre = (3 * torch.randn(2, 3, seq, generator=gen, dtype=dtype) for _ in range(2))
    return q, k, v, i_pre, f_pre


# parallel_compiled is the reference under torch.compile: its declarations are the reference's, and
# compiling on the CPU costs a minute, so the eager kernels stand for it here
EAGER_CPU_KERNELS = [n for n in available_mlstm_kernels()
                     if "cpu" in mlstm_kernel_spec(n).devices and n != "parallel_compiled"]


@pytest.mark.parametrize("name", EAGER_CPU_KERNELS)
def test_every_kernel_does_what_it_declares(name):
    spec = mlstm_kernel_spec(name)
    x = [t.requires_grad_() for t in inputs()]
    ref = mlstm_parallel(*x)
    options = {"chunk_size": 4} if spec.chunk_size else {}
    out = spec.fn(*x, **options)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    if spec.training:                                     # a backward that matches the reference's
        grads = torch.autograd.grad(out.square().sum(), x)
        for got, want in zip(grads, torch.autograd.grad(ref.square().sum(), x)):
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)
    if spec.prefill:                                      # continues from a state and returns its own
        head = [t[:, :, :6].detach() for t in x]
        tail = [t[:, :, 6:].detach() for t in x]
        _, state = spec.fn(*head, return_last_state=True, **options)
        torch.testing.assert_close(spec.fn(*tail, initial_state=state, **options), ref[:, :, 6:].detach(),
                                   rtol=1e-9, atol=1e-9)
    if spec.step is not None:                             # its one-token form
        _, state = mlstm_parallel(*[t[:, :, :10].detach() for t in x], return_last_state=True)
        h, _ = spec.step(*[t[:, :, 10].detach() for t in x], state)
        torch.testing.assert_close(h, ref[:, :, 10].detach(), rtol=1e-9, atol=1e-9)


def test_the_registry_knows_triton_and_the_decoding_kernels():
    triton = mlstm_kernel_spec("triton")                  # known whether or not it can run here
    assert (triton.devices, triton.prefill, triton.float64, triton.min_head_dim) == (("cuda",), False, False, 16)
    assert triton.head_dim_power_of_two and triton.auto_priority > mlstm_kernel_spec("chunkwise").auto_priority
    assert ("triton" in available_mlstm_kernels()) == (not triton.missing)
    prefill, step = decoding_kernels()
    assert prefill.name == "chunkwise" and prefill.prefill and step is mlstm_kernel_spec("recurrent").step
    with pytest.raises(ConfigError, match="unknown mLSTM kernel 'flash'.*'auto'"):
        mlstm_kernel_spec("flash")
    with pytest.raises(ValueError, match="other than 'auto'"):
        register_mlstm_kernel("auto", mlstm_parallel)


def test_auto_picks_the_best_capable_kernel():
    for device in ("cpu", "cuda"):
        for dims in ((64, 64), (24, 24), (128, 64)):
            assert resolve_mlstm_kernel("auto", device, *dims, float64=True).name == "chunkwise"
    gpu = "triton" if "triton" in available_mlstm_kernels() else "chunkwise"
    assert resolve_mlstm_kernel("auto", "cuda", 64, 64).name == gpu
    assert resolve_mlstm_kernel("auto", "cuda", 24, 24).name == "chunkwise"     # not a power of two
    assert resolve_mlstm_kernel("auto", "cpu", 64, 64).name == "chunkwise"
    with pytest.raises(ConfigError, match="mlstm_kernel = 'triton' cannot run on cpu"):
        resolve_mlstm_kernel("triton", "cpu", 64, 64)


def test_auto_is_the_default_and_the_cpu_runs_chunkwise_bit_identically(repo_root):
    assert load_model_config(repo_root / "configs/model/tiny_blalm.toml").mlstm_kernel == "auto"
    ids = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(1))
    auto, chunkwise = tiny(repo_root, "short_conv=true"), tiny(repo_root, "short_conv=true", "mlstm_kernel=chunkwise")
    assert auto.layers[0].mixer.kernel_for("cpu").name == "chunkwise"
    auto_out, chunk_out = auto(ids, labels=ids), chunkwise(ids, labels=ids)
    assert torch.equal(auto_out.logits, chunk_out.logits)
    auto_out.loss.backward()
    chunk_out.loss.backward()
    for (name, a), b in zip(auto.named_parameters(), chunkwise.parameters()):
        assert torch.equal(a.grad, b.grad), name


def test_triton_is_refused_when_the_model_is_built_where_it_cannot_run(repo_root):
    if torch.cuda.is_available() and "triton" in available_mlstm_kernels():
        pytest.skip("this machine runs the triton kernel (tests/test_mlstm_triton.py)")
    with pytest.raises(ConfigError) as info:
        tiny(repo_root, "mlstm_kernel=triton")
    message = str(info.value)
    assert message.startswith("mlstm_kernel = 'triton' cannot run this model here: ")
    assert ("CUDA" in message or "triton package" in message) and "'auto'" in message


def test_shape_device_and_dtype_limits_are_errors_not_fallbacks(repo_root):
    calls = []

    def pow2_kernel(q, k, v, i_pre, f_pre, **kwargs):
        calls.append(q.shape[-1])
        return mlstm_parallel(q, k, v, i_pre, f_pre, **kwargs)

    register_mlstm_kernel("test_pow2", pow2_kernel, min_head_dim=16, head_dim_power_of_two=True, float64=False)
    register_mlstm_kernel("test_cuda_only", mlstm_parallel, devices=("cuda",))
    ids = torch.randint(0, VOCAB, (1, 9))
    model = tiny(repo_root, "mlstm_kernel=test_pow2")                        # head size 64 / 4 = 16
    model(ids)
    assert calls == [16, 16]                                               # both layers ran it
    with pytest.raises(ConfigError, match="test_pow2.*head size must be a power of two >= 16, not 12"):
        tiny(repo_root, "mlstm_kernel=test_pow2", "hidden_size=48")         # 48 / 4 = 12
    with pytest.raises(ConfigError, match="test_pow2.*does not run float64"):
        model.double()(ids)                                                # at the call: no other kernel
    assert calls == [16, 16]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="test_cuda_only.*needs a CUDA device, none is visible"):
            tiny(repo_root, "mlstm_kernel=test_cuda_only")


def test_a_checkpoint_of_a_gpu_kernel_loads_with_auto_where_that_kernel_cannot_run(repo_root, tmp_path):
    from blalm.finetune.head import width_multiple

    model = tiny(repo_root, "mlstm_kernel=chunkwise")
    path = save_model(model, tmp_path / "ckpt")
    config = json.loads((path / CONFIG_FILE).read_text())
    if "triton" in available_mlstm_kernels():   # a kernel registered but not installed here stands for it
        register_mlstm_kernel("test_missing_here", None, missing="its package is not installed")
    config["mlstm_kernel"] = "triton" if "triton" not in available_mlstm_kernels() else "test_missing_here"
    (path / CONFIG_FILE).write_text(json.dumps(config))
    loaded = load_model(path)
    assert loaded.config.mlstm_kernel == "auto"
    ids = torch.randint(0, VOCAB, (2, 10))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    assert width_multiple(loaded) == 4            # auto runs the chunked kernel here: widths round to chunks


def test_a_checkpoint_naming_an_unknown_kernel_is_refused_not_run_with_auto(repo_root, tmp_path):
    path = save_model(tiny(repo_root, "mlstm_kernel=chunkwise"), tmp_path / "ckpt")
    config = json.loads((path / CONFIG_FILE).read_text())
    config["mlstm_kernel"] = "chunkwse"                   # a typo, registered nowhere
    (path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ConfigError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path / CONFIG_FILE) in message and "model.mlstm_kernel = 'chunkwse'" in message
    assert "'auto'" in message and "'chunkwise'" in message


def test_a_kernel_without_backward_runs_inference_but_refuses_training(repo_root):
    register_mlstm_kernel("test_no_backward", mlstm_parallel, training=False)
    model = tiny(repo_root, "mlstm_kernel=test_no_backward")
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    with pytest.raises(ConfigError, match="'test_no_backward' has no backward.*'chunkwise'"):
        model(ids, labels=ids)
