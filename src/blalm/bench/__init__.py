"""Benchmarks (``blalm bench``): JSON lines with figures, device and versions."""

from __future__ import annotations

from typing import Any


def device_fields(device: Any) -> dict[str, Any]:
    """The device, its peak memory since the last reset (GPU) and the package versions, for a result row."""
    import torch

    from blalm.runinfo import machine, package_versions

    device = torch.device(device)
    if device.type == "cuda":
        fields = {"device": torch.cuda.get_device_name(device),
                  "peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)}
    else:
        fields = {"device": f"cpu ({machine()['processor']})"}
    return {**fields, "versions": package_versions()}
