"""Run the evaluation suite on one model and write ``results.json``.

:func:`evaluate_model` loads the model (``loading.load_for_eval``), runs each asked task on the
suite's data (``config.TASK_PATHS``), and returns one dict: per task a ``status`` (``ok``,
``skipped`` with the reason, or ``not available`` with the reason), its ``score`` and detail, and
the paper's average. :func:`format_table` prints the paper's row.

The paper's average (Tables 2–6, "Avg.") is the plain mean of six numbers: BLiMP, B. Suppl.,
Entity, EWoK (accuracies in %) and Eye, Reading (the reading scores ×100, see
``blalm.eval.reading``). When any of the six is missing the average is not given (never computed
over fewer columns). Fast suite: the official fast subsets (BLiMP 67 × 200, supplement 5 × 50,
EWoK 11 × 100, WUG, reading); entity tracking has no fast split here, so the fast suite scores the
first ``entity_fast_per_group`` (default 100) items of each of the 18 ``{split}_{numops}_ops``
groups of the full files, in file order. (The official fast entity tracking, not available here,
is the regular split only; ``per_split["regular"]`` of the detail is the comparable number.)
GLUE needs fine-tuning (``blalm finetune MODEL --out DIR``): with ``glue_results = DIR`` (``blalm eval
--glue DIR``) the GLUE task reads ``DIR/results.json`` and the table shows a GLUE column (not part of
the paper's average); without it GLUE is reported as not available.
"""

from __future__ import annotations


import time
from pathlib import Path
from typing import Any, Callable

from blalm.config import to_dict
from blalm.errors import InputError
from blalm.eval.config import ENTITY_SPLITS, EWOK_PASSWORD, PAPER_COLUMNS, EvalConfig, expand_tasks
from blalm.eval.data import (RankingItem, TaskUnavailable, load_cdi, load_entity_tracking, load_ewok, load_minimal_pairs,
                             load_reading, load_wug)
from blalm.eval.session import EvalSession
from blalm.atomic import write_json_atomic
from blalm.runinfo import run_info

