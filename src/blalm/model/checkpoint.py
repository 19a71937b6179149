"""Model checkpoints: a folder with the weights as safetensors and the config as JSON (no pickle).

    CHECKPOINT/
      model.safetensors     every parameter, by its state_dict name (a tied LM head is not stored:
                            with tie_embeddings the model has none, it reuses embed_tokens.weight)
      model_config.json     blalm.config.to_dict(ModelConfig)
      tokenizer.json, tokenizer_config.json, ...   copies of the tokenizer, when one was given

The trainer writes one per milestone, the evaluator and ``blalm export`` / ``blalm generate``
read them. Writing is atomic: the folder is built beside its target and renamed into place, so a
crash leaves the old checkpoint or the new one, never half of one. An existing folder is replaced
only when it is empty or is itself a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from torch import nn

from blalm.config import from_dict, to_dict
from blalm.errors import BlalmError, ConfigError, InputError
from blalm.model.config import ModelConfig
from blalm.model.decoder import BlalmForCausalLM
from blalm.model.mlstm_layer import kernel_head_dims
from blalm.model.ops.mlstm import AUTO_KERNEL, known_kernel_names, mlstm_kernel_spec
from blalm.atomic import atomic_dir, write_json_atomic, write_safetensors

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
FORMAT_METADATA = {"format": "pt", "blalm_checkpoint": "1"}


def unwrap_model(model: nn.Module) -> BlalmForCausalLM:
    """The :class:`BlalmForCausalLM` inside a ``torch.compile`` wrapper, DDP/FSDP-style ``.module``
    wrapper or our Hugging Face wrapper (``.model``); the model itself otherwise."""
    for _ in range(4):
        if isinstance(model, BlalmForCausalLM):
            break
        inner = next((getattr(model, name) for name in ("_orig_mod", "module", "model")
                      if isinstance(getattr(model, name, None), nn.Module)), None)
        if inner is None:
            break
        model = inner
    if not isinstance(model, BlalmForCausalLM):
        raise BlalmError(f"save_model needs a blalm model (BlalmForCausalLM); got {type(model).__name__}")
    return model


def is_model_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``model.safetensors`` and ``model_config.json``."""
    path = Path(path).expanduser()
    return (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def save_model(model: nn.Module, out_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write ``model`` (weights + config, and the tokenizer's files when ``tokenizer_dir`` is given)
    to the folder ``out_dir``, atomically. Returns ``out_dir``.

    Tensors are saved as they are (dtype kept), moved to the CPU. Raises :class:`BlalmError` when
    ``out_dir`` is a file or a folder holding something other than a checkpoint, and
    :class:`InputError` when ``tokenizer_dir`` holds no ``tokenizer.json``.
    """
    model = unwrap_model(model)
    out_dir = Path(out_dir).expanduser()
    tokenizer_files = _tokenizer_files(Path(tokenizer_dir).expanduser()) if tokenizer_dir is not None else []
    _check_replaceable(out_dir, "checkpoint", is_model_checkpoint)
    with atomic_dir(out_dir) as tmp:   # write_safetensors takes the CPU, contiguous copy (once)
        write_safetensors(tmp / WEIGHTS_FILE, model.state_dict(), metadata=dict(FORMAT_METADATA))
        write_json_atomic(tmp / CONFIG_FILE, to_dict(model.config))
        for source in tokenizer_files:
            shutil.copyfile(source, tmp / source.name)
    return out_dir


def load_model_config_file(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of the checkpoint folder ``path``."""
    path = Path(path).expanduser()
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise InputError(_not_a_checkpoint(path, [CONFIG_FILE]))
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{config_path}: not valid JSON ({exc})") from None
    return from_dict(ModelConfig, data, where=str(config_path))


def runnable_here(config: ModelConfig, where: str | Path = CONFIG_FILE) -> ModelConfig:
    """``config`` with ``mlstm_kernel = "auto"`` when its kernel is registered but cannot run on this
    machine (a model trained with the GPU kernel, loaded on a CPU). The kernel is how the weights
    were trained fast, not part of them: every kernel computes the same function, so the weights run
    unchanged with a kernel that can. A name not registered in this process is a ConfigError naming
    ``where`` (a typo is never silently replaced). A training config gets no such help."""
    if config.mixer != "mlstm" or config.mlstm_kernel == AUTO_KERNEL:
        return config
    try:
        spec = mlstm_kernel_spec(config.mlstm_kernel)
    except ConfigError:
        raise ConfigError(f"{where}: model.mlstm_kernel = {config.mlstm_kernel!r} is not a registered mLSTM "
                          f"kernel (known here: {known_kernel_names()}); set it to one of them, or register "
                          f"the kernel (register_mlstm_kernel) before loading") from None
    return dataclasses.replace(config, mlstm_kernel=AUTO_KERNEL) if spec.unfit_here(*kernel_head_dims(config)) else config


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> BlalmForCausalLM:
    """The model saved in the checkpoint folder ``path``, on ``device``, in eval mode.

    Weights keep their saved dtype unless ``dtype`` is given; an mLSTM kernel that cannot run here
    is replaced by ``auto`` (:func:`runnable_here`). Raises :class:`InputError` naming the
    folder when a file is missing or unreadable, or when the weights do not fit the config
    (missing, unexpected or differently shaped tensors).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    missing_files = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (path / name).is_file()]
    if missing_files:
        raise InputError(_not_a_checkpoint(path, missing_files))
    config = runnable_here(load_model_config_file(path), path / CONFIG_FILE)
    try:
        tensors = load_file(str(path / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path / WEIGHTS_FILE}: not a readable safetensors file ({exc})") from None
    with torch.device("meta"):
        model = BlalmForCausalLM(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    problems = [f"missing {name} {shape}" for name, shape in expected.items() if name not in tensors]
    problems += [f"unexpected {name}" for name in tensors if name not in expected]
    problems += [f"{name} has shape {tuple(tensors[name].shape)}, the config needs {shape}"
                 for name, shape in expected.items() if name in tensors and tuple(tensors[name].shape) != shape]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError(f"{path}: the weights in {WEIGHTS_FILE} do not fit {CONFIG_FILE}: "
                         f"{'; '.join(problems[:5])}{more}. The two files come from different models; "
                         f"save the checkpoint again with save_model")
    model.load_state_dict(tensors, strict=True, assign=True)
    leftover = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:  # pragma: no cover - a model change that added state outside the state_dict
        raise RuntimeError(f"tensors not restored from the checkpoint: {leftover}")
    return model.to(device=device, dtype=dtype).eval()


def checkpoint_tokenizer_dir(path: str | Path) -> Path | None:
    """``path`` when the checkpoint folder holds a tokenizer (``tokenizer.json``), else None."""
    path = Path(path).expanduser()
    return path if (path / "tokenizer.json").is_file() else None


# ----------------------------------------------------------------------------------------------
# folder helpers (also used by the Hugging Face export)


def _tokenizer_files(tokenizer_dir: Path) -> list[Path]:
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise InputError(f"{tokenizer_dir}: no tokenizer.json here; pass the folder written by "
                         f"'blalm tokenizer' (or a checkpoint that holds a tokenizer)")
    return [tokenizer_dir / name for name in TOKENIZER_FILES if (tokenizer_dir / name).is_file()]


def _not_a_checkpoint(path: Path, missing: list[str]) -> str:
    if not path.exists():
        return f"{path}: no such folder; pass a model checkpoint folder (written by training or save_model)"
    if not path.is_dir():
        return f"{path}: not a folder; pass a model checkpoint folder (written by training or save_model)"
    hint = ""
    if (path / "checkpoints").is_dir():
        hint = f"; this looks like a training run folder: pass one of its checkpoints ({path / 'checkpoints'}/NAME)"
    return (f"{path}: not a blalm model checkpoint: {', '.join(missing)} missing (a checkpoint holds "
            f"{WEIGHTS_FILE} and {CONFIG_FILE}, as written by training or save_model){hint}")


def _check_replaceable(out_dir: Path, what: str, is_same_kind) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise BlalmError(f"{out_dir}: exists and is not a folder; choose another output folder for the {what}")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_same_kind(out_dir):
        names = sorted(p.name for p in out_dir.iterdir())[:5]
        raise BlalmError(f"{out_dir}: folder exists and is not a {what} (it holds {', '.join(names)}); it is "
                         f"not replaced. Choose an empty or new output folder")


