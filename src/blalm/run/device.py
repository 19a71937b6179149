"""Where and how a run computes: the device, the precision, the seeds and RNG states, and the
processes of a ``torchrun`` launch. One helper of each for every stage (train, finetune, eval, bench).

- :func:`resolve_device`: ``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` -> a ``torch.device``
  (under ``torchrun`` a bare ``"cuda"`` is the process's ``LOCAL_RANK`` GPU); CUDA without a GPU is
  a :class:`~blalm.errors.BlalmError` naming the fix.
- :func:`resolve_precision` and :func:`precision_context`: ``"auto"`` | ``"fp32"`` | ``"tf32"`` |
  ``"bf16"`` -> what runs, and a context manager that runs it (bf16 autocast; TF32 tensor-core
  matmuls; fp32 exact float32 matmuls). Weights stay float32 in every case.
- :func:`seed_everything`, :func:`rng_state`, :func:`set_rng_state`: torch, numpy and python's
  ``random``; the states as JSON (hex and lists), never pickle.
- :class:`Dist`: rank, world size, barrier, sum, and :meth:`Dist.on_main` (rank 0 does the file
  work; the others learn whether it succeeded, so that an error there stops every rank).
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch

from blalm.errors import BlalmError

T = TypeVar("T")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` that ``name`` means here (see the module docstring)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BlalmError(f"device {name!r}: not a device name; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BlalmError(f"device {name!r}: no CUDA GPU is visible here; use device \"cpu\" (--device cpu) "
                             f"or \"auto\"")
        if device.index is None:
            distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if distributed else 0)
    return device


def resolve_precision(precision: str, device: torch.device, cpu_autocast: bool = False) -> str:
    """What ``precision`` means on ``device``: ``"auto"`` is bf16 on CUDA and fp32 elsewhere; on the
    CPU tf32 is fp32, and bf16 is fp32 unless ``cpu_autocast`` (the trainer's explicit CPU bf16)."""
    if precision not in PRECISIONS:
        raise BlalmError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if device.type != "cuda" and (precision == "tf32" or (precision == "bf16" and not cpu_autocast)):
        return "fp32"
    return precision


@contextlib.contextmanager
def precision_context(device: torch.device | str, precision: str) -> Iterator[None]:
    """Run the block in ``precision`` (a resolved one, see :func:`resolve_precision`) on ``device``:
    bf16 autocast, TF32 matmuls for tf32 (exact float32 matmuls otherwise, on CUDA)."""
    device_type = torch.device(device).type
    cuda = device_type == "cuda"
    if cuda:
        before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and python's ``random`` with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state as JSON-safe values (torch CPU/CUDA as hex; numpy and python as lists)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": torch.get_rng_state().numpy().tobytes().hex(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [s.numpy().tobytes().hex() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states when the GPU count is the same)."""
    torch.set_rng_state(torch.frombuffer(bytearray.fromhex(state["torch"]), dtype=torch.uint8).clone())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        saved = [torch.frombuffer(bytearray.fromhex(s), dtype=torch.uint8).clone() for s in state["cuda"]]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)


class Dist:
    """Rank, world size and the collectives a run needs (no-ops in a single process); under
    ``torchrun`` (``WORLD_SIZE > 1``) it joins the process group: NCCL on CUDA, gloo on the CPU."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False
        if self.world_size > 1 and not torch.distributed.is_initialized():
            cuda = device is not None and device.type == "cuda"
            if cuda:
                torch.cuda.set_device(device)
            torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
            self.owns_group = True
        self._device = device if device is not None and device.type == "cuda" else torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on rank 0 (None elsewhere); then every rank learns whether it raised: rank 0
        re-raises its error, the others raise a :class:`BlalmError` pointing at rank 0's message."""
        error: BaseException | None = None
        result = None
        if self.is_main:
            try:
                result = fn()
            except BaseException as exc:   # noqa: BLE001 - re-raised below, on every rank
                error = exc
        if self.enabled:
            failed = torch.tensor([1.0 if error is not None else 0.0], device=self._device)
            self.all_reduce_sum(failed)
            if failed.item() and error is None:
                raise BlalmError(f"rank {self.rank}: rank 0 stopped with an error (its message is above)")
        if error is not None:
            raise error
        return result

    def close(self, clean: bool = True) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            # free the DDP wrapper (it holds the process group) now, not at interpreter exit, where
            # gloo's threads would be destroyed while still joinable
            gc.collect()
            if clean:
                # every rank gets here before any tears down: a rank that leaves while its peer still
                # talks to it makes gloo abort the peer at exit ("terminate called without an active
                # exception", seen once in CI). After an error the peers are not waited for.
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()
