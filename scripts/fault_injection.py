#!/usr/bin/env python3
"""Fault injection over the real commands: kill, damage and double-start every stage that writes a
run folder, re-run it, and check the outcome against an uninterrupted reference.

    scripts/fault_injection.py --out out/faults [--table docs/results/reliability.md] [--seed 0]
        [--stages train,finetune,corpus,tokenizer,sweep,submit] [--kinds kill,timed,corrupt,writers]
        [--moments 3] [--points step_backward,...]

For each stage (tiny CPU settings on a slice of ../shared/data, built here with the CLI):

- **kill**: the stage is run once with ``BLALM_FAULT_LOG`` to count how often it passes each named
  fault point (:mod:`blalm.faults`); for every point reached, ``--moments`` random passes are
  chosen and the stage is killed there (SIGKILL, ``BLALM_FAULT=POINT@N``), then re-run;
- **timed**: killed at ``--moments`` random wall-clock moments of its reference duration, re-run;
- **corrupt**: every kind of file the stage writes is cut to 2/3 of its size, or has one random byte
  flipped, in a copy of a half-finished (train, finetune) or finished (others) output; re-run;
- **writers**: two processes of the same command into the same --out at once: the second is started
  once the first holds its lock, and the first is paused (SIGSTOP) until the second has ended, so
  that the two overlap whatever the machine's speed.

``submit`` (``blalm submit`` of the tiny run, on the test suite's small evaluation folder in the
official layout, ``tests/submit_fixtures.py``) has kill cases at its ``submit_piece`` point, timed
kills and two writers (it locks its --out); no damage cases: what it reads is the run's (the train
stage's cases), and it verifies every checkpoint it reads.

Outcome of each case: **resumed identical** (the re-run succeeded and its outputs equal the
reference's: checkpoints bit for bit, metrics, results, corpus and tokenizer files),
**clean refusal** (exit 2, one message, no traceback, nothing deleted), or a failure with the
differences. ``nothing lost`` says the damaged or half-written data still exists (set aside) or was
re-created identically.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from safetensors.torch import load_file  # noqa: E402
import torch  # noqa: E402

from blalm.run import checkpoint as ckpt  # noqa: E402
from blalm.run.metrics import read_metrics  # noqa: E402

DEMO_TRAIN = REPO_ROOT / "configs" / "train" / "demo.toml"
TINY_TRAIN = {"model.hidden_size": 32, "model.intermediate_size": 64, "model.num_layers": 2, "model.num_heads": 2,
              "model.chunk_size": 16, "model.swa_window": 8, "context_length": 32, "global_batch": 8,
              "micro_batch": 4, "epochs": 1, "max_steps": 24, "lr": 3e-3, "milestone_scale": 0.0005,
              "eval_max_blocks": 8, "log_every": 1, "progress": False, "device": "cpu", "seed": 1}
TINY_CORPUS = REPO_ROOT / "configs" / "corpus" / "tiny.toml"   # 6k words, seconds to build
VOLATILE = ("seconds", "task_seconds", "run_info", "time_utc", "command")   # keys that differ run to run


@dataclass
class Case:
    stage: str
    kind: str
    fault: str
    outcome: str
    ok: bool
    nothing_lost: bool
    detail: str = ""


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def sets(values: dict) -> list[str]:
    return [a for k, v in values.items() for a in ("--set", f"{k}={toml_value(v)}")]


def blalm_env(fault: str | None = None, log: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BLALM_FAULT", "BLALM_FAULT_LOG")}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")})
    if fault:
        env["BLALM_FAULT"] = fault
    if log:
        env["BLALM_FAULT_LOG"] = str(log)
    return env


def run_blalm(argv: list[str], fault: str | None = None, log: Path | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blalm.cli", *argv], env=blalm_env(fault, log), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def popen_blalm(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "blalm.cli", *argv], env=blalm_env(), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ----------------------------------------------------------------------------------------------
# comparing outputs


def strip_volatile(data):
    if isinstance(data, dict):
        return {k: strip_volatile(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [strip_volatile(v) for v in data]
    return data


def same_tensors(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def compare_checkpoints(ref: Path, out: Path, files: tuple[str, ...] = ("model.safetensors",)) -> list[str]:
    want, got = ckpt.list_checkpoints(ref / "checkpoints"), ckpt.list_checkpoints(out / "checkpoints")
    diffs = []
    if [c["name"] for c in want] != [c["name"] for c in got]:
        diffs.append(f"{out.name}: checkpoints {[c['name'] for c in got]} != {[c['name'] for c in want]}")
        return diffs
    for c in want:
        for name in files:
            if not same_tensors(Path(c["path"]) / name, out / "checkpoints" / c["name"] / name):
                diffs.append(f"{c['name']}/{name} differs")
        if ckpt.verify_checkpoint(out / "checkpoints" / c["name"]):
            diffs.append(f"{c['name']} does not verify")
    return diffs


def compare_metrics(ref: Path, out: Path, kinds=("train", "eval", "valid")) -> list[str]:
    diffs = []
    for kind in kinds:
        a = [strip_volatile(r) for r in read_metrics(ref, kind)]
        b = [strip_volatile(r) for r in read_metrics(out, kind)]
        a = [{k: v for k, v in r.items() if k not in ("tokens_per_s",)} for r in a]
        b = [{k: v for k, v in r.items() if k not in ("tokens_per_s",)} for r in b]
        if a != b:
            diffs.append(f"metrics.jsonl '{kind}' records differ ({len(b)} vs {len(a)})")
    return diffs


def compare_files(ref: Path, out: Path, names: list[str], json_names: tuple[str, ...] = ()) -> list[str]:
    diffs = []
    for name in names:
        a, b = ref / name, out / name
        if not b.is_file():
            diffs.append(f"{name} missing")
        elif name in json_names:   # paths inside name the output folder: compared as OUT
            x = json.loads(a.read_text().replace(str(ref.resolve()), "OUT").replace(str(ref), "OUT"))
            y = json.loads(b.read_text().replace(str(out.resolve()), "OUT").replace(str(out), "OUT"))
            if strip_volatile(x) != strip_volatile(y):
                diffs.append(f"{name} differs")
        elif a.read_bytes() != b.read_bytes():
            diffs.append(f"{name} differs")
    return diffs


def leftovers(out: Path) -> list[str]:
    """Temporary files or folders a kill left that the re-run did not clean: in ``out``, and beside it
    (``.OUT.*``, a folder built beside its target and swapped in; ``.OUT.lock`` is the lock's file)."""
    inside = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                    if (p.name.startswith(".tmp-") or p.name.endswith(".tmp") or ".tmp-" in p.name)
                    and ".damaged-" not in str(p))
    beside = sorted(p.name for p in out.parent.glob(f".{glob.escape(out.name)}.*") if p.name != f".{out.name}.lock")
    return inside + beside


