"""Benchmarks (``blalm bench``): JSON lines with figures, device and versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


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


def profiler_table(work: Callable[[], Any], device: Any, row_limit: int = 25, trace: Path | None = None) -> str:
    """Run ``work`` under torch.profiler (CPU, and CUDA on a GPU, synchronised at the end) and return
    its operators' table sorted by device time on a GPU, host time otherwise; ``trace``: also
    write the Chrome trace there (chrome://tracing, Perfetto)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        work()
        if cuda:
            torch.cuda.synchronize()
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    return prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=row_limit)
