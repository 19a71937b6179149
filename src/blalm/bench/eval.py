"""``blalm bench eval MODEL``: per-task wall time and sentences/s of the zero-shot suite, and the
official BabyLM 2025 pipeline's time on the same model beside it.

Ours: the suite runs ``repeat`` times in one process (:class:`~blalm.eval.session.EvalSession`):
the first pass is *cold* (data read, zips decrypted, candidates tokenized), later ones *warm* (the
weights in memory to the scores, the figure the issue's targets name). Each task's time is split
into ``read`` / ``tokenize`` / ``score`` (forward passes, log-softmax and gather, one copy back).

The official pipeline (``--official``; the pristine copy in ``../shared/babylm-pipeline``, see its
PROVENANCE.md) runs in a subprocess, all tasks in that one process, each task through the
pipeline's own entry point (``sentence_zero_shot.run.main``, ``reading/run.py`` as ``__main__``)
with ``--backend causal``, timed per task (its time includes loading the model, as each of its
commands does). It reads folders of plain ``.jsonl`` files: the encrypted zips' members are served
through named pipes in a private folder, decrypted in memory, so their plaintext never lands on
disk; entity tracking gets the fast suite's subsample as files. Its imports need ``scipy``, and
``pandas`` + ``statsmodels`` for reading (``deps``: a folder holding them, e.g. a ``pip install
--target``); ``datasets`` and ``aiohttp`` (image tasks only) get stand-in modules when missing.
:func:`run_official` is also what the conformance test runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence



def default_pipeline_dir() -> Path:
    """``$BLALM_PIPELINE_DIR``, else ``babylm-pipeline`` beside the data folder (``../shared``)."""
    from blalm.data.config import default_data_dir

    env = os.environ.get("BLALM_PIPELINE_DIR")
    return Path(env).expanduser() if env else default_data_dir().parent / "babylm-pipeline"


# our task -> (the pipeline's --task, the folder name it reads); reading is a module of its own
OFFICIAL_TASKS = {
    "blimp": ("blimp", "blimp_fast"),
    "blimp_supplement": ("blimp", "supplement_fast"),
    "ewok": ("ewok", "ewok_fast"),
    "wug_adj": ("wug_adj", "wug_adj_nominalization"),
    "wug_past": ("wug_past", "wug_past_tense"),
    "entity_tracking": ("entity_tracking", "entity_tracking_fast"),
    "reading": ("reading", "reading_data.csv"),
}

STANDINS = {
    "datasets": "class Dataset:  # stand-in: the text tasks never use it\n    pass\n\n\n"
                "def load_dataset(*args, **kwargs):\n    raise RuntimeError('datasets is not installed')\n",
    "aiohttp": "class ClientTimeout:  # stand-in: used for image tasks only\n"
               "    def __init__(self, *args, **kwargs):\n        pass\n",
}

DRIVER = r'''
import json, runpy, sys, time
spec = json.loads(open(sys.argv[1]).read())
for job in spec["jobs"]:
    sys.argv = job["argv"]
    t0 = time.perf_counter()
    if job["module"] == "reading":
        runpy.run_module("evaluation_pipeline.reading.run", run_name="__main__")
    else:
        from evaluation_pipeline.sentence_zero_shot.run import main
        main()
    print("BLALM-OFFICIAL " + json.dumps({"task": job["task"], "seconds": time.perf_counter() - t0}), flush=True)
'''


# ---------------------------------------------------------------------------------------------
# The official pipeline's input: plain folders, pipes for the encrypted members
# ---------------------------------------------------------------------------------------------

class PipeServer:
    """Named pipes that hand each reader one text, held in memory only (one reader per pipe)."""

    def __init__(self) -> None:
        self.pipes: list[tuple[Path, threading.Thread]] = []

    def serve(self, path: Path, text: str) -> None:
        os.mkfifo(path, 0o600)

        def write() -> None:
            with open(path, "w", encoding="utf-8") as fh:     # blocks until the reader opens it
                fh.write(text)

        thread = threading.Thread(target=write, daemon=True, name=f"pipe-{path.name}")
        thread.start()
        self.pipes.append((path, thread))

    def close(self) -> None:
        for path, thread in self.pipes:
            if thread.is_alive():     # never read: open it ourselves so that the writer ends
                with contextlib.suppress(OSError):
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                    while os.read(fd, 1 << 16):
                        pass
                    os.close(fd)
            thread.join(timeout=5)
            path.unlink(missing_ok=True)


def _head_lines(lines: Sequence[str], n: int | None) -> list[str]:
    kept = [ln for ln in lines if ln.strip()]
    return kept if n is None else kept[:n]


def _entity_subset(lines: Sequence[str], per_group: int | None) -> list[str]:
    kept, seen = [], {}
    for line in lines:
        if not line.strip():
            continue
        k = json.loads(line)["numops"]
        if per_group is None or seen.get(k, 0) < per_group:
            seen[k] = seen.get(k, 0) + 1
            kept.append(line)
    return kept


def prepare_official_data(cfg: Any, tasks: Sequence[str], folder: Path, pipes: PipeServer,
                          per_file: int | None = None, reading_rows: int | None = None) -> dict[str, Path]:
    """The official pipeline's input for ``tasks`` under ``folder`` (our task -> its ``--data_path``).

    ``per_file``: only the first N records of each file (None: all); entity tracking keeps the fast
    suite's first ``cfg.entity_fast_per_group`` of each (split, numops) group (all on the full suite);
    ``reading_rows``: only the first N rows of the reading data."""
    from blalm.eval.config import EWOK_PASSWORD
    from blalm.eval.data import read_zip_jsonl

    out: dict[str, Path] = {}
    for task in tasks:
        src = cfg.task_path("reading" if task == "reading" else task)
        dst = folder / OFFICIAL_TASKS[task][1]
        if task == "reading":
            lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
            dst.write_text("".join(lines if reading_rows is None else lines[:reading_rows + 1]), encoding="utf-8")
        elif src.suffix == ".zip":
            dst.mkdir(parents=True)
            for member, lines in read_zip_jsonl(src, EWOK_PASSWORD, task):
                pipes.serve(dst / Path(member).name, "".join(ln + "\n" for ln in _head_lines(lines, per_file)))
        else:
            dst.mkdir(parents=True)
            files = sorted(src.glob("*.jsonl")) if src.is_dir() else [src]
            per_group = cfg.entity_fast_per_group if cfg.suite == "fast" else None
            for path in files:
                lines = path.read_text(encoding="utf-8").splitlines()
                kept = _entity_subset(lines, per_group) if task == "entity_tracking" else _head_lines(lines, per_file)
                (dst / path.name).write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
        out[task] = dst
    return out


# ---------------------------------------------------------------------------------------------
# Running it and reading its outputs
# ---------------------------------------------------------------------------------------------

@dataclass
class OfficialRun:
    """What the official pipeline printed and wrote: seconds per task, its output folder."""

    seconds: dict[str, float]
    results_dir: Path
    model_name: str
    log: str = ""
    outputs: dict[str, Path] = field(default_factory=dict)

    def predictions(self, task: str) -> dict[str, Any]:
        return json.loads((self.outputs[task] / "predictions.json").read_text(encoding="utf-8"))

    def report(self, task: str) -> dict[str, float]:
        """The per-group and average numbers of a sentence task's report (2 decimals, as printed)."""
        values = {}
        for line in (self.outputs[task] / "best_temperature_report.txt").read_text(encoding="utf-8").splitlines():
            key, sep, value = line.rpartition(": ")
            if sep and not line.startswith("TEMPERATURE"):
                with contextlib.suppress(ValueError):
                    values[key] = float(value)
        lines = (self.outputs[task] / "best_temperature_report.txt").read_text(encoding="utf-8").splitlines()
        values["__average__"] = float(lines[-1] if lines[-1].strip() else lines[-2])
        return values

    def reading_scores(self) -> dict[str, float]:
        """Eye tracking and self-paced reading from the pipeline's regression records (unrounded)."""
        folder = self.outputs["reading"]

        def records(name: str) -> dict[str, dict[str, Any]]:
            rows = [json.loads(ln) for ln in (folder / name).read_text(encoding="utf-8").splitlines() if ln.strip()]
            return {r["Predicted variable"]: r for r in rows}

        def gain(rec: dict[str, Any]) -> float:
            base = rec["R2"] - rec["Change in R2 from baseline"]
            return rec["Change in R2 from baseline"] / (1 - base) * 100

        eye = records("predictive_power.jsonl")
        spr = records("predictive_power_spillover.jsonl")
        rts = [gain(r) for k, r in eye.items() if "RT" in k]
        return {"eye_tracking": sum(rts) / len(rts), "self_paced_reading": gain(spr["self_paced_reading_time"])}