# ----------------------------------------------------------------------------------------------
# the stages


class Stage:
    """A command, how to compare its output with the reference's, and what files it writes."""

    name = ""

    def __init__(self, work: Path, inputs: dict[str, Path]) -> None:
        self.work, self.inputs = work, inputs

    def prepare(self) -> None:
        """Inputs of this stage alone, made before its reference run."""

    def argv(self, out: Path) -> list[str]:
        raise NotImplementedError

    def compare(self, ref: Path, out: Path) -> list[str]:
        raise NotImplementedError

    def damage_targets(self, out: Path) -> list[tuple[str, Path]]:
        """(label, path) of every kind of file the stage writes, in a half-finished or finished ``out``."""
        raise NotImplementedError

    half_fault: str | None = None     # the kill that makes the half-finished output damage cases start from
    kinds = frozenset({"kill", "timed", "corrupt", "writers"})   # the case kinds that apply
    kill_points: frozenset[str] | None = None                    # the fault points to kill at (None: all)

    def lock_file(self, out: Path) -> Path:
        """The file whose lock a writer into ``out`` holds (``blalm.lock``)."""
        return out / ".lock"


def latest_checkpoint(run_dir: Path) -> Path:
    return ckpt.read_latest(run_dir / "checkpoints")


class TrainStage(Stage):
    name = "train"
    half_fault = "step_backward@30"      # killed in step 15 of 24

    def argv(self, out: Path) -> list[str]:
        values = {**TINY_TRAIN, "corpus_dir": str(self.inputs["corpus"]), "tokenizer_dir": str(self.inputs["tokenizer"]),
                  "token_cache": "run"}
        return ["train", str(DEMO_TRAIN), "--out", str(out), *sets(values)]

    def compare(self, ref: Path, out: Path) -> list[str]:
        return compare_checkpoints(ref, out, ("model.safetensors",)) + compare_metrics(ref, out) + \
            compare_files(ref, out, ["config.json"], ("config.json",))

    def damage_targets(self, out: Path) -> list[tuple[str, Path]]:
        latest = latest_checkpoint(out)
        cache = next((out / "tokens").iterdir())
        return [(f"checkpoint {name}", latest / name) for name in
                ("model.safetensors", "optimizer.safetensors", "state.json", "model_config.json", "tokenizer.json")] + \
            [("checkpoints/latest", out / "checkpoints" / "latest"), ("metrics.jsonl", out / "metrics.jsonl"),
             ("config.json", out / "config.json"), ("tokenizer copy", out / "tokenizer" / "tokenizer.json"),
             ("token cache train.u16", cache / "train.u16"), ("token cache meta.json", cache / "meta.json")]


