"""Checkpoints: safetensors for tensors, JSON for the rest; no pickle, no ``torch.save``.

A checkpoint is a folder ``RUN_DIR/checkpoints/NAME/`` holding

- ``model.safetensors``      the model's ``state_dict`` (float32 weights, names as in the model);
- ``optimizer.safetensors``  every optimizer state tensor, keyed ``OPTIMIZER/PARAM_NAME/STATE_KEY`` (e.g.
                             ``adamw/lm_head.weight/exp_avg``, ``muon/layers.0.ffn.up_proj.weight/momentum_buffer``);
                             kept in the latest checkpoint only unless ``keep_optimizer_state = "all"``;
- ``model_config.json``      the ``ModelConfig`` (with the tokenizer's vocab size), enough to rebuild the model;
- ``tokenizer.json``, ``tokenizer_config.json``  copies of the run's tokenizer;
The weights, config and tokenizer files are the model stage's checkpoint format
(``blalm.model.checkpoint``): ``load_model(folder)``, ``blalm export`` and the evaluation read a
training checkpoint directly.

- ``state.json``             step, epoch, position in the epoch, tokens and words seen, the learning
                             rates, the RNG states (torch CPU/CUDA as hex, numpy and python as lists),
                             the count of skipped non-finite steps, the data key, validation metrics.

**Atomicity.** A checkpoint is written into ``checkpoints/.tmp-NAME-<id>/``, every file and the
folder are fsynced, the folder is renamed to ``NAME`` and the parent fsynced; only then is the
pointer file ``checkpoints/latest`` (one line: the folder name) replaced atomically the same way.
A crash at any moment therefore leaves ``latest`` naming a complete checkpoint (or no ``latest``
at all before the first one); leftover ``.tmp-*`` folders are removed at the next start.

**In the background.** Training and fine-tuning save through a :class:`BackgroundSaver`: it takes
CPU snapshots and the loop goes on training while the files are written; ``latest`` moves only
when a write is complete, so the guarantee above holds, and a run waits for its last write before
it reports success.

``BLALM_TRAIN_FAULT`` (tests only) kills the process with SIGKILL at a named point of the save
or of a training step, to test exactly this (see :func:`fault_point`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import uuid
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blalm.errors import InputError
from blalm.atomic import write_json_atomic

from blalm.model.checkpoint import CONFIG_FILE as MODEL_CONFIG_FILE
from blalm.model.checkpoint import FORMAT_METADATA, load_model
from blalm.model.checkpoint import WEIGHTS_FILE as MODEL_FILE

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
LATEST_FILE = "latest"

FAULT_ENV = "BLALM_TRAIN_FAULT"
_fault_counts: dict[str, int] = {}
SAVER_THREAD = "blalm-checkpoint"
_savers: "weakref.WeakSet[BackgroundSaver]" = weakref.WeakSet()   # for fault_point (tests)


def fault_point(name: str) -> None:
    """Test hook: with ``BLALM_TRAIN_FAULT="NAME@N"`` (comma-separated for several) the process
    SIGKILLs itself the N-th time it reaches point NAME. Points: ``step_backward`` (after a
    micro-batch's backward, before the optimizer step), ``save_written`` (checkpoint files
    written in the temporary folder, not yet renamed), ``save_renamed`` (checkpoint in place,
    ``latest`` not yet updated). A point of the training loop first lets a checkpoint write in
    flight on the :class:`BackgroundSaver` finish, so each test kills at a known state (a kill at
    an arbitrary moment, write in flight or not, is tested by timing)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    for item in spec.split(","):
        point, _, count = item.strip().partition("@")
        if point == name and _fault_counts[name] == int(count or 1):
            if not threading.current_thread().name.startswith(SAVER_THREAD):
                for saver in list(_savers):
                    saver.wait(raise_errors=False)
            os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------------------------
# file helpers


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file (e.g. a checkpoint's optimizer or extra file)."""
    return _load_tensors(path, device)


def _load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def cleanup_stale(root: Path) -> list[str]:
    """Remove temporary folders left by a crash during a save (``.tmp-*``, ``.old-*``, ``.latest.*``)."""
    removed = []
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith((".tmp-", ".old-", f".{LATEST_FILE}.")):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(entry.name)
    return removed


def save_checkpoint(root: Path, name: str, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, torch.Tensor] | None, state: dict[str, Any],
                    model_config: dict[str, Any], tokenizer_files: list[Path] = (),
                    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
                    drop_optimizer_of: Path | None = None) -> Path:
    """Write checkpoint ``root/name`` atomically and point ``root/latest`` at it (see the module docstring).

    ``extra_tensors``: more safetensors files written in the same atomic folder, ``{file name: tensors}``
    (fine-tuning keeps its classification head in ``head.safetensors`` this way).
    ``drop_optimizer_of``: an older checkpoint folder whose optimizer state is removed once ``latest``
    names the new one (the optimizer state is kept in the latest checkpoint only)."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _save_tensors(model_state, tmp / MODEL_FILE, metadata=dict(FORMAT_METADATA))
        if optimizer_state is not None:
            _save_tensors(optimizer_state, tmp / OPTIMIZER_FILE, metadata={"format": "pt"})
        for file_name, tensors in (extra_tensors or {}).items():
            _save_tensors(tensors, tmp / file_name, metadata={"format": "pt"})
        _write_json(tmp / MODEL_CONFIG_FILE, model_config)
        for source in tokenizer_files:
            shutil.copyfile(source, tmp / Path(source).name)
        _write_json(tmp / STATE_FILE, {**state, "name": name})
        for entry in tmp.iterdir():
            fsync_path(entry)
        fsync_path(tmp)
        fault_point("save_written")
        if target.exists():   # an orphan of a crash between rename and 'latest' (never the latest itself)
            old = root / f".old-{name}-{uuid.uuid4().hex[:12]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point("save_renamed")
    write_latest(root, name)
    if drop_optimizer_of is not None and Path(drop_optimizer_of).name != name:
        (Path(drop_optimizer_of) / OPTIMIZER_FILE).unlink(missing_ok=True)
    return target


def _snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies of ``tensors``, which training goes on changing in place."""
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


