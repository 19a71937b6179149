"""The layout of a run folder, shared by every stage that writes or reads one.

    RUN_DIR/
      .lock                 held (flock) by the process writing the run; pid and host inside
      config.json           the run's resolved settings (train: the TrainConfig; finetune: the task's)
      run_info.json         command, versions, git commit, machine (run_info.resume_stepNNNNNN.json per resume)
      metrics.jsonl         one JSON record a line (blalm.run.metrics)
      tokenizer/            train: a copy of the run's tokenizer
      checkpoints/
        latest              one line: the name of the newest complete checkpoint
        NAME/               one checkpoint (blalm.run.checkpoint): model.safetensors, optimizer.safetensors,
                            model_config.json, tokenizer files, state.json (step, RNG, SHA-256 of every file)
        .damaged-NAME-*     a checkpoint that failed verification, set aside at a resume (kept, never read)

A training run folder (``blalm train``) is recognised by ``config.json`` beside ``checkpoints/``;
a fine-tuning output folder holds one such folder per task.
"""

from __future__ import annotations

from pathlib import Path

from blalm.errors import BlalmError
from blalm.lock import LOCK_FILE  # noqa: F401  (RUN_DIR/.lock: the lock's file)
from blalm.model.checkpoint import CONFIG_FILE as MODEL_CONFIG_FILE  # noqa: F401  (a checkpoint's files)
from blalm.model.checkpoint import WEIGHTS_FILE as MODEL_FILE  # noqa: F401

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
TOKENIZER_COPY = "tokenizer"
LATEST_FILE = "latest"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAIN_WEIGHTS_FILE = "train_weights.safetensors"   # the trained weights when model.safetensors holds their
#                                                  average (ema_decay); for resuming, kept with the optimizer state
TOKEN_CACHE = "tokens"          # RUN_DIR/tokens/: the token cache when the corpus folder is read-only
DAMAGED_PREFIX = ".damaged-"
EVAL_DIR = "eval"               # RUN_DIR/eval/: the checkpoints' scores ('blalm eval RUN_DIR', --follow)

# what a run folder may hold before its config.json is written (a start killed early; the scoring
# side process of 'blalm train --eval' starts before the run writes its config)
EARLY_ENTRIES = frozenset({LOCK_FILE, TOKEN_CACHE, EVAL_DIR})


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def resume_info_file(step: int) -> str:
    """The run_info file a resume at ``step`` writes (the first start's run_info.json stays)."""
    return f"run_info.resume_step{step:06d}.json"


def is_run_dir(path: Path) -> bool:
    """A folder written by ``blalm train``: its resolved config and its checkpoints folder."""
    return (Path(path) / CHECKPOINTS).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def check_run_dir(run_dir: Path, what: str = "blalm training run") -> None:
    """Refuse ``--out`` when it is a file, or a folder holding other things than a run."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise BlalmError(f"--out {run_dir} exists and is not a folder; give a folder path")
    if not run_dir.is_dir() or (run_dir / CONFIG_FILE).is_file():
        return
    others = sorted(p.name for p in run_dir.iterdir()
                    if p.name not in EARLY_ENTRIES and not p.name.startswith("."))   # ours: lock, temp files
    if others:
        raise BlalmError(f"--out {run_dir} holds files ({', '.join(others[:5])}) but is not a {what} "
                         f"(no {CONFIG_FILE}); choose a new or empty folder")