def official_env(pipeline: Path, deps: Path | None, standins: Path) -> dict[str, str]:
    """PYTHONPATH: the pipeline, its extra dependencies, stand-ins for what only image tasks use."""
    standins.mkdir(parents=True, exist_ok=True)
    deps = Path(deps).resolve() if deps else None
    probe = [p for p in (str(deps),) if deps] + sys.path
    for name, code in STANDINS.items():
        found = subprocess.run([sys.executable, "-c", f"import {name}"], env={**os.environ,
                               "PYTHONPATH": os.pathsep.join(probe)}, capture_output=True).returncode == 0
        if not found:
            (standins / f"{name}.py").write_text(code, encoding="utf-8")
    paths = [str(pipeline)] + ([str(deps)] if deps else []) + [str(standins)]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])),
            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def run_official(model_dir: Path, data: dict[str, Path], workdir: Path, pipeline: Path | None = None,
                 deps: Path | None = None, timeout: float = 3600, batch_size: int = 64) -> OfficialRun:
    """Run the official pipeline on the HF folder ``model_dir`` for every task of ``data`` (see
    :func:`prepare_official_data`) in one subprocess; raise RuntimeError with its output on failure."""
    from blalm.errors import InputError

    pipeline = Path(pipeline) if pipeline is not None else default_pipeline_dir()
    if not (pipeline / "evaluation_pipeline").is_dir():
        raise InputError(f"{pipeline}: the official BabyLM pipeline is not there (see ../shared/babylm-pipeline)")
    results = workdir / "results"
    jobs = []
    for task, path in data.items():
        name = "reading" if task == "reading" else "sentence_zero_shot"
        argv = [f"evaluation_pipeline.{name}.run", "--model_path_or_name", str(model_dir), "--backend", "causal",
                "--data_path", str(path), "--output_dir", str(results)]
        if task != "reading":
            argv += ["--task", OFFICIAL_TASKS[task][0], "--save_predictions", "--batch_size", str(batch_size)]
        jobs.append({"task": task, "module": "reading" if task == "reading" else "zero_shot", "argv": argv})
    (workdir / "driver.py").write_text(DRIVER, encoding="utf-8")
    (workdir / "jobs.json").write_text(json.dumps({"jobs": jobs}), encoding="utf-8")
    env = official_env(pipeline, deps, workdir / "standins")
    proc = subprocess.run([sys.executable, str(workdir / "driver.py"), str(workdir / "jobs.json")], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"the official pipeline failed (exit {proc.returncode}):\n{log[-4000:]}")
    seconds = {json.loads(ln.split(" ", 1)[1])["task"]: json.loads(ln.split(" ", 1)[1])["seconds"]
               for ln in proc.stdout.splitlines() if ln.startswith("BLALM-OFFICIAL ")}
    model_name = Path(str(model_dir)).stem
    base = results / model_name / "main" / "zero_shot" / "causal"
    outputs = {t: base / "reading" if t == "reading" else base / OFFICIAL_TASKS[t][0] / data[t].stem for t in data}
    return OfficialRun(seconds=seconds, results_dir=results, model_name=model_name, log=log, outputs=outputs)