class FinetuneStage(Stage):
    name = "finetune"
    half_fault = "step_backward@5"

    def argv(self, out: Path) -> list[str]:
        values = {"max_train": 16, "max_valid": 8, "batch_size": 4, "epochs": 2, "max_length": 40, "lr": 1e-3,
                  "save_every": 3, "log_every": 1, "device": "cpu"}
        return ["finetune", str(self.inputs["model"]), "--tasks", "rte,mrpc", "--out", str(out), "--data-dir",
                str(self.inputs["glue"]), *sets(values)]

    def compare(self, ref: Path, out: Path) -> list[str]:
        diffs = compare_files(ref, out, ["results.json"], ("results.json",))
        for task in ("rte", "mrpc"):
            diffs += [f"{task}: {d}" for d in compare_files(ref / task, out / task, ["results.json"], ("results.json",))]
            diffs += [f"{task}: {d}" for d in compare_metrics(ref / task, out / task, ("train", "valid"))]
            a, b = latest_checkpoint(ref / task), latest_checkpoint(out / task)
            for name in ("model.safetensors", "head.safetensors"):
                if b is None or not same_tensors(a / name, b / name):
                    diffs.append(f"{task}: final {name} differs")
        return diffs

    def damage_targets(self, out: Path) -> list[tuple[str, Path]]:
        latest = latest_checkpoint(out / "rte")
        return [(f"rte checkpoint {n}", latest / n) for n in
                ("model.safetensors", "head.safetensors", "optimizer.safetensors", "state.json")] + \
            [("rte metrics.jsonl", out / "rte" / "metrics.jsonl"), ("rte config.json", out / "rte" / "config.json")]

    def lock_file(self, out: Path) -> Path:
        return out / "rte" / ".lock"        # one lock per task folder, rte first


class CorpusStage(Stage):
    name = "corpus"

    def argv(self, out: Path) -> list[str]:
        return ["corpus", str(self.inputs["corpus_toml"]), "--out", str(out), "--data-dir", str(self.inputs["data"]),
                "--quiet"]

    def compare(self, ref: Path, out: Path) -> list[str]:
        return compare_files(ref, out, ["train.txt", "dev.txt", "manifest.json"], ("manifest.json",))

    def damage_targets(self, out: Path) -> list[tuple[str, Path]]:
        return [(n, out / n) for n in ("train.txt", "dev.txt", "manifest.json", "run_info.json")]

    def lock_file(self, out: Path) -> Path:
        return out.parent / f".{out.name}.lock"   # beside: the folder is swapped in whole