RESULTS_FILE = "results.json"


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def run_tasks(model: Any, tokenizer: Any, cfg: EvalConfig, log: Callable[[str], None] = lambda s: None,
              session: EvalSession | None = None) -> dict[str, dict[str, Any]]:
    """Every asked task's result (see the module docstring); data errors raise InputError.

    ``session`` keeps the data read and tokenized for the next model (a fresh one by default)."""
    from blalm.eval.aoa import aoa_words
    from blalm.eval.reading import reading_queries, reading_results, reading_surprisals
    from blalm.eval.scoring import model_device
    from blalm.eval.tasks import accuracy_result, encode_items, entity_tracking_result, score_items, wug_result

    session = session or EvalSession()
    tasks = expand_tasks(cfg.tasks)
    kw = {"batching": cfg.batching(model_device(model).type), "progress": cfg.progress}
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    sentences: list[int] = []      # candidate texts (or reading queries) the task scored

    def timed(what: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            timings[what] = timings.get(what, 0.0) + time.perf_counter() - t0

    def run(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        timings.clear()
        sentences.clear()
        try:
            res = fn()
        except TaskUnavailable as exc:
            res = _skipped(str(exc))
        res.setdefault("data", str(cfg.task_path(name)))
        res["seconds"] = round(time.perf_counter() - t0, 2)
        if sentences:
            res["n_sentences"] = sentences.pop()
        if timings:
            res["timings"] = {k: round(v, 3) for k, v in timings.items()}
        results[name] = res
        log(f"{name}: {res['status']}" + (f" {res['score']:.2f}" if res.get("score") is not None else "")
            + (f" ({res['reason']})" if res.get("reason") else ""))

    def scored(name: str, what: str, load: Callable[[Path], list[RankingItem]]):
        """The task's items and their candidates' scores (data and tokens from the session)."""
        path = cfg.task_path(name)
        items = timed("read", lambda: session.data(what, path, lambda: load(path)))
        encoded = timed("tokenize", lambda: session.encoded(
            tokenizer, what, path, cfg.prepend_bos, lambda: encode_items(tokenizer, items, cfg.prepend_bos)))
        scores = timed("score", lambda: score_items(model, tokenizer, items, desc=name, encoded=encoded, **kw))
        sentences[:] = [len(encoded)]
        return items, scores

    def minimal_pairs(name: str) -> dict[str, Any]:
        items, scores = scored(name, name, lambda p: load_minimal_pairs(p, name))
        return accuracy_result(items, scores, "per_paradigm")

    def ewok() -> dict[str, Any]:
        items, scores = scored("ewok", "ewok", lambda p: load_ewok(p, EWOK_PASSWORD))
        return accuracy_result(items, scores, "per_domain")

    def entity() -> dict[str, Any]:
        per_group = cfg.entity_fast_per_group if cfg.suite == "fast" else None
        items, scores = scored("entity_tracking", f"entity_tracking/{per_group}",
                               lambda p: load_entity_tracking(p, per_group))
        res = entity_tracking_result(items, scores, ENTITY_SPLITS)
        res["subsample"] = (f"first {per_group} items of each (split, numops) group, in file order"
                            if per_group else "all items")
        return res

    def wug(name: str) -> dict[str, Any]:
        items, scores = scored(name, name, lambda p: load_wug(p, EWOK_PASSWORD, name))
        return wug_result(items, scores)

    reading_cache: dict[str, dict[str, Any]] = {}

    def reading(name: str) -> dict[str, Any]:
        if not reading_cache:
            path = cfg.task_path(name)
            rows = timed("read", lambda: session.data("reading", path, lambda: load_reading(path)))
            prepared = timed("tokenize", lambda: session.encoded(
                tokenizer, "reading", path, cfg.prepend_bos, lambda: reading_queries(tokenizer, rows, cfg.prepend_bos)))
            pred, prev = timed("score", lambda: reading_surprisals(model, tokenizer, rows, prepared=prepared, **kw))
            sentences[:] = [len(prepared.queries)]
            reading_cache.update(reading_results(rows, pred, prev))
        return dict(reading_cache[name])

    def aoa() -> dict[str, Any]:
        path = cfg.task_path("aoa")
        words = aoa_words(load_cdi(path))
        return {"status": "not available", "n_cdi_words": len(words),
                "reason": "AoA fits a learning curve over the checkpoints of one training run; one model "
                          "gives no curve (use blalm.eval.aoa.aoa_word_surprisals per checkpoint and "
                          "aoa_curve_fitness)"}

    def glue() -> dict[str, Any]:
        return glue_result(cfg.glue_results)

    table: dict[str, Callable[[], dict[str, Any]]] = {
        "blimp": lambda: minimal_pairs("blimp"),
        "blimp_supplement": lambda: minimal_pairs("blimp_supplement"),
        "ewok": ewok, "entity_tracking": entity,
        "wug_adj": lambda: wug("wug_adj"), "wug_past": lambda: wug("wug_past"),
        "eye_tracking": lambda: reading("eye_tracking"),
        "self_paced_reading": lambda: reading("self_paced_reading"),
        "aoa": aoa, "glue": glue,
    }
    for name in tasks:
        run(name, table[name])
    return results


def glue_result(folder: str) -> dict[str, Any]:
    """The GLUE task's result from a ``blalm finetune`` output folder (``""``: not available)."""
    import json

    if not folder:
        return {"status": "not available",
                "reason": "no fine-tuning results given: run 'blalm finetune MODEL --out DIR', then 'blalm eval "
                          "... --glue DIR'"}
    path = Path(folder).expanduser() / RESULTS_FILE
    if not path.is_file():
        raise InputError(f"--glue {folder}: no {RESULTS_FILE} there; give the --out folder of 'blalm finetune'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        glue, tasks = data["glue"], data["tasks"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a 'blalm finetune' results file ({exc}); re-run blalm finetune") from None
    detail = {"data": str(path), "finetuned_model": data.get("model"),
              "per_task": {t: r.get("score") for t, r in tasks.items() if r.get("status") == "ok"},
              "missing": glue.get("missing", {})}
    if glue.get("status") != "ok":
        return {"status": "not available", "reason": f"{path}: {glue.get('reason', 'no task has a result')}", **detail}
    return {"status": "ok", "score": float(glue["score"]), **detail,
            "unit": "mean task score, % (F1 for MRPC and QQP, accuracy otherwise)"}


def paper_average(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The mean of BLiMP, B. Suppl., Entity, EWoK, Eye, Reading — or why it cannot be given."""
    values, missing = {}, []
    for task, _title in PAPER_COLUMNS:
        res = results.get(task)
        if res is None or res.get("status") != "ok" or res.get("score") is None:
            missing.append(task)
        else:
            values[task] = float(res["score"])
    if missing:
        return {"status": "not available", "reason": f"missing: {', '.join(missing)}", "components": values}
    return {"status": "ok", "score": sum(values.values()) / len(values), "components": values}


def evaluate_model(model_path: str | Path, cfg: EvalConfig, out_dir: Path | None = None,
                   log: Callable[[str], None] = lambda s: None, session: EvalSession | None = None
                   ) -> dict[str, Any]:
    """Load the model at ``model_path``, run ``cfg``'s tasks, and (with ``out_dir``) write results.json.

    ``session``: what an earlier call of the same process left (data, tokens, the model; see
    :mod:`blalm.eval.session`); a fresh one by default."""
    from blalm.run.device import precision_context, resolve_device, resolve_precision

    eval_dir = cfg.eval_dir()
    if not eval_dir.is_dir():
        raise InputError(f"{eval_dir}: evaluation data folder not found (give --eval-data, or set BLALM_DATA_DIR)")
    session = session or EvalSession()
    t0 = time.perf_counter()
    torch_device = resolve_device(cfg.device)
    device = str(torch_device)
    loader = _load_quietly if not cfg.progress else _load
    model, tokenizer = session.load(Path(model_path), device, cfg.compile, loader)
    load_seconds = round(time.perf_counter() - t0, 2)
    info = run_info(config=to_dict(cfg))   # after torch is loaded, so that it names the GPU
    log(f"loaded {model_path} on {device} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    with precision_context(torch_device, resolve_precision(cfg.precision, torch_device)):
        results = run_tasks(model, tokenizer, cfg, log, session=session)
    report = {
        "model": str(model_path), "suite": cfg.suite, "data_dir": str(eval_dir), "device": device,
        "prepend_bos": cfg.prepend_bos,
        "tokenizer_adds_bos": _adds_bos(tokenizer),
        "average": paper_average(results),
        "tasks": results,
        "seconds": round(time.perf_counter() - t0, 2),
        "seconds_load": load_seconds,
        "run_info": info,
    }
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / RESULTS_FILE, report)
    return report


def _load(model_path: Path, device: str) -> tuple[Any, Any]:
    from blalm.eval.loading import load_for_eval

    return load_for_eval(model_path, device=device)


def _load_quietly(model_path: str | Path, device: str) -> tuple[Any, Any]:
    """``load_for_eval`` without transformers' weight-loading progress bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return _load(model_path, device)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    return bos is not None and bool(ids) and ids[0] == bos


def format_number(res: dict[str, Any] | None) -> str:
    if res is None:
        return "-"
    if res.get("status") == "ok" and res.get("score") is not None:
        return f"{res['score']:.2f}"
    return "n/a"


def format_table(report: dict[str, Any]) -> str:
    """The paper's row (BLiMP | B. Suppl. | Entity | EWoK | Eye | Reading | Avg.), then the other
    tasks and every task that was skipped or is not available, with the reason."""
    tasks = report["tasks"]
    head = [title for _, title in PAPER_COLUMNS] + ["Avg."]
    row = [format_number(tasks.get(t)) for t, _ in PAPER_COLUMNS] + [format_number(report["average"])]
    if "glue" in tasks:   # fine-tuning: a column of its own, not part of the paper's average
        head.append("GLUE")
        row.append(format_number(tasks["glue"]))
    widths = [max(len(h), len(v)) for h, v in zip(head, row)]
    lines = [f"suite: {report['suite']}   model: {report['model']}",
             "| " + " | ".join(h.rjust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|",
             "| " + " | ".join(v.rjust(w) for v, w in zip(row, widths)) + " |"]
    if report["average"].get("status") != "ok":
        lines.append(f"Avg.: not available ({report['average']['reason']})")
    ties = {t: r["n_ties"] for t, r in tasks.items() if r.get("n_ties")}
    strict = {t: r["score_ties_wrong"] for t, r in tasks.items() if r.get("n_ties")}
    if ties:
        lines.append("ties (counted correct, as the official pipeline): "
                     + ", ".join(f"{t} {n} (score with ties wrong {strict[t]:.2f})" for t, n in ties.items()))
    paper = {t for t, _ in PAPER_COLUMNS} | {"glue"}
    for name, res in tasks.items():
        if name not in paper and res.get("status") == "ok":
            lines.append(f"{name}: {res['score']:.2f}  [{res.get('unit', '')}]")
    for name, res in tasks.items():
        if res.get("status") != "ok":
            lines.append(f"{name}: {res['status']} ({res.get('reason', '')})")
    return "\n".join(lines)
