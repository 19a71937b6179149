"""Run an experiment's grid: ``blalm sweep EXPERIMENT --out DIR``.

For every track the sweep builds the corpora it needs once (``DIR/corpora/<track>-<name>/corpus``
and ``.../tokenizer``, each built in a temporary folder and moved into place when complete), then
for every run of the grid (``blalm.experiments.config.expand_grid``):

1. trains it in ``DIR/runs/<track>/<run>/seed<N>`` with ``blalm.train.trainer.train`` (in this
   process). A run killed before is resumed from its latest checkpoint, as ``blalm train`` does
   when re-run on the same folder; a complete one returns at once;
2. scores its checkpoints on the fast suite (``blalm.eval.runs.evaluate_run``: every checkpoint,
   or the last ``eval.last``; checkpoints already scored with the same settings are not scored
   again) and selects the best by the paper's average;
3. writes ``sweep_run.json`` into the run folder: the run's settings and its best checkpoint. A
   run whose ``sweep_run.json`` matches its settings is skipped when the sweep is re-run.

``DIR/sweep.json`` lists every run (settings, status, best checkpoint, validation perplexity of
that checkpoint); ``blalm report DIR`` turns it into tables and plots. A run that fails is
recorded as failed and the sweep goes on with the next; the command then exits non-zero.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from blalm.atomic import atomic_dir, read_json, remove_stale_temp, write_json_atomic
from blalm.config import to_dict
from blalm.errors import BlalmError, ConfigError
from blalm.experiments.config import ExperimentConfig, PlannedRun, expand_grid, resolve_path
from blalm.faults import fault_point
from blalm.jobs import Job, run_jobs
from blalm.lock import RunLock
from blalm.run.metrics import checkpoint_val_ppl, read_metrics
from blalm.runinfo import run_info

SWEEP_FILE = "sweep.json"
RUN_DONE_FILE = "sweep_run.json"


def corpus_folder(out_dir: Path, track: str, corpus: str) -> Path:
    return Path(out_dir) / "corpora" / f"{track}-{corpus}"


def prepare_corpus(exp: ExperimentConfig, track: str, name: str, out_dir: Path, data_dir: Path | None,
                   log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """(corpus_dir, tokenizer_dir) of one corpus of a track, built once under ``out_dir/corpora``."""
    from blalm.config import load_config
    from blalm.data.config import CorpusConfig
    from blalm.data.corpus import build_corpus
    from blalm.tokenizer.train import train_tokenizer

    spec = exp.tracks[track].corpora[name]
    folder = corpus_folder(out_dir, track, name)
    if spec.dir:
        corpus_dir = resolve_path(spec.dir)
        if not (corpus_dir / "train.txt").is_file():
            raise ConfigError(f"{exp.source}: tracks.{track}.corpora.{name}.dir = {spec.dir!r}: no train.txt there; "
                              f"build it with 'blalm corpus CONFIG --out {spec.dir}'")
    else:
        corpus_dir = folder / "corpus"
        if not (corpus_dir / "manifest.json").is_file():
            overrides = list(spec.set) + list(exp.corpus_set)
            if data_dir is not None:
                overrides.append(f"data_dir={json.dumps(str(data_dir))}")
            cfg = load_config(CorpusConfig, resolve_path(spec.config), overrides)
            if exp.budget_scale != 1.0:
                cfg = dataclasses.replace(cfg, budget_words=max(1, round(cfg.budget_words * exp.budget_scale)),
                                          dev_words=round(cfg.dev_words * exp.budget_scale))
            log(f"corpus {track}/{name}: building {spec.config} ({cfg.budget_words:,} words) into {corpus_dir}")
            corpus_dir.parent.mkdir(parents=True, exist_ok=True)
            with atomic_dir(corpus_dir) as tmp:
                build_corpus(cfg, tmp, progress=False)
    if spec.tokenizer_dir:
        tokenizer_dir = resolve_path(spec.tokenizer_dir)
        if not (tokenizer_dir / "tokenizer.json").is_file():
            raise ConfigError(f"{exp.source}: tracks.{track}.corpora.{name}.tokenizer_dir = {spec.tokenizer_dir!r}: "
                              f"no tokenizer.json there")
    else:
        tokenizer_dir = folder / "tokenizer"
        if not (tokenizer_dir / "tokenizer_report.json").is_file():
            log(f"corpus {track}/{name}: training a {exp.vocab_size}-token BPE tokenizer into {tokenizer_dir}")
            tokenizer_dir.parent.mkdir(parents=True, exist_ok=True)
            train_tokenizer(corpus_dir, tokenizer_dir, vocab_size=exp.vocab_size, show_progress=False)
    return corpus_dir, tokenizer_dir


def run_overrides(exp: ExperimentConfig, run: PlannedRun, corpus_dir: Path, tokenizer_dir: Path,
                  extra: Sequence[str] = ()) -> list[str]:
    """Every override of one run on its track's training config, in order (see the config module)."""
    return list(run.overrides) + [f"corpus_dir={json.dumps(str(corpus_dir))}",
                                  f"tokenizer_dir={json.dumps(str(tokenizer_dir))}"] + list(extra)


