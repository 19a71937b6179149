"""``blalm bench decode``: decoding speed and cache memory against the context length.

For each context length L: a random prompt of L tokens is prefilled once through the model's
decoding cache, then ``new_tokens`` tokens are decoded one at a time (greedy). Reported per L:
the cache's bytes after the prefill (mLSTM: constant; attention: grows with L), peak device memory,
prefill seconds and decoding tokens/s (batch 1).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import torch

from blalm.model.config import ModelConfig
from blalm.model.decoder import build_model, count_parameters
from blalm.bench import device_fields


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def bench_decode(cfg: ModelConfig, device: torch.device, contexts: list[int], new_tokens: int = 64,
                 dtype: torch.dtype = torch.bfloat16) -> Iterator[dict[str, Any]]:
    torch.manual_seed(0)
    model = build_model(cfg, device).to(dtype).eval()
    params = count_parameters(model)["total"]
    for length in contexts:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        prompt = torch.randint(0, cfg.vocab_size, (1, length), device=device)
        cache = model.new_cache()
        _sync(device)
        start = time.perf_counter()
        out = model(prompt, cache=cache)
        _sync(device)
        prefill = time.perf_counter() - start
        cache_bytes = cache.nbytes()
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        start = time.perf_counter()
        for _ in range(new_tokens):
            token = model(token, cache=cache).logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
        decode = time.perf_counter() - start
        row = {"bench": "decode", "mixer": cfg.mixer, "mechanisms": cfg.mechanisms(), "parameters": params,
               "context": length, "new_tokens": new_tokens, "prefill_s": round(prefill, 4),
               "decode_tokens_per_s": round(new_tokens / decode, 1),
               "cache_mib_after_prefill": round(cache_bytes / 2**20, 2),
               "cache_mib_at_end": round(cache.nbytes() / 2**20, 2), "dtype": str(dtype).removeprefix("torch.")}
        yield {**row, **device_fields(device)}