class TokenizerStage(Stage):
    name = "tokenizer"

    def argv(self, out: Path) -> list[str]:
        return ["tokenizer", str(self.inputs["corpus"]), "--vocab-size", "500", "--out", str(out), "--no-progress"]

    def compare(self, ref: Path, out: Path) -> list[str]:
        return compare_files(ref, out, ["tokenizer.json", "tokenizer_config.json", "tokenizer_report.json"],
                             ("tokenizer_report.json",))

    def damage_targets(self, out: Path) -> list[tuple[str, Path]]:
        return [(n, out / n) for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer_report.json")]

    lock_file = CorpusStage.lock_file


class SweepStage(Stage):
    name = "sweep"

    def argv(self, out: Path) -> list[str]:
        return ["sweep", str(self.inputs["experiment"]), "--out", str(out)]

    def compare(self, ref: Path, out: Path) -> list[str]:
        diffs = []
        a, b = json.loads((ref / "sweep.json").read_text()), json.loads((out / "sweep.json").read_text())
        keep = ("run_id", "status", "best", "val_ppl")
        if [{k: r.get(k) for k in keep} for r in a["runs"]] != [{k: r.get(k) for k in keep} for r in b["runs"]]:
            diffs.append("sweep.json runs differ")
        for run in ("adamw", "muon"):
            folder = Path("runs") / "strict" / run / "seed0"
            diffs += [f"{run}: {d}" for d in compare_checkpoints(ref / folder, out / folder)]
        return diffs

    def damage_targets(self, out: Path) -> list[tuple[str, Path]]:
        run = out / "runs" / "strict" / "muon" / "seed0"
        return [("sweep.json", out / "sweep.json"), ("sweep_run.json", run / "sweep_run.json"),
                ("a run's final checkpoint model.safetensors", latest_checkpoint(run) / "model.safetensors")]


def submission_files(out: Path) -> dict[str, bytes]:
    """Every file of a submission folder, as tests/test_submit.py compares them: not the model
    repository's .git (its branches and commits are compared with ``git for-each-ref``), not
    work/glue (blalm finetune's run folders, with wall times) nor work/run_info.json; README.md with
    its own folder's path taken out."""
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(("model/.git/", "work/glue/")) and rel != "work/run_info.json":
            data = path.read_bytes()
            files[rel] = data.replace(str(out.resolve()).encode(), b"OUT") if rel == "README.md" else data
    return files


def git_refs(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "for-each-ref"], capture_output=True, text=True).stdout


class SubmitStage(Stage):
    name = "submit"
    kinds = frozenset({"kill", "timed", "writers"})   # no damage cases: what it reads is the run's
    kill_points = frozenset({"submit_piece"})

    def prepare(self) -> None:
        """The test suite's small evaluation folder in the official layout, every task (its GLUE too)."""
        sys.path.insert(0, str(REPO_ROOT / "tests"))
        from submit_fixtures import make_submit_eval

        self.inputs["submit_eval"] = make_submit_eval(self.inputs["data"] / "eval", self.work / "eval",
                                                      self.inputs["corpus"] / "dev.txt")

    def argv(self, out: Path) -> list[str]:
        # absolute paths: blalm submit fails with a relative --out (its git --work-tree is taken
        # relative to the model repository: src/blalm/submit/repo.py)
        return ["submit", str(self.inputs["model_run"].resolve()), "--out", str(out.resolve()), "--name", "tiny",
                "--eval-data", str(self.inputs["submit_eval"].resolve()), "--device", "cpu", "--quiet",
                "--finetune-set", "max_train=8", "--finetune-set", "epochs=1"]

    def compare(self, ref: Path, out: Path) -> list[str]:
        a, b = submission_files(ref), submission_files(out)
        diffs = [f"files only in one: {sorted(set(a) ^ set(b))[:4]}"] if a.keys() != b.keys() else []
        diffs += [f"{name} differs" for name in sorted(a.keys() & b.keys()) if a[name] != b[name]]
        if git_refs(ref / "model") != git_refs(out / "model"):
            diffs.append("model repository: branches or commits differ")
        return diffs


def build_inputs(work: Path, data_dir: Path) -> dict[str, Path]:
    """The corpus, tokenizer, a model checkpoint and an experiment config the stages run on."""
    inputs = {"data": data_dir, "glue": data_dir / "eval" / "full_eval" / "glue_filtered"}
    inputs["corpus_toml"] = TINY_CORPUS
    inputs["corpus"], inputs["tokenizer"] = work / "inputs" / "corpus", work / "inputs" / "tokenizer"
    for argv in (CorpusStage(work, inputs).argv(inputs["corpus"]), TokenizerStage(work, inputs).argv(inputs["tokenizer"])):
        done = run_blalm(argv)
        if done.returncode:
            raise SystemExit(f"building the inputs failed: {' '.join(argv)}\n{done.stderr[-3000:]}")
    model_run = work / "inputs" / "model_run"
    done = run_blalm(TrainStage(work, inputs).argv(model_run))
    if done.returncode:
        raise SystemExit(f"training the model for finetune failed:\n{done.stderr[-3000:]}")
    inputs["model_run"], inputs["model"] = model_run, latest_checkpoint(model_run)
    train = {**{k: v for k, v in TINY_TRAIN.items() if k not in ("progress", "seed")}, "token_cache": "run"}
    inputs["experiment"] = work / "experiment.toml"
    inputs["experiment"].write_text(
        f'name = "faults"\nseeds = [0]\nvocab_size = 500\n[tracks.strict]\n'
        f'train_config = {json.dumps(str(DEMO_TRAIN))}\n'
        f'set = {json.dumps([f"{k}={toml_value(v)}" for k, v in train.items()])}\n'
        f'[tracks.strict.corpora.c]\ndir = {json.dumps(str(inputs["corpus"]))}\n'
        f'tokenizer_dir = {json.dumps(str(inputs["tokenizer"]))}\n'
        f'[runs.adamw]\nset = ["optimizer=\\"adamw\\""]\n[runs.muon]\nset = ["optimizer=\\"muon\\""]\n'
        f'[eval]\nenabled = false\n')
    return inputs


