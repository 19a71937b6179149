"""Checkpoints: safetensors for tensors, JSON for the rest; written atomically, verified on load;
no pickle, no ``torch.save``.

A checkpoint is a folder ``RUN_DIR/checkpoints/NAME/`` holding

- ``model.safetensors``      the model's ``state_dict`` (float32 weights, names as in the model);
- ``optimizer.safetensors``  every optimizer state tensor, keyed ``OPTIMIZER/PARAM_NAME/STATE_KEY`` (e.g.
                             ``adamw/lm_head.weight/exp_avg``, ``muon/layers.0.ffn.up_proj.weight/momentum_buffer``);
                             kept in the newest two checkpoints (so that a damaged newest one can be
                             skipped at a resume), in all with ``keep_optimizer_state = "all"``;
- more tensor files a stage adds (fine-tuning: ``head.safetensors``);
- ``metrics.jsonl``          the run's log up to this checkpoint (a resume restores it from here, so a
                             damaged run log loses no record);
- ``model_config.json``      the ``ModelConfig`` (with the tokenizer's vocab size), enough to rebuild the model;
- ``tokenizer.json``, ``tokenizer_config.json``  copies of the run's tokenizer;
- ``state.json``             step, epoch, tokens and words seen, the learning rates, the RNG states,
                             what the stage needs to resume, and ``files``: the size and SHA-256 of
                             every other file of the folder; ``state_sha256`` checks state.json itself.

The weights, config and tokenizer files are the model stage's checkpoint format
(``blalm.model.checkpoint``): ``load_model(folder)``, ``blalm export`` and the evaluation read a
training checkpoint directly.

**Atomicity.** A checkpoint is written into ``checkpoints/.NAME.tmp-<id>/``
(:func:`blalm.atomic.atomic_dir`), every file and the folder are fsynced, the folder is renamed to
``NAME`` and the parent fsynced; only then is the pointer file ``checkpoints/latest`` (one line:
the folder name) replaced atomically (:func:`blalm.atomic.write_text_atomic`) and the parent
fsynced. A crash at any moment therefore leaves ``latest`` naming a complete checkpoint (or no
``latest`` at all before the first one); leftover temporaries are removed at the next start
(:func:`blalm.atomic.remove_stale_temp`, under the run's lock).

**Verification.** :func:`verify_checkpoint` re-hashes every file against ``state.json`` (a file
cut short, changed or missing is named with what is wrong); :func:`load_tensors` checks the
file's hash before it reads it; a resume takes the newest checkpoint that verifies
(:mod:`blalm.run.resume`) and reads its files without hashing them again. Checkpoints written before checksums were recorded are checked for a
readable safetensors header and size instead.

**In the background.** Training and fine-tuning save through a :class:`BackgroundSaver`: it takes
CPU snapshots and the loop goes on training while the files are written; ``latest`` moves only
when a write is complete, so the guarantee above holds, and a run waits for its last write before
it reports success. Files get the usual mode (0644 under umask 022), as every output does.

Fault points (:mod:`blalm.faults`): ``checkpoint_written``, ``checkpoint_renamed``, ``checkpoint_done``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from blalm.atomic import atomic_dir, file_mode, fsync_path, write_safetensors, write_text_atomic
from blalm.errors import InputError
from blalm.faults import fault_point
from blalm.model.checkpoint import FORMAT_METADATA, load_model
from blalm.run.layout import (DAMAGED_PREFIX, LATEST_FILE, MODEL_CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE,
                              STATE_FILE, TRAIN_WEIGHTS_FILE)
from blalm.run.parallel import shard_like

SAVER_THREAD = "blalm-checkpoint"
OPTIONAL_FILES = frozenset({OPTIMIZER_FILE, TRAIN_WEIGHTS_FILE})   # resume-only: dropped from older checkpoints
STATE_CHECKSUM = "state_sha256"


class DamagedCheckpoint(InputError):
    """A checkpoint file is missing, cut short or changed since it was written."""


# ----------------------------------------------------------------------------------------------
# file helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def json_digest(data: dict[str, Any], skip: str = STATE_CHECKSUM) -> str:
    """SHA-256 of ``data`` (without its key ``skip``) as canonical JSON: a JSON file that records it
    under ``skip`` can check that it was not changed (a changed digit still parses)."""
    body = {k: v for k, v in data.items() if k != skip}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# writing


def _write_files(tmp: Path, tensor_files: dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]],
                 model_config: dict[str, Any], tokenizer_files: Iterable[Path],
                 extra_files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """Every file of a checkpoint but state.json, into ``tmp``; their sizes and SHA-256."""
    for file_name, (tensors, metadata) in tensor_files.items():
        write_safetensors(tmp / file_name, tensors, metadata=metadata)
    for file_name, data in extra_files.items():
        (tmp / file_name).write_bytes(data)
    _write_json(tmp / MODEL_CONFIG_FILE, model_config)
    for source in tokenizer_files:
        shutil.copyfile(source, tmp / Path(source).name)
    files = {}
    for entry in sorted(tmp.iterdir()):
        os.chmod(entry, file_mode())
        files[entry.name] = {"bytes": entry.stat().st_size, "sha256": sha256_file(entry)}
    return files


def save_checkpoint(root: Path, name: str, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, torch.Tensor] | None, state: dict[str, Any],
                    model_config: dict[str, Any], tokenizer_files: Iterable[Path] = (),
                    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    """Write checkpoint ``root/name`` atomically and point ``root/latest`` at it (see the module docstring).

    ``extra_tensors``: more safetensors files written in the same atomic folder, ``{file name: tensors}``
    (fine-tuning keeps its classification head in ``head.safetensors`` this way); ``extra_files``:
    other files, ``{file name: bytes}`` (the run's metrics.jsonl)."""
    tensor_files = {MODEL_FILE: (model_state, dict(FORMAT_METADATA))}
    if optimizer_state is not None:
        tensor_files[OPTIMIZER_FILE] = (optimizer_state, {"format": "pt"})
    for file_name, tensors in (extra_tensors or {}).items():
        tensor_files[file_name] = (tensors, {"format": "pt"})
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    # an existing target is an orphan of a crash between rename and 'latest' (never the latest
    # itself): atomic_dir replaces it only once the new folder is in place
    with atomic_dir(target) as tmp:
        files = _write_files(tmp, tensor_files, model_config, tokenizer_files, extra_files or {})
        full_state = {**state, "name": name, "files": files}
        full_state[STATE_CHECKSUM] = json_digest(full_state)
        _write_json(tmp / STATE_FILE, full_state)
        os.chmod(tmp / STATE_FILE, file_mode())
        for entry in tmp.iterdir():
            fsync_path(entry)
        fsync_path(tmp)
        fault_point("checkpoint_written")
    fsync_path(root)
    fault_point("checkpoint_renamed")
    write_latest(root, name)
    fault_point("checkpoint_done")
    return target


def write_latest(root: Path, name: str) -> None:
    """Point ``root/latest`` at the checkpoint folder ``name``, atomically and durably."""
    write_text_atomic(root / LATEST_FILE, name + "\n")
    fsync_path(root)


def prune_checkpoints(root: Path, keep_optimizer: int | None = 2, keep_folders: int | None = None) -> None:
    """Keep the optimizer state in the newest ``keep_optimizer`` checkpoints (by step) and the newest
    ``keep_folders`` checkpoint folders (None: all). Runs after ``latest`` has moved."""
    newest_first = [Path(c["path"]) for c in reversed(list_checkpoints(root))]
    if keep_folders is not None:
        for folder in newest_first[keep_folders:]:
            shutil.rmtree(folder, ignore_errors=True)
        newest_first = newest_first[:keep_folders]
    if keep_optimizer is not None:
        for folder in newest_first[keep_optimizer:]:
            for name in OPTIONAL_FILES:
                (folder / name).unlink(missing_ok=True)


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

    def save(self, root: Path, name: str, model_state: dict[str, torch.Tensor],
             optimizer_state: dict[str, torch.Tensor] | None, state: dict[str, Any], model_config: dict[str, Any],
             tokenizer_files: Iterable[Path] = (), extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
             extra_files: dict[str, bytes] | None = None, then: Callable[[Path], None] | None = None) -> None:
        """:func:`save_checkpoint` on the background thread from snapshots taken now; ``then(path)``
        (pruning older checkpoints, a hook) runs there once the checkpoint is in place."""
        model_state = _snapshot(model_state)
        optimizer_state = _snapshot(optimizer_state) if optimizer_state is not None else None
        extra = {file: _snapshot(tensors) for file, tensors in (extra_tensors or {}).items()}
        tokenizer_files = list(tokenizer_files)

        def write() -> None:
            path = save_checkpoint(root, name, model_state, optimizer_state, state, model_config, tokenizer_files,
                                   extra_tensors=extra, extra_files=extra_files)
            if then is not None:
                then(path)

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

    def settle(self) -> None:
        """Wait for a write in flight, errors left for :meth:`close` (a fault point's ``before_kill``:
        the saver thread itself must not wait for its own write)."""
        if not threading.current_thread().name.startswith(SAVER_THREAD) and self._pending is not None:
            self._pending.exception()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


# ----------------------------------------------------------------------------------------------
# reading and verifying


def read_latest(root: Path) -> Path | None:
    """The checkpoint folder ``root/latest`` names, or None when there is none yet."""
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    path = root / name
    if not name or "/" in name or not (path / STATE_FILE).is_file():
        raise InputError(f"{pointer}: names checkpoint '{name}', which is missing or incomplete; "
                         f"the run folder was changed by hand. Point it at a complete checkpoint folder "
                         f"or start a new run with another --out")
    return path


def read_state(path: Path) -> dict[str, Any]:
    """The ``state.json`` of checkpoint folder ``path``, checked against its own checksum;
    :class:`DamagedCheckpoint` when it is unreadable or changed."""
    file = Path(path) / STATE_FILE
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{file}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpoint(f"{file}: not readable JSON ({exc}): cut short or changed") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise DamagedCheckpoint(f"{file}: not a checkpoint state (no integer 'step')")
    if STATE_CHECKSUM in state and state[STATE_CHECKSUM] != json_digest(state):
        raise DamagedCheckpoint(f"{file}: its content does not match its {STATE_CHECKSUM}: changed after it was written")
    return state


def list_checkpoints(root: Path) -> list[dict[str, Any]]:
    """The checkpoints under ``root`` with a readable state.json (their state, and ``path``), by step."""
    out = []
    if Path(root).is_dir():
        for entry in Path(root).iterdir():
            if entry.is_dir() and not entry.name.startswith(".") and (entry / STATE_FILE).is_file():
                try:
                    out.append({**read_state(entry), "path": str(entry)})
                except DamagedCheckpoint:
                    continue
    return sorted(out, key=lambda s: (s["step"], s.get("name", "")))


def _file_problem(folder: Path, name: str, expected: dict[str, Any] | None) -> str | None:
    path = folder / name
    if not path.is_file():
        return f"{name} is missing"
    if expected is None:
        return _legacy_problem(path)
    size = path.stat().st_size
    if size != expected["bytes"]:
        return f"{name} has {size:,} bytes, {expected['bytes']:,} were written (cut short or changed)"
    if sha256_file(path) != expected["sha256"]:
        return f"{name}: SHA-256 differs from the one recorded when it was written (the file changed)"
    return None


def _legacy_problem(path: Path) -> str | None:
    """For checkpoints written without checksums: a safetensors file must open."""
    if path.suffix != ".safetensors":
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError) as exc:
        return f"{path.name} is not a readable safetensors file ({exc})"
    return None


