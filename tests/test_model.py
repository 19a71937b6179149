"""The decoder family (blalm.model): every Table 6 variant and the attention baseline, on CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from blalm.errors import ConfigError, InputError
from blalm.model.cli import format_summary, load_model_config, model_summary
from blalm.model.config import ModelConfig
from blalm.model.decoder import BlalmForCausalLM, build_model, count_parameters
from blalm.model.layers import (
    CausalDepthwiseConv1d,
    CausalSelfAttention,
    HedgehogFeatureMap,
    RotaryEmbedding,
    apply_rope,
    rope_tables,
    sliding_window_attention,
)

VOCAB = 97
VARIANTS = {
    "mlstm": [],
    "short_conv": ["short_conv=true"],
    "swa_add": ["swa=add"],
    "swa_memory": ["swa=memory"],
    "swa_dynmod": ["swa=dynmod"],
    "swa_dynmod_bounded": ["swa=dynmod_bounded"],
    "hedgehog": ["hedgehog=true"],
    "hedgehog_swa": ["hedgehog=true", "swa=add"],
    "attention": ["mixer=attention"],
}


def tiny_config(repo_root, *overrides: str) -> ModelConfig:
    """tiny_blalm.toml with a small vocab, short chunks and a short window (several SWA blocks
    and mLSTM chunks in a 13-token input), mechanisms off unless asked, and i-gates open (bias 0)
    so the mLSTM path carries weight in every comparison."""
    base = ["vocab_size=97", "chunk_size=4", "swa_window=4", "swa_memory_slots=3", "short_conv=false",
            "igate_bias_init=0.0"]
    overrides = list(overrides)
    if "mixer=attention" in overrides:
        base = ["vocab_size=97"]
        return load_model_config(repo_root / "configs/model/tiny_transformer.toml", base + [o for o in overrides if o != "mixer=attention"])
    return load_model_config(repo_root / "configs/model/tiny_blalm.toml", base + overrides)


def tiny_model(repo_root, *overrides: str, dtype=torch.float64, seed: int = 0) -> BlalmForCausalLM:
    torch.manual_seed(seed)
    return build_model(tiny_config(repo_root, *overrides)).to(dtype)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_backward_reaches_every_parameter(repo_root, variant):
    model = tiny_model(repo_root, *VARIANTS[variant], dtype=torch.float32)
    ids = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(1))
    out = model(ids, labels=ids)
    assert out.logits.shape == (2, 13, VOCAB)
    assert torch.isfinite(out.loss) and abs(out.loss.item() - math.log(VOCAB)) < 1.0
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    zero_grad = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum() > 0]
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not no_grad, f"{variant}: parameters without gradient: {no_grad}"
    assert not zero_grad, f"{variant}: parameters with an all-zero gradient: {zero_grad}"
    assert not bad, f"{variant}: non-finite gradients: {bad}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_changing_token_t_changes_no_earlier_logit(repo_root, variant):
    model = tiny_model(repo_root, *VARIANTS[variant]).eval()
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, VOCAB, (1, 13), generator=gen)
    with torch.no_grad():
        base = model(ids).logits
        for t in (0, 5, 9, 12):
            changed = ids.clone()
            changed[0, t] = (ids[0, t] + 1 + torch.randint(0, VOCAB - 1, (1,), generator=gen)) % VOCAB
            logits = model(changed).logits
            torch.testing.assert_close(logits[:, :t], base[:, :t], rtol=0, atol=1e-10,
                                       msg=f"{variant}: token {t} changed earlier logits")
            assert (logits[:, t] - base[:, t]).abs().max() > 1e-6


@pytest.mark.parametrize("variant", ["mlstm", "short_conv", "swa_memory", "hedgehog_swa", "attention"])
def test_right_padding_leaves_real_positions_unchanged(repo_root, variant):
    model = tiny_model(repo_root, *VARIANTS[variant]).eval()
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(3))
    lengths = (11, 6)
    batch = ids.clone()
    batch[1, lengths[1]:] = 0                      # pad id
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    with torch.no_grad():
        padded = model(batch, attention_mask=mask, labels=batch)
        for row, n in enumerate(lengths):
            alone = model(ids[row:row + 1, :n], labels=ids[row:row + 1, :n])
            torch.testing.assert_close(padded.logits[row, :n], alone.logits[0], rtol=0, atol=1e-10)
        # other padding content does not matter either
        batch2 = batch.clone()
        batch2[1, lengths[1]:] = 5
        torch.testing.assert_close(model(batch2, attention_mask=mask).logits[1, :lengths[1]],
                                   padded.logits[1, :lengths[1]], rtol=0, atol=1e-10)
        # the loss counts real next-token predictions only
        token_losses = []
        for row, n in enumerate(lengths):
            logits = padded.logits[row, :n - 1]
            token_losses.append(F.cross_entropy(logits, ids[row, 1:n], reduction="none"))
        torch.testing.assert_close(padded.loss, torch.cat(token_losses).mean())


def test_attention_mask_must_be_right_padding(repo_root):
    model = tiny_model(repo_root)
    ids = torch.randint(0, VOCAB, (1, 6))
    with pytest.raises(InputError, match="right padding"):
        model(ids, attention_mask=torch.tensor([[0, 0, 1, 1, 1, 1]]))
    with pytest.raises(InputError, match="shape"):
        model(ids, attention_mask=torch.ones(1, 5, dtype=torch.long))
    with pytest.raises(InputError, match="only 0"):
        model(ids, attention_mask=torch.full((1, 6), 2))


def test_attention_key_padding_mask_hides_keys():
    torch.manual_seed(0)
    attn = CausalSelfAttention(32, 4, qk_norm=True, norm_eps=1e-6).double()
    x = torch.randn(1, 7, 32, dtype=torch.float64)
    rope = rope_tables(torch.arange(7), 8, 10000.0)
    key_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])   # left padding, e.g. for batched generation
    y = attn(x, rope, key_padding_mask=key_mask)
    x2 = x.clone()
    x2[0, :2] = torch.randn(2, 32, dtype=torch.float64)
    y2 = attn(x2, rope, key_padding_mask=key_mask)
    torch.testing.assert_close(y2[0, 2:], y[0, 2:])
    assert torch.isfinite(y2).all()
    torch.testing.assert_close(attn(x, rope, key_padding_mask=torch.ones(1, 7)), attn(x, rope))


def brute_force_swa(q, k, v, window, memory_k=None, memory_v=None, memory_q=None):
    """Softmax attention with a full S×S band mask (the definition)."""
    s, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    t = torch.arange(s)
    band = (t[None, :] <= t[:, None]) & (t[None, :] > t[:, None] - window)
    scores = scores.masked_fill(~band, float("-inf"))
    values = v
    if memory_k is not None:
        mem_scores = (q if memory_q is None else memory_q) @ memory_k.transpose(-1, -2) / math.sqrt(d)
        scores = torch.cat((mem_scores, scores), dim=-1)
        values = torch.cat((memory_v.expand(q.shape[0], *memory_v.shape), v), dim=-2)
    return torch.softmax(scores, dim=-1) @ values


@pytest.mark.parametrize("seq_len,window", [(23, 5), (20, 5), (7, 16), (9, 1), (3, 4)])
@pytest.mark.parametrize("memory", [False, True])
def test_sliding_window_attention_equals_band_masked_softmax(seq_len, window, memory):
    gen = torch.Generator().manual_seed(seq_len * 31 + window)
    b, h, d, m = 2, 3, 8, 4
    q, k, v, mq = (torch.randn(b, h, seq_len, d, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(4))
    mem = {}
    if memory:
        mem = {"memory_k": torch.randn(h, m, d, dtype=torch.float64, generator=gen, requires_grad=True),
               "memory_v": torch.randn(h, m, d, dtype=torch.float64, generator=gen, requires_grad=True),
               "memory_q": mq}
    out = sliding_window_attention(q, k, v, window, **mem)
    ref = brute_force_swa(q, k, v, window, **mem)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    inputs = [q, k, v] + ([mem["memory_k"], mem["memory_v"], mq] if memory else [])
    grads = torch.autograd.grad((out * ref.detach().cos()).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * ref.detach().cos()).sum(), inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    if window == 1 and not memory:
        torch.testing.assert_close(out, v)


def test_sliding_window_attention_memory_is_linear_in_length():
    # An S×S score matrix at S = 200,000 would take 160 GB in float32 (40 GB as booleans): this
    # only runs because the blocks never build one.
    s, w = 200_000, 16
    q, k, v = (torch.randn(1, 1, s, 4) for _ in range(3))
    mem = torch.randn(1, 2, 4)
    out = sliding_window_attention(q, k, v, w, memory_k=mem, memory_v=mem)
    assert out.shape == (1, 1, s, 4) and torch.isfinite(out).all()
    tail = slice(s - 40, s)
    ref = brute_force_swa(q[:, :, tail], k[:, :, tail], v[:, :, tail], w, memory_k=mem, memory_v=mem)
    torch.testing.assert_close(out[:, :, s - 40 + w:], ref[:, :, w:], rtol=1e-4, atol=1e-5)


def test_hedgehog_starts_from_identity_and_doubles_the_key_width(repo_root):
    fmap = HedgehogFeatureMap(3, 8)
    torch.testing.assert_close(fmap.weight, torch.eye(8).expand(3, 8, 8))
    x = torch.randn(2, 3, 5, 8)
    phi = fmap(x)
    assert phi.shape == (2, 3, 5, 16)
    torch.testing.assert_close(phi, torch.softmax(torch.cat((x, -x), dim=-1), dim=-1))
    torch.testing.assert_close(phi.sum(-1), torch.ones(2, 3, 5))

    from blalm.model.ops.mlstm import mlstm_parallel, register_mlstm_kernel

    seen = []

    def recording_kernel(q, k, v, *args, **kwargs):
        seen.append((q.shape[-1], k.shape[-1], v.shape[-1]))
        return mlstm_parallel(q, k, v, *args, **kwargs)

    register_mlstm_kernel("test_recording", recording_kernel)
    model = tiny_model(repo_root, "hedgehog=true", "num_layers=1", "mlstm_kernel='test_recording'")
    mixer = model.layers[0].mixer
    model(torch.randint(0, VOCAB, (1, 6)))
    head_dim = model.config.head_dim
    assert seen == [(2 * head_dim, 2 * head_dim, head_dim)]
    assert {n for n, _ in mixer.named_parameters() if "hedgehog" in n} == {"hedgehog_q.weight", "hedgehog_k.weight"}


def test_dynmod_alpha_is_one_scalar_per_layer_and_bounded_uses_tanh(repo_root):
    ids = torch.randint(0, VOCAB, (1, 13), generator=torch.Generator().manual_seed(4))
    dynmod = tiny_model(repo_root, "swa=dynmod", "dynmod_init=0.0")
    alphas = {n: p for n, p in dynmod.named_parameters() if n.endswith("swa_alpha")}
    assert sorted(alphas) == [f"layers.{i}.mixer.swa_alpha" for i in range(dynmod.config.num_layers)]
    assert all(p.dim() == 0 and p.item() == 0.0 for p in alphas.values())

    def same_weights(mode: str, *extra: str) -> BlalmForCausalLM:
        other = tiny_model(repo_root, f"swa={mode}", *extra, seed=123)
        missing, unexpected = other.load_state_dict(dynmod.state_dict(), strict=False)
        assert set(missing) | set(unexpected) <= set(alphas)
        return other

    with torch.no_grad():
        # α = 0: exactly the plain mLSTM
        torch.testing.assert_close(dynmod(ids).logits, same_weights("none")(ids).logits, rtol=0, atol=0)
        # α = 1: exactly the plain SWA sum (Eq. 5)
        for p in alphas.values():
            p.fill_(1.0)
        torch.testing.assert_close(dynmod(ids).logits, same_weights("add")(ids).logits)
        # bounded: tanh(α) times the SWA branch
        bounded = same_weights("dynmod_bounded")
        for layer in bounded.layers:
            layer.mixer.swa_alpha.fill_(0.8)
        for p in alphas.values():
            p.fill_(math.tanh(0.8))
        torch.testing.assert_close(bounded(ids).logits, dynmod(ids).logits)
        assert bounded.swa_coefficients() == pytest.approx([math.tanh(0.8)] * bounded.config.num_layers)
        for p in alphas.values():
            p.fill_(0.8)
        assert (bounded(ids).logits - dynmod(ids).logits).abs().max() > 1e-6


def test_short_conv_is_causal_and_starts_as_identity(repo_root):
    conv = CausalDepthwiseConv1d(6, 4)
    x = torch.randn(2, 9, 6)
    torch.testing.assert_close(conv(x), x)
    with torch.no_grad():
        conv.weight.normal_()
    y = conv(x)
    x2 = x.clone()
    x2[:, 5] += 1.0
    y2 = conv(x2)
    torch.testing.assert_close(y2[:, :5], y[:, :5])
    assert (y2[:, 5:9] - y[:, 5:9]).abs().amin() > 0 and torch.equal(y2[:, 9:], y[:, 9:])
    # a model with ShortConv switched on equals the plain model at initialisation
    ids = torch.randint(0, VOCAB, (1, 10))
    conv_model = tiny_model(repo_root, "short_conv=true")
    plain = tiny_model(repo_root, seed=7)
    plain.load_state_dict({k: v for k, v in conv_model.state_dict().items() if ".conv_" not in k})
    with torch.no_grad():
        torch.testing.assert_close(conv_model(ids).logits, plain(ids).logits)


def test_short_conv_matches_conv1d_in_values_and_gradients():
    """The shifted-sum ShortConv is held to torch's depthwise conv1d (the reference), float64."""
    torch.manual_seed(0)
    conv = CausalDepthwiseConv1d(5, 4).double()
    with torch.no_grad():
        conv.weight.normal_()
    x = torch.randn(3, 11, 5, dtype=torch.float64, requires_grad=True)
    ref_w = conv.weight.detach().clone().requires_grad_(True)
    ref = F.conv1d(F.pad(x.transpose(1, 2), (3, 0)), ref_w, groups=5).transpose(1, 2)
    y = conv(x)
    torch.testing.assert_close(y, ref)
    grad = torch.randn_like(y)
    dx, dw = torch.autograd.grad(y, (x, conv.weight), grad)
    ref_dx, ref_dw = torch.autograd.grad(ref, (x, ref_w), grad)
    torch.testing.assert_close(dx, ref_dx)
    torch.testing.assert_close(dw, ref_dw)
    # and the decoding path (inputs after a past) gives the same outputs as the whole sequence
    head, past = conv.forward_with_past(x[:, :6], None)
    tail, _ = conv.forward_with_past(x[:, 6:], past)
    torch.testing.assert_close(torch.cat((head, tail), dim=1), y)


