"""Decoding with the cache (blalm.model.cache / generate): the same tokens and logits as re-running
the whole sequence, for every Table 6 variant and the attention baseline, with constant memory
per token for the mLSTM and a window-bounded SWA cache. Tiny float64 models, fixed seeds."""

from __future__ import annotations

import pytest
import torch

from blalm.errors import InputError
from blalm.model.cli import load_model_config
from blalm.model.decoder import BlalmForCausalLM, build_model
from blalm.model.generate import generate, next_token

VOCAB = 97
WINDOW = 4
VARIANTS = {
    "mlstm": [],
    "short_conv": ["short_conv=true"],
    "swa_add": ["swa=add"],
    "swa_memory": ["swa=memory"],
    "swa_dynmod": ["swa=dynmod", "dynmod_init=0.8"],          # α ≠ 0, so the SWA branch counts
    "swa_dynmod_bounded": ["swa=dynmod_bounded", "dynmod_init=0.8"],
    "hedgehog": ["hedgehog=true"],
    "hedgehog_swa": ["hedgehog=true", "swa=add"],
    "all_mechanisms": ["short_conv=true", "hedgehog=true", "swa=memory"],
    "attention": ["mixer=attention"],
}




def tiny_model(repo_root, *overrides: str, seed: int = 0) -> BlalmForCausalLM:
    """A 2-layer model with short chunks (4) and a short window (4, smaller than what is generated),
    i-gates open so that the mLSTM path carries weight."""
    torch.manual_seed(seed)
    if "mixer=attention" in overrides:
        cfg = load_model_config(repo_root / "configs/model/tiny_transformer.toml", [f"vocab_size={VOCAB}"])
    else:
        cfg = load_model_config(repo_root / "configs/model/tiny_blalm.toml",
                                [f"vocab_size={VOCAB}", "chunk_size=4", f"swa_window={WINDOW}", "swa_memory_slots=3",
                                 "short_conv=false", "igate_bias_init=0.0", *overrides])
    return build_model(cfg).to(torch.float64).eval()


def prompt(batch: int = 2, length: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cached_greedy_generation_equals_full_recompute(repo_root, variant):
    model = tiny_model(repo_root, *VARIANTS[variant])
    ids = prompt()
    new = 2 * WINDOW + 3                          # past the SWA window and over several mLSTM chunks
    cached = generate(model, ids, new)
    recomputed = generate(model, ids, new, use_cache=False)
    assert cached.shape == (2, ids.shape[1] + new)
    assert torch.equal(cached, recomputed), variant


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_feeding_the_sequence_in_pieces_equals_one_pass(repo_root, variant):
    """Every step's logits, not only the argmax: a prompt, single tokens (decoding), and chunks
    longer than the window after a past (a second prompt), against one pass over everything."""
    model = tiny_model(repo_root, *VARIANTS[variant], seed=3)
    ids = prompt(length=30, seed=4)
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache()
        pieces, start = [], 0
        for size in (5, 1, 1, 1, 9, 1, 2, 10):    # 9 and 10 tokens after a past: longer than the window
            pieces.append(model(ids[:, start:start + size], cache=cache).logits)
            start += size
    assert start == ids.shape[1]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)


def cache_bytes_after(model: BlalmForCausalLM, counts: list[int]) -> dict[int, int]:
    ids = prompt(batch=1, length=max(counts), seed=5)
    cache = model.new_cache()
    out = {}
    with torch.no_grad():
        model(ids[:, :counts[0]], cache=cache)
        out[counts[0]] = cache.nbytes()
        for t in range(counts[0], max(counts)):
            model(ids[:, t:t + 1], cache=cache)
            if t + 1 in counts:
                out[t + 1] = cache.nbytes()
    return out