class BackgroundSaver:
    """Writes checkpoints on one background thread, one at a time, in the order given.

    :meth:`save` takes CPU snapshots of the tensors and returns; the training loop goes on with the
    next steps while the files are written and fsynced (on the H100 a 270M checkpoint took ~5 s of a step loop
    that runs 4.6 steps/s). The atomic protocol of :func:`save_checkpoint` is unchanged: a crash
    while a write is in flight leaves ``latest`` at the previous checkpoint, and a resumed run
    repeats the steps since then exactly. An error in a write is raised at the next ``submit`` or
    at ``close``."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=SAVER_THREAD)
        self._pending = None
        _savers.add(self)

    def save(self, root: Path, name: str, model_state: dict[str, torch.Tensor],
             optimizer_state: dict[str, torch.Tensor] | None, state: dict[str, Any], model_config: dict[str, Any],
             tokenizer_files: list[Path] = (), extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
             drop_optimizer_of: Path | None = None, then=None) -> None:
        """:func:`save_checkpoint` on the background thread from snapshots taken now; ``then()``
        (e.g. pruning older checkpoints) runs there after it."""
        model_state = _snapshot(model_state)
        optimizer_state = _snapshot(optimizer_state) if optimizer_state is not None else None
        extra = {file: _snapshot(tensors) for file, tensors in (extra_tensors or {}).items()}

        def write() -> None:
            save_checkpoint(root, name, model_state, optimizer_state, state, model_config, tokenizer_files,
                            extra_tensors=extra, drop_optimizer_of=drop_optimizer_of)
            if then is not None:
                then()

        self.submit(write)

    def submit(self, fn, *args, **kwargs) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args, **kwargs)

    def wait(self, raise_errors: bool = True) -> None:
        pending = self._pending
        if pending is not None:
            exc = pending.exception()          # blocks until the write is done
            self._pending = None
            if exc is not None and raise_errors:
                raise exc

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST_FILE}.{uuid.uuid4().hex[:12]}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / LATEST_FILE)
    fsync_path(root)


def read_latest(root: Path) -> Path | None:
    """The checkpoint folder ``root/latest`` names, or None when there is none yet."""
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    path = root / name
    if not name or not (path / STATE_FILE).is_file():
        raise InputError(f"{pointer}: names checkpoint '{name}', which is missing or incomplete; "
                         f"the run folder was changed by hand. Point it at a complete checkpoint folder "
                         f"or start a new run with another --out")
    return path


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))


def list_checkpoints(root: Path) -> list[dict[str, Any]]:
    """The complete checkpoints under ``root`` (their state.json), by step."""
    out = []
    if Path(root).is_dir():
        for entry in Path(root).iterdir():
            if entry.is_dir() and not entry.name.startswith(".") and (entry / STATE_FILE).is_file():
                out.append({**read_state(entry), "path": str(entry)})
    return sorted(out, key=lambda s: (s["step"], s["name"]))


def load_model_state(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return _load_tensors(Path(path) / MODEL_FILE, device)


def load_checkpoint_model(path: Path, device: str | torch.device = "cpu"):
    """The model of a checkpoint folder, in eval mode (the model stage's ``load_model``)."""
    return load_model(path, device)


# ----------------------------------------------------------------------------------------------
# optimizer state


def optimizer_tensors(optimizers: dict[str, torch.optim.Optimizer], names: dict[str, list[list[str]]]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every optimizer state tensor keyed ``OPT/PARAM/KEY``, and the non-tensor state (JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, dict[str, Any]]] = {}
    for opt_name, opt in optimizers.items():
        for group, group_names in zip(opt.param_groups, names[opt_name]):
            for param, pname in zip(group["params"], group_names):
                for key, value in opt.state.get(param, {}).items():
                    if isinstance(value, torch.Tensor):
                        tensors[f"{opt_name}/{pname}/{key}"] = value
                    else:
                        scalars.setdefault(opt_name, {}).setdefault(pname, {})[key] = value
    return tensors, scalars


def load_optimizer_state(optimizers: dict[str, torch.optim.Optimizer], names: dict[str, list[list[str]]],
                         tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """Fill freshly built optimizers with the state saved by :func:`optimizer_tensors`."""
    for opt_name, opt in optimizers.items():
        sd = opt.state_dict()
        state: dict[int, dict[str, Any]] = {}
        index = 0
        saved: dict[str, dict[str, Any]] = {}
        for key, tensor in tensors.items():
            owner, pname, state_key = key.split("/")   # parameter names hold no '/'
            if owner == opt_name:
                saved.setdefault(pname, {})[state_key] = tensor
        for group_names in names[opt_name]:
            for pname in group_names:
                entry = dict(saved.get(pname, {}))
                entry.update(scalars.get(opt_name, {}).get(pname, {}))
                if entry:
                    state[index] = entry
                index += 1
        sd["state"] = state
        opt.load_state_dict(sd)


# ----------------------------------------------------------------------------------------------
# RNG state (JSON)


def rng_state() -> dict[str, Any]:
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
    torch.set_rng_state(torch.frombuffer(bytearray.fromhex(state["torch"]), dtype=torch.uint8).clone())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        saved = [torch.frombuffer(bytearray.fromhex(s), dtype=torch.uint8).clone() for s in state["cuda"]]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)


def write_json(path: Path, data: Any) -> None:
    write_json_atomic(Path(path), data)