def test_mlstm_kernels_give_the_same_model(repo_root):
    ids = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(5))
    outputs = {}
    for kernel in ("parallel", "chunkwise", "recurrent"):
        model = tiny_model(repo_root, f"mlstm_kernel={kernel}", "swa=memory", "short_conv=true")
        with torch.no_grad():
            outputs[kernel] = model(ids).logits
    torch.testing.assert_close(outputs["chunkwise"], outputs["parallel"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(outputs["recurrent"], outputs["parallel"], rtol=1e-9, atol=1e-9)


def test_inputs_longer_than_the_rope_table_work(repo_root):
    rotary = RotaryEmbedding(8, 10000.0, max_positions=8)
    cos, sin = rotary(6, offset=5)
    want_cos, want_sin = rope_tables(torch.arange(5, 11), 8, 10000.0)
    torch.testing.assert_close(cos, want_cos)
    torch.testing.assert_close(sin, want_sin)
    # RoPE scores depend on relative position only
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)

    def score(m, n):
        at = lambda x, p: apply_rope(x, rope_tables(torch.tensor([p]), 8, 10000.0))  # noqa: E731
        return (at(q, m) * at(k, n)).sum()

    torch.testing.assert_close(score(7, 3), score(1004, 1000), rtol=1e-5, atol=1e-5)  # float32 tables
    model = tiny_model(repo_root, "mixer=attention", "max_position_embeddings=8")
    ids = torch.randint(0, VOCAB, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits[:, :8], model(ids[:, :8]).logits)


def test_paper_configs_match_the_paper_parameter_counts(repo_root, capsys):
    from blalm import cli

    for name, paper in (("transformer_250m", 250e6), ("blalm_270m", 270e6)):
        path = str(repo_root / "configs/model" / f"{name}.toml")
        if "blalm.model.cli" in cli.STAGE_CLIS:
            assert cli.main(["model", "summary", path, "--json"]) == 0
            summary = json.loads(capsys.readouterr().out)
        else:
            summary = model_summary(load_model_config(path))
        assert abs(summary["parameters"] - paper) / paper < 0.03, (name, summary["parameters"])
        assert summary["head_dim"] == 64 and summary["hidden_size"] == 1024
    assert summary["mixer"] == "mlstm" and summary["mechanisms"] == ["short_conv(k=4)"]
    assert summary["layers"] == 24 and not summary["tie_embeddings"]
    text = format_summary(summary)
    assert "mlstm" in text and "short_conv" in text and "270,952,192" in text


def test_count_parameters_splits_off_embeddings(repo_root):
    tied = tiny_model(repo_root, "mixer=attention")
    counts = count_parameters(tied)
    assert counts["total"] == sum(p.numel() for p in tied.parameters())
    assert counts["embedding"] == VOCAB * 64 and counts["non_embedding"] == counts["total"] - VOCAB * 64
    untied = count_parameters(tiny_model(repo_root))
    assert untied["embedding"] == 2 * VOCAB * 64


@pytest.mark.parametrize("overrides,needle", [
    (["swa=windowed"], "allowed values: 'none', 'add', 'memory', 'dynmod', 'dynmod_bounded'"),
    (["mixer=rnn"], "allowed values: 'attention', 'mlstm'"),
    (["mixer=attention", "short_conv=true", "swa=add"], "short_conv, swa = 'add' are set"),
    (["mixer=attention", "short_conv=false", "hedgehog=true"], "but hedgehog is set"),
    (["num_heads=3"], "must be divisible by num_heads"),
    (["qk_norm=true"], "qk_norm = true applies to mixer = 'attention' only"),
    (["swa=memory", "swa_memory_slots=0"], "swa_memory_slots >= 1"),
    (["hedgehg=true"], "unknown key 'hedgehg'"),
])
def test_bad_model_configs_are_refused(repo_root, overrides, needle):
    with pytest.raises(ConfigError) as info:
        load_model_config(repo_root / "configs/model/tiny_blalm.toml", overrides)
    assert needle in str(info.value)


def test_unknown_kernel_is_refused_when_the_model_is_built(repo_root):
    cfg = tiny_config(repo_root, "mlstm_kernel=flash")
    with pytest.raises(ConfigError, match="mlstm_kernel = 'flash'.*'chunkwise'"):
        build_model(cfg)
