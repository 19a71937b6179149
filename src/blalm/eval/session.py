"""What one evaluation process keeps between models: :class:`EvalSession`.

Scoring the checkpoints of a run (``blalm eval RUN_DIR``, ``--follow``) asks the same questions of
many models that share a tokenizer. The session answers the model-independent ones once:

* **task data**, read once per process and file version (the EWoK and WUG zips are decrypted once,
  in memory; nothing is written to disk);
* **tokenized candidates**, once per data set and tokenizer — keyed by the tokenizer's fingerprint
  (a SHA-256 of its serialized ``tokenizer.json`` and special-token ids), so a checkpoint with a
  changed tokenizer is never scored with another one's token ids;
* **the model**: the next blalm checkpoint of the same architecture and tokenizer is loaded into the
  model already in memory (weights copied in place), so a compiled model stays compiled.

Everything is held in memory for the life of the session object; nothing here changes a score.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable


def file_stamp(path: Path) -> tuple:
    """``(path, size, mtime)`` of a file, or of every file of a folder: a data set's version."""
    path = Path(path)
    if path.is_dir():
        return (str(path),) + tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                    for p in sorted(path.iterdir()) if p.is_file())
    if path.is_file():
        st = path.stat()
        return (str(path), st.st_size, st.st_mtime_ns)
    return (str(path), None)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of everything that decides the token ids: the fast tokenizer's serialized form
    (vocabulary, merges, pre-tokenizer, post-processor) and its special-token ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(tokenizer.get_vocab())
    special = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, type(tokenizer).__name__]
    return hashlib.sha256((text + json.dumps(special)).encode("utf-8")).hexdigest()


class EvalSession:
    """Caches of one evaluation process (see the module docstring)."""

    def __init__(self) -> None:
        self._data: dict[tuple, Any] = {}
        self._encoded: dict[tuple, Any] = {}
        self._fingerprints: dict[int, tuple[Any, str]] = {}
        self._model: tuple[tuple, Any, Any] | None = None   # (key, model, tokenizer)
        self.hits = {"data": 0, "encoded": 0, "model": 0}

    def data(self, what: str, path: Path, load: Callable[[], Any]) -> Any:
        """``load()`` the first time ``what`` is asked of this version of ``path``; the same object after."""
        key = (what, file_stamp(path))
        if key in self._data:
            self.hits["data"] += 1
        else:
            self._data[key] = load()
        return self._data[key]

    def fingerprint(self, tokenizer: Any) -> str:
        held = self._fingerprints.get(id(tokenizer))
        if held is None or held[0] is not tokenizer:
            held = (tokenizer, tokenizer_fingerprint(tokenizer))
            self._fingerprints[id(tokenizer)] = held
        return held[1]

    def encoded(self, tokenizer: Any, what: str, path: Path, extra: Any, build: Callable[[], Any]) -> Any:
        """``build()`` once per data version, tokenizer fingerprint and ``extra`` (e.g. the BOS switch)."""
        key = (what, file_stamp(path), self.fingerprint(tokenizer), extra)
        if key in self._encoded:
            self.hits["encoded"] += 1
        else:
            self._encoded[key] = build()
        return self._encoded[key]

    def release(self) -> None:
        """Drop the held model and return the GPU memory it used (after an out-of-memory error)."""
        import torch

        self._model = None
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def load(self, model_path: Path, device: str, compile_model: bool,
             load: Callable[[Path, str], tuple[Any, Any]]) -> tuple[Any, Any]:
        """``(model, tokenizer)`` for ``model_path``, its decoder blocks compiled in place when
        ``compile_model`` (:func:`blalm.eval.scoring.compile_for_scoring`): a blalm checkpoint like
        the one held (same model config, tokenizer files, device and compilation) is copied into the
        held model in place."""
        key = _checkpoint_key(Path(model_path), device)
        key = None if key is None else (*key, compile_model)
        if key is not None and self._model is not None and self._model[0] == key:
            _, model, tokenizer = self._model
            _copy_checkpoint_weights(Path(model_path), model)
            self.hits["model"] += 1
            return model, tokenizer
        model, tokenizer = load(Path(model_path), device)
        if compile_model:
            from blalm.eval.scoring import compile_for_scoring

            compile_for_scoring(model)
        self._model = (key, model, tokenizer) if key is not None else None
        return model, tokenizer


def _checkpoint_key(folder: Path, device: str) -> tuple | None:
    """What must match for a blalm checkpoint's weights to drop into a held model (None: not one)."""
    from blalm.model.checkpoint import CONFIG_FILE, is_model_checkpoint

    if not is_model_checkpoint(folder) or not (folder / "tokenizer.json").is_file():
        return None
    tokenizer_files = tuple(hashlib.sha256(p.read_bytes()).hexdigest()
                            for p in sorted(folder.glob("tokenizer*.json")) + sorted(folder.glob("special_tokens_map.json")))
    return ((folder / CONFIG_FILE).read_text(encoding="utf-8"), tokenizer_files, device)


def _copy_checkpoint_weights(folder: Path, hf_model: Any) -> None:
    """Load the blalm checkpoint ``folder`` (checked as ``load_model`` checks it) into ``hf_model``'s
    blalm model in place."""
    import torch

    from blalm.model.checkpoint import load_model

    fresh = load_model(folder)
    with torch.no_grad():
        target = hf_model.model
        state = fresh.state_dict()
        for name, tensor in target.state_dict().items():
            tensor.copy_(state[name])
