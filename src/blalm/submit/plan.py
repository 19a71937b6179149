"""What a submission of one training run consists of: :func:`make_plan` reads the run folder
(``config.json``, ``run_info.json``, ``checkpoints/*/state.json``) and resolves the track, the name,
the data folders, the milestone checkpoints of every official revision and the ``main`` checkpoint,
each verified (:func:`check_checkpoints`)."""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blalm.errors import BlalmError, InputError
from blalm.submit.config import SubmitConfig
from blalm.submit.layout import AOA_WORD_FILES, GLUE_DATA, Milestone, map_milestones


@dataclass
class Plan:
    run_dir: Path
    out_dir: Path
    cfg: SubmitConfig
    track: str
    name: str
    eval_dir: Path
    glue_dir: Path
    aoa_words: Path | None             # the official AoA word file, when there is one
    run_config: dict[str, Any]
    run_info: dict[str, Any]
    milestones: list[Milestone]
    main: dict[str, Any]               # the main checkpoint's state.json (+ "path")
    git_date: str                      # author/committer date of every commit (the run's start)

    @property
    def results(self) -> Path:
        return self.out_dir / "results"

    @property
    def repo(self) -> Path:
        return self.out_dir / "model"

    @property
    def work(self) -> Path:
        return self.out_dir / "work"

    def present(self) -> list[Milestone]:
        return [m for m in self.milestones if m.checkpoint is not None]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: not found; {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def _select_main(run_dir: Path, checkpoints: list[dict[str, Any]], main: str) -> dict[str, Any]:
    if main == "final":
        return checkpoints[-1]
    if main == "best":
        summary = _read_json(run_dir / "eval" / "summary.json",
                             f"--main best needs the checkpoint selection of 'blalm eval {run_dir}'; run it first")
        main = (summary.get("best") or {}).get("checkpoint") or ""
        if not main:
            raise InputError(f"{run_dir / 'eval' / 'summary.json'}: no best checkpoint recorded; re-run blalm eval")
    for ckpt in checkpoints:
        if ckpt["name"] == main:
            return ckpt
    names = ", ".join(c["name"] for c in checkpoints)
    raise InputError(f"--main {main}: no such checkpoint in {run_dir / 'checkpoints'} (has: {names}); "
                     f"give final, best or one of these")


def git_date(run_info: dict[str, Any]) -> str:
    """The run's start (``time_utc`` of its run_info.json) in git's ``<unix seconds> +0000`` form."""
    stamp = run_info.get("time_utc") or "1970-01-01T00:00:00Z"
    try:
        seconds = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        seconds = 0
    return f"{seconds} +0000"


def make_plan(run_dir: Path, out_dir: Path, cfg: SubmitConfig) -> Plan:
    from blalm.eval.config import default_eval_dir
    from blalm.run.checkpoint import list_checkpoints
    from blalm.run.layout import CHECKPOINTS as RUN_CHECKPOINTS, CONFIG_FILE as RUN_CONFIG_FILE, is_run_dir

    run_dir, out_dir = Path(run_dir).expanduser().absolute(), Path(out_dir).expanduser().absolute()   # git runs elsewhere
    if not is_run_dir(run_dir):
        raise InputError(f"{run_dir}: not a training run folder (no {RUN_CONFIG_FILE} and {RUN_CHECKPOINTS}/); "
                         f"give the --out folder of 'blalm train'")
    if out_dir.exists() and not out_dir.is_dir():
        raise BlalmError(f"--out {out_dir}: exists and is not a folder; give a folder path")
    if out_dir.resolve() == run_dir.resolve() or run_dir.resolve() in out_dir.resolve().parents:
        raise BlalmError(f"--out {out_dir}: inside the run folder; give a folder outside {run_dir}")
    run_config = _read_json(run_dir / RUN_CONFIG_FILE, "the run folder is incomplete")
    run_info = _read_json(run_dir / "run_info.json", "the run folder is incomplete") \
        if (run_dir / "run_info.json").is_file() else {}
    track = cfg.track or run_config.get("track", "none")
    if track not in ("strict-small", "strict"):
        raise BlalmError(f"{run_dir / RUN_CONFIG_FILE}: the run's track is {track!r}; give --track strict-small "
                         f"or --track strict")
    checkpoints = list_checkpoints(run_dir / RUN_CHECKPOINTS)
    if not checkpoints:
        raise InputError(f"{run_dir}: no complete checkpoint under {RUN_CHECKPOINTS}/ (has the run started?)")
    eval_dir = Path(cfg.data_dir).expanduser() if cfg.data_dir else default_eval_dir()
    if not eval_dir.is_dir():
        raise InputError(f"{eval_dir}: evaluation data folder not found (give --data-dir, or set BLALM_DATA_DIR)")
    aoa = Path(cfg.aoa_words).expanduser() if cfg.aoa_words else \
        next((eval_dir / p for p in AOA_WORD_FILES if (eval_dir / p).is_file()), None)
    if cfg.aoa_words and not aoa.is_file():
        raise InputError(f"--aoa-words {aoa}: not found; give the official cdi_childes.json")
    name = cfg.name or run_dir.resolve().name
    if Path(name).stem != name:
        raise BlalmError(f"{run_dir}: the folder's name {name!r} has a suffix, and the official pipeline keys "
                         f"results by the model's file stem; give --name (e.g. --name {Path(name).stem}-model)")
    plan = Plan(run_dir=run_dir, out_dir=out_dir, cfg=cfg, track=track, name=name,
                eval_dir=eval_dir, glue_dir=Path(cfg.glue_data).expanduser() if cfg.glue_data else eval_dir / GLUE_DATA,
                aoa_words=aoa, run_config=run_config, run_info=run_info,
                milestones=map_milestones(checkpoints, track, float(run_config.get("milestone_scale", 1.0))),
                main=_select_main(run_dir, checkpoints, cfg.main), git_date=git_date(run_info))
    check_checkpoints(plan)
    return plan


def check_checkpoints(plan: Plan) -> None:
    """Every checkpoint the submission exports or scores, verified against its state.json (each file's
    size and SHA-256, ``blalm.run.checkpoint.verify_checkpoint``); a damaged one is refused, by name."""
    from blalm.run.checkpoint import DamagedCheckpoint, verify_checkpoint

    used = {m.checkpoint["path"]: m.revision for m in plan.present()}
    used.setdefault(plan.main["path"], "main")
    for path, revision in used.items():
        problems = verify_checkpoint(Path(path))
        if problems:
            raise DamagedCheckpoint(f"{path}: damaged checkpoint ({revision}): {'; '.join(problems)}. Restore "
                                    f"the folder from a copy, or move it out of checkpoints/ (its revision is then "
                                    f"listed as missing)")