# ----------------------------------------------------------------------------------------------
# the cases


def rerun_outcome(stage: Stage, ref: Path, out: Path, before: set[str] | None = None) -> tuple[str, bool, bool, str]:
    """Re-run the stage on ``out``: (outcome, ok, nothing lost, detail)."""
    done = run_blalm(stage.argv(out))
    text = done.stdout + done.stderr
    notes = [ln.strip().replace(str(out) + "/", "").replace(str(out), "OUT") for ln in text.splitlines()
             if "skipped:" in ln or "set aside" in ln or "damaged" in ln or "cleared away" in ln]
    if "took over the lock" in text:
        notes.append("the killed process's lock taken over")
    if done.returncode == 0:
        diffs = stage.compare(ref, out)
        if diffs:
            return "DIFFERS from the reference", False, False, "; ".join(diffs[:4])
        left = leftovers(out)
        detail = "; ".join(notes[:2] + ([f"temporary files left: {', '.join(left[:3])}"] if left else []))
        return "resumed identical", True, True, detail
    error = next((ln for ln in done.stderr.splitlines() if ": error: " in ln), "")
    if done.returncode == 2 and "Traceback" not in done.stderr and error:
        kept = before is None or before <= inventory(out)
        return "clean refusal", True, kept, error.split(": error: ", 1)[1][:160]
    return f"FAILED (exit {done.returncode})", False, False, done.stderr.strip().splitlines()[-1][:200] \
        if done.stderr.strip() else ""