@contextlib.contextmanager
def official_workdir(root: Path) -> Iterator[tuple[Path, PipeServer]]:
    """A private folder for one official run (and its pipes), removed afterwards."""
    import shutil

    folder = Path(root).resolve() / f"official-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True, mode=0o700)
    pipes = PipeServer()
    try:
        yield folder, pipes
    finally:
        pipes.close()
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Ours, timed
# ---------------------------------------------------------------------------------------------

def _sentences(res: dict[str, Any]) -> int | None:
    """Candidate sentences (or reading rows) a task scored."""
    return res.get("n_sentences") or res.get("n_items") or res.get("n_rows")


def bench_ours(model_path: Path, cfg: Any, repeat: int = 2, log: Callable[[str], None] = lambda s: None
               ) -> list[dict[str, Any]]:
    """One JSON row per (pass, task): seconds, sentences/s, the read/tokenize/score split, the score."""
    from blalm.eval.session import EvalSession
    from blalm.eval.suite import evaluate_model

    session = EvalSession()
    rows = []
    for k in range(repeat):
        report = evaluate_model(model_path, cfg, log=log, session=session)
        label = "cold" if k == 0 else "warm"
        rows.append({"bench": "eval", "impl": "blalm", "pass": label, "task": "load", "seconds": report["seconds_load"]})
        for task, res in report["tasks"].items():
            if res.get("status") != "ok" or task in ("glue", "aoa"):
                continue
            n = _sentences(res)
            rows.append({"bench": "eval", "impl": "blalm", "pass": label, "task": task, "seconds": res["seconds"],
                         "sentences": n, "sentences_per_s": round(n / res["seconds"], 1) if n and res["seconds"] else None,
                         "timings": res.get("timings"), "score": res.get("score")})
        rows.append({"bench": "eval", "impl": "blalm", "pass": label, "task": "total", "seconds": report["seconds"],
                     "device": report["device"], "precision": cfg.precision, "suite": cfg.suite})
    return rows