def verify_checkpoint(folder: Path, required: Iterable[str] = ()) -> list[str]:
    """What is wrong with checkpoint ``folder`` (empty when nothing): its state.json, every file it
    records (size and SHA-256), and the files in ``required`` (e.g. the optimizer state to resume)."""
    folder = Path(folder)
    try:
        state = read_state(folder)
    except DamagedCheckpoint as exc:
        return [str(exc).replace(f"{folder}/", "")]
    recorded = state.get("files")
    if recorded is None:   # written before checksums: the safetensors files must open
        names = [p.name for p in folder.iterdir() if p.suffix == ".safetensors"]
        problems = [p for p in (_file_problem(folder, n, None) for n in names) if p]
    else:
        problems = [p for n, expected in recorded.items()
                    if not (n in OPTIONAL_FILES and not (folder / n).exists())
                    and (p := _file_problem(folder, n, expected))]
    for name in required:
        if not (folder / name).is_file() and not any(name in p for p in problems):
            problems.append(f"{name} is missing" + (" (optimizer state is kept in the newest two checkpoints)"
                                                    if name == OPTIMIZER_FILE else ""))
    return problems


def load_tensors(folder: Path, file_name: str, device: str | torch.device = "cpu",
                 verified: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/file_name`` after checking the file against the checkpoint's
    state.json (:class:`DamagedCheckpoint` naming the file otherwise). No pickle: safetensors.
    ``verified``: :func:`verify_checkpoint` has just passed the folder (a resume's choice, under
    the run's lock), so the file is not hashed a second time."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    recorded = read_state(folder).get("files")
    problem = None if verified else _file_problem(folder, file_name, recorded.get(file_name) if recorded else None)
    if recorded is not None and file_name not in recorded and problem is None:
        problem = f"{file_name} is not one of the files the checkpoint recorded"
    if problem:
        raise DamagedCheckpoint(f"{folder}: {problem}")
    try:
        return load_file(str(folder / file_name), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise DamagedCheckpoint(f"{folder / file_name}: not a readable safetensors file ({exc})") from None


def load_model_state(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_tensors(path, MODEL_FILE, device)


def load_checkpoint_model(path: Path, device: str | torch.device = "cpu"):
    """The model of a checkpoint folder, in eval mode (the model stage's ``load_model``)."""
    return load_model(path, device)


def set_aside(folder: Path) -> Path:
    """Move a damaged checkpoint folder out of the way (``.damaged-NAME-<id>``, kept, never read)."""
    folder = Path(folder)
    target = folder.with_name(f"{DAMAGED_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
    os.replace(folder, target)
    fsync_path(folder.parent)
    return target


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
        params = [p for group in opt.param_groups for p in group["params"]]
        for group_names in names[opt_name]:
            for pname in group_names:
                # a sharded (FSDP) parameter takes its shard of each full state tensor of its shape
                entry = {key: shard_like(t, params[index]) if t.shape == params[index].shape else t
                         for key, t in saved.get(pname, {}).items()}
                entry.update(scalars.get(opt_name, {}).get(pname, {}))
                if entry:
                    state[index] = entry
                index += 1
        sd["state"] = state
        opt.load_state_dict(sd)