def inventory(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


class ReferenceFailed(Exception):
    """A stage's uninterrupted run failed: nothing to compare its faults with."""


def count_points(stage: Stage, work: Path) -> tuple[Counter, float]:
    """How often the stage passes each fault point, and how long it runs (its reference run)."""
    log = work / f"{stage.name}.points"
    log.unlink(missing_ok=True)
    t0 = time.time()
    done = run_blalm(stage.argv(work / f"{stage.name}-counted"), log=log)
    if done.returncode:
        raise ReferenceFailed(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return Counter(log.read_text().split()), time.time() - t0


def kill_cases(stage: Stage, ref: Path, counts: Counter, rng: random.Random, moments: int,
               points: set[str] | None) -> list[Case]:
    cases = []
    for point, n in sorted(counts.items()):
        if (points and point not in points) or (stage.kill_points is not None and point not in stage.kill_points):
            continue
        for k in sorted(rng.sample(range(1, n + 1), min(moments, n))):
            out = stage.work / f"{stage.name}-kill-{point}-{k}"
            killed = run_blalm(stage.argv(out), fault=f"{point}@{k}")
            fault = f"kill -9 at {point} (pass {k} of {n})"
            if killed.returncode != -signal.SIGKILL:
                cases.append(Case(stage.name, "kill", fault, f"not killed (exit {killed.returncode})", False, False,
                                  killed.stderr[-200:]))
                continue
            cases.append(Case(stage.name, "kill", fault, *rerun_outcome(stage, ref, out)))
    return cases


def timed_cases(stage: Stage, ref: Path, seconds: float, rng: random.Random, moments: int) -> list[Case]:
    cases = []
    for i in range(moments):
        delay = rng.uniform(0.1, 1.0) * seconds
        out = stage.work / f"{stage.name}-timed-{i}"
        proc = popen_blalm(stage.argv(out))
        try:
            proc.wait(timeout=delay)
            fault = f"kill -9 at {delay:.1f} s (it had finished)"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            fault = f"kill -9 at {delay:.1f} s of ~{seconds:.0f} s"
        cases.append(Case(stage.name, "timed", fault, *rerun_outcome(stage, ref, out)))
    return cases


def damage(path: Path, how: str, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) * 2 // 3]))
        return f"cut to {len(data) * 2 // 3:,} of {len(data):,} bytes"
    offset = rng.randrange(len(data))
    data[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"one bit flipped at byte {offset:,} of {len(data):,}"


def corrupt_cases(stage: Stage, ref: Path, rng: random.Random) -> list[Case]:
    """Damage each kind of file in a copy of a half-finished (or the finished) output, then re-run."""
    base = stage.work / f"{stage.name}-base"
    if not base.exists():
        shutil.copytree(ref, base) if stage.half_fault is None else run_blalm(stage.argv(base), fault=stage.half_fault)
    cases = []
    for label, _ in stage.damage_targets(base):
        for how in ("truncate", "flip"):
            out = stage.work / f"{stage.name}-{how}-{label.replace(' ', '_').replace('/', '_')}"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, out, symlinks=True)
            target = dict(stage.damage_targets(out))[label]
            what = damage(target, how, rng)
            before = inventory(out)
            cases.append(Case(stage.name, "corrupt", f"{how} {label} ({what})", *rerun_outcome(stage, ref, out, before)))
    return cases


def wait_until_locked(lock_file: Path, proc: subprocess.Popen, timeout: float = 600) -> bool:
    """Whether ``proc`` came to hold the lock of ``lock_file`` (the file names its pid) before it ended."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if json.loads(lock_file.read_text() or "{}").get("pid") == proc.pid:
                return True
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.005)
    return False


def writers_case(stage: Stage, ref: Path) -> list[Case]:
    """Two writers into one --out: the second starts once the first holds the lock, and the first is
    paused (SIGSTOP) until the second has ended, so that they overlap whatever the timing."""
    out, fault = stage.work / f"{stage.name}-writers", "two processes into one --out at once"
    first = popen_blalm(stage.argv(out))
    if not wait_until_locked(stage.lock_file(out), first):
        first.communicate()
        return [Case(stage.name, "writers", fault, "FAILED (the first writer held no lock)", False,
                     first.returncode == 0 and not stage.compare(ref, out), f"no holder in {stage.lock_file(out)}")]
    first.send_signal(signal.SIGSTOP)
    try:
        second = run_blalm(stage.argv(out))
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=900)
    diffs = stage.compare(ref, out) if first.returncode == 0 else [f"the first writer failed (exit {first.returncode})"]
    error = next((ln for ln in second.stderr.splitlines() if ": error: " in ln), "")
    if (first.returncode, second.returncode) == (0, 2) and not diffs and "Traceback" not in second.stderr:
        named = f"pid {first.pid} on host " in error
        return [Case(stage.name, "writers", fault, "clean refusal of the second" + ("" if named else " (holder not named)"),
                     named, True, error[:160])]
    crashed = [err.strip().splitlines()[-1] for err in (first_err, second.stderr) if "Traceback" in err]
    return [Case(stage.name, "writers", fault, f"FAILED (exits {first.returncode}, {second.returncode})", False,
                 not diffs, "; ".join(crashed[:1] + diffs[:3])[:240])]


# ----------------------------------------------------------------------------------------------
# the report


WHAT_RUNS = """What runs: `scripts/fault_injection.py` builds a 6k-word corpus from `../shared/data`, a 500-token
tokenizer and a tiny BLaLM (2 layers, hidden 32, 24 steps of 8 x 32 tokens), then, for each stage
(`blalm train`, `blalm finetune` on rte + mrpc, `blalm corpus`, `blalm tokenizer`, `blalm sweep` of two
runs, `blalm submit` of the tiny run), kills it with SIGKILL at every named fault point it passes
(`blalm.faults`, 3 random passes of each; submit: its `submit_piece` point) and at 3 random moments,
damages every kind of file it writes (cut to 2/3, or one random bit flipped; not submit: what it reads
is the run's) and starts two of it into one `--out` (the second once the first holds the lock, the
first paused meanwhile; not submit: it holds no lock); each time it re-runs the stage and compares with
an uninterrupted run. For corpus and tokenizer a re-run rebuilds from the inputs, so *resumed
identical* means *rebuilt identical*; submit's outputs are compared file by file and commit by commit
(as `tests/test_submit.py` does). `tests/test_fault_injection.py` runs a subset (one point, one damaged
file, two writers of `blalm train`)."""


def table(cases: list[Case], command: str, seconds: float) -> str:
    from blalm.runinfo import git_state, machine

    git, mach = git_state(), machine()
    lines = ["# Reliability: fault injection", "",
             f"Command: `{command}`  ", f"Commit: {git.get('commit', '?')}{' (dirty)' if git.get('dirty') else ''}  ",
             f"Machine: {mach['platform']}, {mach['cpu_count']} CPU cores, Python {platform.python_version()}, "
             f"torch {torch.__version__}  ", f"Time: {seconds / 60:.1f} min, {len(cases)} cases", "",
             "Outcomes: *resumed identical* = the re-run succeeded and its outputs equal an uninterrupted "
             "run's (checkpoints bit for bit, metrics, results, corpus and tokenizer files); *clean refusal* = "
             "exit 2 with one message naming the file or the holder and the fix, no traceback, nothing deleted.",
             "", WHAT_RUNS, "", "## Summary", "", "| stage | kind | cases | as expected | nothing lost |",
             "|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.stage, case.kind), []).append(case)
    for (stage, kind), group in groups.items():
        outcomes = Counter(c.outcome for c in group)
        lines.append(f"| {stage} | {kind} | {len(group)} | {sum(c.ok for c in group)} "
                     f"({', '.join(f'{n} {o}' for o, n in outcomes.items())}) | {sum(c.nothing_lost for c in group)} |")
    lines += ["", "## Every case", "", "| stage | fault | outcome | nothing lost | detail |", "|---|---|---|---|---|"]
    for c in cases:
        detail = c.detail.replace("|", "/").replace("\n", " ")
        lines.append(f"| {c.stage} | {c.fault} | {c.outcome} | {'yes' if c.nothing_lost else 'NO'} | {detail} |")
    return "\n".join(lines) + "\n"


STAGES: dict[str, Callable[..., Stage]] = {"train": TrainStage, "finetune": FinetuneStage, "corpus": CorpusStage,
                                           "tokenizer": TokenizerStage, "sweep": SweepStage, "submit": SubmitStage}


def run_stage(stage: Stage, kinds: set[str], rng: random.Random, moments: int, points: set[str] | None,
              log: Callable[[str], None]) -> list[Case]:
    stage.prepare()
    kinds = kinds & stage.kinds
    try:
        counts, seconds = count_points(stage, stage.work)
    except ReferenceFailed as exc:
        log(f"{stage.name}: the reference run failed ({exc}); no cases")
        return [Case(stage.name, "reference", "none: the uninterrupted run", "FAILED", False, True, str(exc))]
    ref = stage.work / f"{stage.name}-counted"
    log(f"{stage.name}: reference {seconds:.1f} s; points {dict(counts)}")
    cases: list[Case] = []
    if "kill" in kinds:
        cases += kill_cases(stage, ref, counts, rng, moments, points)
    if "timed" in kinds:
        cases += timed_cases(stage, ref, seconds, rng, moments)
    if "corrupt" in kinds:
        cases += corrupt_cases(stage, ref, rng)
    if "writers" in kinds:
        cases += writers_case(stage, ref)
    for c in cases:
        log(f"  {c.stage} | {c.fault} | {c.outcome} | lost nothing: {c.nothing_lost} | {c.detail[:120]}")
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out" / "faults", help="work folder (emptied first)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the project data (default ../shared/data)")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages")
    parser.add_argument("--kinds", default="kill,timed,corrupt,writers", help="comma-separated case kinds")
    parser.add_argument("--moments", type=int, default=3, help="random passes per fault point (and timed kills)")
    parser.add_argument("--points", default="", help="only these fault points (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", type=Path, default=None, help="write the markdown table here")
    parser.add_argument("--json", type=Path, default=None, help="write every case as JSON here")
    args = parser.parse_args(argv)
    from blalm.data.config import default_data_dir

    data_dir = args.data_dir or default_data_dir()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    t0, rng = time.time(), random.Random(args.seed)
    inputs = build_inputs(args.out, data_dir)
    cases: list[Case] = []
    for name in [s for s in args.stages.split(",") if s]:
        work = args.out / name
        work.mkdir()
        cases += run_stage(STAGES[name](work, inputs), set(args.kinds.split(",")), rng, args.moments,
                           set(filter(None, args.points.split(","))) or None, print)
    command = "scripts/fault_injection.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table(cases, command, time.time() - t0))
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cases], indent=1) + "\n")
    bad = [c for c in cases if not c.ok or not c.nothing_lost]
    print(f"{len(cases)} cases, {len(bad)} not as expected, {time.time() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