def profile_ours(model_path: Path, cfg: Any, row_limit: int = 25, trace: Path | None = None,
                 log: Callable[[str], None] = lambda s: None) -> str:
    """A torch-profiler table of one warm pass over the suite (after a cold one that reads, tokenizes
    and loads): where the scoring time goes."""
    from blalm.bench import profiler_table
    from blalm.eval.session import EvalSession
    from blalm.eval.suite import evaluate_model

    session = EvalSession()
    report = evaluate_model(model_path, cfg, log=log, session=session)
    return profiler_table(lambda: evaluate_model(model_path, cfg, log=log, session=session), report["device"],
                          row_limit, trace)


def format_bench_table(rows: Sequence[dict[str, Any]]) -> str:
    """Task | ours cold | ours warm | official, in seconds (sentences/s of the warm pass)."""
    tasks: list[str] = []
    cell: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["task"] not in tasks:
            tasks.append(r["task"])
        cell[(r["task"], r["impl"] + ":" + r.get("pass", ""))] = r
    cols = [("blalm:cold", "blalm cold s"), ("blalm:warm", "blalm warm s"), ("official:", "official s")]
    head = ["task"] + [c[1] for c in cols] + ["sentences/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for t in tasks:
        vals = [f"{cell[(t, key)]['seconds']:.2f}" if cell.get((t, key), {}).get("seconds") is not None else "-"
                for key, _ in cols]
        rate = cell.get((t, "blalm:warm"), cell.get((t, "blalm:cold"), {})).get("sentences_per_s")
        lines.append("| " + " | ".join([t] + vals + [f"{rate:,.0f}" if rate else "-"]) + " |")
    return "\n".join(lines)


def bench_official(model_path: Path, cfg: Any, workroot: Path, pipeline: Path | None = None,
                   deps: Path | None = None) -> list[dict[str, Any]]:
    """The official pipeline's seconds per task on ``model_path`` (a blalm checkpoint is exported to
    a Hugging Face folder first), as JSON rows."""
    from blalm.eval.config import expand_tasks
    from blalm.model.checkpoint import is_model_checkpoint

    wanted = [t for t in expand_tasks(cfg.tasks) if t in OFFICIAL_TASKS]
    if any(t in ("eye_tracking", "self_paced_reading") for t in expand_tasks(cfg.tasks)):
        wanted.append("reading")
    notes = []
    if "reading" in wanted and not _importable(["pandas", "statsmodels"], deps):
        wanted.remove("reading")
        notes.append({"bench": "eval", "impl": "official", "pass": "", "task": "reading", "seconds": None,
                      "skipped": "pandas and statsmodels are not importable (give --official-deps DIR)"})
    with official_workdir(workroot) as (folder, pipes):
        model_dir = Path(model_path)
        if is_model_checkpoint(model_dir):
            from blalm.model.export import export_hf

            model_dir = export_hf(model_dir, folder / "export")
        data = prepare_official_data(cfg, wanted, folder / "data", pipes)
        t0 = time.perf_counter()
        run = run_official(model_dir, data, folder, pipeline=pipeline, deps=deps)
        total = time.perf_counter() - t0
    rows = [{"bench": "eval", "impl": "official", "pass": "", "task": t, "seconds": round(s, 2)}
            for t, s in run.seconds.items()]
    rows.append({"bench": "eval", "impl": "official", "pass": "", "task": "total", "seconds": round(total, 2)})
    return rows + notes


def _importable(modules: Sequence[str], deps: Path | None) -> bool:
    paths = ([str(Path(deps).resolve())] if deps else []) + sys.path
    code = "; ".join(f"import {m}" for m in modules)
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
                          capture_output=True).returncode == 0