def load_run_config(exp: ExperimentConfig, run: PlannedRun, overrides: Sequence[str]):
    """The run's typed training config, the scale's lr multiplier applied."""
    from blalm.train.config import load_train_config

    cfg = load_train_config(resolve_path(exp.tracks[run.track].train_config), overrides)
    if exp.lr_multiplier != 1.0:
        cfg = dataclasses.replace(cfg, lr=float(f"{cfg.lr * exp.lr_multiplier:.6g}"),
                                  muon_lr=None if cfg.muon_lr is None else float(f"{cfg.muon_lr * exp.lr_multiplier:.6g}"))
    return cfg


def eval_config(exp: ExperimentConfig, data_dir: Path | None, progress: bool = False):
    from blalm.config import from_dict
    from blalm.eval.config import EvalConfig

    e = exp.eval
    eval_dir = e.data_dir or (str(Path(data_dir) / "eval") if data_dir is not None else "")
    return from_dict(EvalConfig, {"suite": e.suite, "tasks": list(e.tasks), "data_dir": eval_dir,
                                  "batch_size": e.batch_size, "device": e.device,
                                  "entity_fast_per_group": e.entity_fast_per_group, "progress": progress},
                     where=f"{exp.source}: eval")


def run_settings(exp: ExperimentConfig, run: PlannedRun, overrides: Sequence[str]) -> dict[str, Any]:
    """What identifies a finished run: its overrides (corpus and tokenizer included), the scale's lr
    multiplier and the evaluation settings."""
    return {"run_id": run.run_id, "train_config": exp.tracks[run.track].train_config, "overrides": list(overrides),
            "lr_multiplier": exp.lr_multiplier, "eval": to_dict(exp.eval)}


def final_checkpoint_intact(run_dir: Path, log: Callable[[str], None]) -> bool:
    """Whether a finished run's latest checkpoint still verifies (else the run is trained again:
    it resumes from its newest good checkpoint and re-does the end)."""
    from blalm.run.checkpoint import read_latest, verify_checkpoint
    from blalm.run.layout import checkpoints_dir

    try:
        latest = read_latest(checkpoints_dir(run_dir))
    except BlalmError as exc:
        problems = [str(exc)]
    else:
        problems = verify_checkpoint(latest) if latest is not None else ["no checkpoint"]
    if problems:
        log(f"{run_dir}: finished before, but its final checkpoint is damaged ({problems[0]}); training it again")
    return not problems


def sweep(exp: ExperimentConfig, out_dir: Path, *, tracks: Sequence[str] = (), runs: Sequence[str] = (),
          train_overrides: Sequence[str] = (), data_dir: Path | None = None, progress: bool = False,
          log: Callable[[str], None] = print, jobs: int = 1, child_args: Sequence[str] = (),
          child: bool = False) -> dict[str, Any]:
    """Train and score every run of the grid that is not finished yet; return (and write) the
    sweep summary, ``out_dir/sweep.json``. One sweep at a time writes ``out_dir`` (its lock).

    ``jobs > 1``: first the runs in up to ``jobs`` child processes (:func:`sweep_in_parallel`, each
    ``blalm sweep CHILD_ARGS --track T --run NAME`` with ``child``), then the sequential pass here
    finds them finished and writes ``sweep.json``. ``child``: one such child: it trains and scores its
    runs under their own run-folder locks, and leaves the sweep folder's lock and ``sweep.json`` to
    the parent."""
    out_dir = Path(out_dir)
    grid = expand_grid(exp, tracks, runs)
    if child:
        return _sweep(exp, out_dir, grid, train_overrides, data_dir, progress, log, write=False)
    with RunLock(out_dir, what="sweep", log=log):
        remove_stale_temp(out_dir)          # what a killed write of sweep.json left
        failed: list[str] = []
        if jobs > 1:
            failed = sweep_in_parallel(exp, grid, out_dir, jobs, child_args, data_dir, log)
            if failed:
                log(f"{len(failed)} job(s) failed: {', '.join(failed)} (see {out_dir / 'logs'})")
        return _sweep(exp, out_dir, grid, train_overrides, data_dir, progress, log, failed_children=failed)