def test_mlstm_cache_memory_is_constant_in_context_length(repo_root):
    model = tiny_model(repo_root, "short_conv=true")
    sizes = cache_bytes_after(model, [10, 300])
    assert sizes[10] == sizes[300] > 0
    cfg = model.config
    per_layer = (cfg.num_heads * cfg.head_dim * cfg.head_dim + cfg.num_heads * cfg.head_dim + cfg.num_heads) * 8 \
        + 3 * (cfg.conv_kernel - 1) * cfg.hidden_size * 8              # (C, n, m) and conv inputs, float64
    assert sizes[300] == cfg.num_layers * per_layer


def test_swa_cache_is_bounded_by_the_window_and_attention_cache_grows(repo_root):
    swa = tiny_model(repo_root, "swa=memory")
    sizes = cache_bytes_after(swa, [2, 10, 300])
    assert sizes[2] < sizes[10] == sizes[300]                        # grows until the window is full
    cache = swa.new_cache()
    with torch.no_grad():
        swa(prompt(batch=1, length=30), cache=cache)
    assert all(layer.swa_k.shape[2] == WINDOW - 1 == layer.swa_v.shape[2] for layer in cache.layers)

    attention = tiny_model(repo_root, "mixer=attention")
    grows = cache_bytes_after(attention, [10, 300])
    assert grows[300] == 30 * grows[10]                              # a KV cache: linear in the context


def test_generate_stops_at_eos_and_repeats_it_in_finished_rows(repo_root):
    model = tiny_model(repo_root, "swa=add")
    ids = prompt(seed=7)
    free = generate(model, ids, 12)
    eos = int(free[0, ids.shape[1] + 2])         # row 0 emits this token at its 3rd step
    first = {row: next((i for i, tok in enumerate(free[row, ids.shape[1]:].tolist()) if tok == eos), None)
             for row in range(2)}
    stopped = generate(model, ids, 12, eos_token_id=eos)
    for row in range(2):
        n = first[row]
        generated = stopped[row, ids.shape[1]:]
        if n is None:
            assert torch.equal(generated, free[row, ids.shape[1]:stopped.shape[1]])
        else:
            assert torch.equal(generated[:n + 1], free[row, ids.shape[1]:ids.shape[1] + n + 1])
            assert (generated[n:] == eos).all()
    if all(n is not None for n in first.values()):
        assert stopped.shape[1] == ids.shape[1] + max(first.values()) + 1   # stops once every row is done
    else:
        assert stopped.shape[1] == free.shape[1]


def test_sampling_is_seeded_and_top_k_one_is_greedy(repo_root):
    model = tiny_model(repo_root, "hedgehog=true", "swa=dynmod_bounded", "dynmod_init=0.5")
    ids = prompt()

    def sample(seed, **kw):
        return generate(model, ids, 10, temperature=1.0, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(sample(11), sample(11))
    assert not torch.equal(sample(11), sample(12))
    assert torch.equal(sample(13, top_k=1), generate(model, ids, 10))
    # the sampled tokens of a cached run equal those of a recomputed run (same generator draws)
    assert torch.equal(sample(14), generate(model, ids, 10, temperature=1.0, use_cache=False,
                                            generator=torch.Generator().manual_seed(14)))
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]])
    draws = {int(next_token(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(s))) for s in range(40)}
    assert draws == {1, 2}


def test_bad_generation_requests_are_refused(repo_root):
    model = tiny_model(repo_root)
    ids = prompt()
    with pytest.raises(InputError, match="max_new_tokens"):
        generate(model, ids, -1)
    with pytest.raises(InputError, match="temperature"):
        generate(model, ids, 3, temperature=-0.5)
    with pytest.raises(InputError, match="top_k"):
        generate(model, ids, 3, temperature=1.0, top_k=0)
    with pytest.raises(InputError, match="length >= 1"):
        generate(model, ids[:, :0], 3)
    cache = model.new_cache()
    with pytest.raises(InputError, match="unpadded"):
        model(ids, attention_mask=torch.tensor([[1] * 7, [1] * 5 + [0] * 2]), cache=cache)
    model(ids, cache=cache)
    with pytest.raises(InputError, match="holds 2 sequences"):
        model(ids[:1, :1], cache=cache)
    assert generate(model, ids[0], 2).shape == (1, 9)                # a 1-D prompt is one row