def _sweep(exp: ExperimentConfig, out_dir: Path, grid: list[PlannedRun], train_overrides: Sequence[str],
           data_dir: Path | None, progress: bool, log: Callable[[str], None], write: bool = True,
           failed_children: Sequence[str] = ()) -> dict[str, Any]:
    """The sequential pass: train and score each run of ``grid`` not finished yet. A run in
    ``failed_children`` (its ``--jobs`` child failed) is recorded as failed, not trained here."""
    from blalm.eval.runs import SUMMARY_FILE, evaluate_run
    from blalm.train.trainer import train

    ecfg = eval_config(exp, data_dir, progress=progress)
    previous = read_json(out_dir / SWEEP_FILE) or {}
    records: dict[str, dict[str, Any]] = {r["run_id"]: r for r in previous.get("runs", []) if "run_id" in r}
    summary = {"experiment": exp.name, "title": exp.title, "paper_table": exp.paper_table, "scale": exp.scale,
               "source": exp.source, "experiment_config": to_dict(exp), "runs": [], "run_info": run_info(to_dict(exp))}

    def save() -> None:
        summary["runs"] = list(records.values())
        if write:
            write_json_atomic(out_dir / SWEEP_FILE, summary)

    corpora: dict[tuple[str, str], tuple[Path, Path]] = {}
    failed = 0
    for i, run in enumerate(grid, 1):
        run_dir = run.folder(out_dir)
        head = f"[{i}/{len(grid)}] {run.run_id}"
        record: dict[str, Any] = {"run_id": run.run_id, "track": run.track, "name": run.name, "label": run.label,
                                  "seed": run.seed, "corpus": run.corpus, "paper_key": run.paper_key,
                                  "dir": str(run_dir.relative_to(out_dir)), "overrides": list(run.overrides)}
        try:
            if run.run_id in failed_children:
                raise BlalmError(f"its --jobs child failed (log: {out_dir / 'logs' / child_log_name(run)}); "
                                 f"not trained again in this pass: fix the cause, then re-run the sweep")
            if (run.track, run.corpus) not in corpora:
                corpora[(run.track, run.corpus)] = prepare_corpus(exp, run.track, run.corpus, out_dir, data_dir, log)
            corpus_dir, tokenizer_dir = corpora[(run.track, run.corpus)]
            overrides = run_overrides(exp, run, corpus_dir, tokenizer_dir,
                                      list(train_overrides) + ([] if progress else ["progress=false"]))
            settings = run_settings(exp, run, overrides)
            done = read_json(run_dir / RUN_DONE_FILE)
            skipped = done is not None and done.get("settings") == settings and final_checkpoint_intact(run_dir, log)
            if skipped:
                log(f"{head}: finished before, skipped (best {(done.get('best') or {}).get('checkpoint')})")
            else:
                cfg = load_run_config(exp, run, overrides)
                log(f"{head}: training in {run_dir}")
                started = time.time()
                result = train(cfg, run_dir, log=log)
                fault_point("sweep_run_trained")
                best = None
                if cfg.score_suite != "none":      # scored while it trained: the run's own summary
                    best = (read_json(run_dir / "eval" / SUMMARY_FILE) or {}).get("best")
                    log(f"{head}: every checkpoint scored while training ({cfg.score_suite} suite); "
                        f"the sweep's [eval] is not applied")
                elif exp.eval.enabled:
                    log(f"{head}: scoring checkpoints ({ecfg.suite} suite)")
                    best = evaluate_run(run_dir, ecfg, last=exp.eval.last, log=lambda s: None)["best"]
                fault_point("sweep_run_scored")
                checkpoint = best["checkpoint"] if best else None
                done = {"settings": settings, "status": "done", "best": best,
                        "val_ppl": checkpoint_val_ppl(read_metrics(run_dir, "eval"), checkpoint), "steps": result.get("steps"),
                        "seconds": round(time.time() - started, 1)}
                write_json_atomic(run_dir / RUN_DONE_FILE, done)
                avg = (best or {}).get("average")
                log(f"{head}: done; best {checkpoint} (average {avg:.2f})" if avg is not None else f"{head}: done")
            records[run.run_id] = {**record, **{k: done[k] for k in ("status", "best", "val_ppl", "seconds")
                                                if k in done}, "skipped": skipped}
        except BlalmError as exc:
            failed += 1
            records[run.run_id] = {**record, "status": "failed", "error": str(exc)}
            log(f"{head}: FAILED: {exc}")
        save()
    summary["failed"] = failed
    save()
    return summary


def child_log_name(run: PlannedRun) -> str:
    return f"{run.track}-{run.name}-seed{run.seed}.log"


def sweep_in_parallel(exp: ExperimentConfig, grid: Sequence[PlannedRun], out_dir: Path, jobs: int,
                      child_args: Sequence[str], data_dir: Path | None,
                      log: Callable[[str], None] = print) -> list[str]:
    """Train and score the grid's runs in up to ``jobs`` child processes at once, one per run and
    seed (``blalm sweep --run NAME --track T --set runs.NAME.seeds=[SEED]``), after building the
    corpora here so that no two children build one. Returns the run ids (``track/run/seedN``) of
    the children that failed; the caller (:func:`sweep`, holding the sweep folder's lock) then finds
    every finished run skipped, records the failed ones as failed and writes ``sweep.json``."""
    for track, corpus in dict.fromkeys((run.track, run.corpus) for run in grid):
        prepare_corpus(exp, track, corpus, Path(out_dir), data_dir, log)
    logs = Path(out_dir) / "logs"
    children = [Job(run.run_id, [sys.executable, "-m", "blalm.cli", "sweep", *child_args, "--track", run.track,
                                 "--run", run.name, "--set", f"runs.{run.name}.seeds=[{run.seed}]",
                                 "--child-of", str(os.getpid())],     # it ends when this process does
                    logs / child_log_name(run)) for run in grid]
    codes = run_jobs(children, jobs, log)
    return [run.run_id for run in grid if codes[run.run_id] != 0]
