"""``build_submission(run_dir, out_dir, cfg)``: the whole BabyLM 2025 submission of one run.

Order (each piece skipped when already complete, see ``blalm.submit.pieces``): for every revision the
run has, its branch and its fast suite + AoA surprisals; the full suite of ``main``; GLUE; then the
AoA file, the collated ``submission.json``, the model card and ``main``'s commit, ``status.json`` and
the folder's README. A progress bar counts the pieces; the summary says what is complete.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from blalm.atomic import write_json_atomic, write_text_atomic
from blalm.config import to_dict
from blalm.submit.config import SubmitConfig
from blalm.submit.layout import FAST_TASKS, FULL_TASKS, GLUE_TASKS, MAIN, aoa_path
from blalm.submit.plan import Plan, make_plan

STATUS_FILE = "status.json"
SUBMISSION_FILE = "submission.json"


def _aoa_status(plan: Plan, pieces: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """blalm's AoA score over the revisions (BOS-only surprisals, Wordbank CDI words)."""
    from blalm.eval.aoa import aoa_curve_fitness
    from blalm.eval.data import TaskUnavailable, load_cdi
    from blalm.submit.layout import CDI_FILE, revision_words

    by_words = {revision_words(r): p["bos_only"] for r, p in pieces.items() if p.get("bos_only")}
    try:
        res = aoa_curve_fitness(by_words, load_cdi(plan.eval_dir / CDI_FILE))
    except TaskUnavailable as exc:
        res = {"status": "not available", "reason": str(exc)}
    return {"score": res.get("score"), "n_words": res.get("n_words"), "reason": res.get("reason"),
            "word_file": str(plan.aoa_words) if plan.aoa_words else None}


def submission_status(plan: Plan, revisions: dict[str, dict[str, Any]], main_tasks: dict[str, dict[str, Any]],
                      glue: dict[str, dict[str, Any]], aoa: dict[str, Any]) -> dict[str, Any]:
    """What is complete, and every missing piece by name (never filled in)."""
    missing = []
    for m in plan.milestones:
        if m.checkpoint is None:
            missing.append(f"{m.revision}: the run has no checkpoint at {m.scaled_words:,} words seen "
                           f"(milestone {m.words:,} x milestone_scale)")
    for revision, rec in revisions.items():
        missing += [f"{revision} {t}: {r['reason']}" for t, r in rec["tasks"].items() if r["status"] != "ok"]
    missing += [f"{MAIN} {t}: {r['reason']}" for t, r in main_tasks.items() if r["status"] != "ok"]
    missing += [f"{MAIN} glue/{t}: {r['reason']}" for t, r in glue.items() if r["status"] != "ok"]
    if plan.aoa_words is None:
        missing.append(f"{MAIN} AoA_word/surprisal.json: the official AoA word file (cdi_childes.json, "
                       f"https://osf.io/ryjfm/) is not in {plan.eval_dir}/full_eval/aoa/; give --aoa-words")
    main = plan.main
    return {"name": plan.name, "track": plan.track, "complete": not missing, "missing": missing,
            "main": {"checkpoint": main["name"], "step": main["step"], "words_seen": main["words_seen"],
                     "tasks": {t: task_summary(r) for t, r in main_tasks.items()}},
            "revisions": {m.revision: revisions.get(m.revision, {"checkpoint": None, "tasks": {}})
                          for m in plan.milestones},
            "glue": glue, "aoa": aoa}


def task_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """A task's line in status.json: its status and blalm's score (or why it is missing)."""
    if rec["status"] != "ok":
        return rec
    result = rec["result"]
    if "eye_tracking" in result:
        scores = {"eye_tracking": result["eye_tracking"]["score"],
                  "self_paced_reading": result["self_paced_reading"]["score"]}
    else:
        scores = {"score": result.get("score")}
    return {"status": "ok", **scores, "n_items": rec["n_items"], "data": rec["data"]}


def _revision_record(m, tasks: dict[str, dict[str, Any]], commit: str) -> dict[str, Any]:
    return {"checkpoint": m.checkpoint["name"], "step": m.checkpoint["step"],
            "words_seen": m.checkpoint["words_seen"], "commit": commit,
            "tasks": {t: task_summary(r) for t, r in tasks.items()}}


def build_submission(run_dir: Path, out_dir: Path, cfg: SubmitConfig,
                     log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Build (or complete) the submission in ``out_dir``; returns ``status.json``'s content. One
    process at a time writes ``out_dir`` (its lock; a second is refused naming the holder)."""
    from blalm.lock import RunLock

    plan = make_plan(run_dir, out_dir, cfg)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(plan.out_dir, what="submission", log=log):
        return _build(plan, cfg, log)


def _build(plan: Any, cfg: SubmitConfig, log: Callable[[str], None]) -> dict[str, Any]:
    from tqdm import tqdm

    from blalm.faults import fault_point
    from blalm.runinfo import run_info
    from blalm.submit import pieces as pc
    from blalm.submit.card import folder_readme, model_card
    from blalm.submit.collate import aoa_surprisals, collate_submission
    from blalm.submit.repo import branches, checkout_main, init_repo

    write_json_atomic(plan.work / "run_info.json", run_info(config={"run_dir": str(plan.run_dir), **to_dict(cfg)}))
    init_repo(plan.repo)
    present = plan.present()
    bar = tqdm(total=2 * len(present) + 3, desc="submit", unit="piece", disable=not cfg.progress, file=sys.stderr)
    say = (lambda s: tqdm.write(s, file=sys.stderr)) if cfg.progress else log

    def step(what: str) -> None:
        bar.set_postfix_str(what, refresh=False)
        bar.update(1)
        fault_point("submit_piece")      # tests: BLALM_FAULT=submit_piece@N kills here

    revisions, aoa_pieces, fast_metrics = {}, {}, {}
    try:
        for m in present:
            commit = pc.export_revision(plan, m.revision, m.checkpoint)
            step(f"{m.revision} branch")
            model = pc.LazyModel(plan, m.checkpoint["path"])
            tasks = pc.score_revision(plan, m.revision, m.checkpoint, "fast", FAST_TASKS, model, say)
            aoa_pieces[m.revision] = pc.score_aoa(plan, m.revision, m.checkpoint, model)
            revisions[m.revision] = _revision_record(m, tasks, commit)
            fast_metrics[m.revision] = {t: r["metric"] for t, r in tasks.items() if r["status"] == "ok"}
            step(f"{m.revision} fast suite")
        main_tasks = pc.score_revision(plan, MAIN, plan.main, "full", FULL_TASKS, pc.LazyModel(plan, plan.main["path"]), say)
        step("main full suite")
        glue = pc.glue(plan, say)
        step("GLUE")
        aoa = aoa_surprisals(plan, aoa_pieces)
        if aoa is not None:
            write_json_atomic_indent2(aoa_path(plan.results, plan.name), aoa)
        else:                                   # no word file now: an earlier run's file is not kept
            aoa_path(plan.results, plan.name).unlink(missing_ok=True)
        status = submission_status(plan, revisions, main_tasks, glue, _aoa_status(plan, aoa_pieces))
        pc.export_revision(plan, MAIN, plan.main, extra={"README.md": model_card(plan, status)})
        checkout_main(plan.repo)
        status["branches"] = branches(plan.repo)
        pc.write_official_json(plan.out_dir / SUBMISSION_FILE, collate_submission(plan, fast_metrics))
        write_json_atomic(plan.out_dir / STATUS_FILE, status)
        write_text_atomic(plan.out_dir / "README.md", folder_readme(plan, status))
        step("collated")
    finally:
        bar.close()
    return status


def write_json_atomic_indent2(path: Path, data: Any) -> None:
    """As the official AoA run saves ``surprisal.json`` (``json.dump(..., indent=2)``)."""
    import json

    write_text_atomic(path, json.dumps(data, indent=2))


def format_summary(status: dict[str, Any], out_dir: Path) -> str:
    """What is complete, what is missing, and the push commands."""
    from blalm.submit.repo import push_commands

    revs = status["revisions"]
    have = [r for r, rec in revs.items() if rec.get("checkpoint")]
    main_ok = [t for t, r in status["main"]["tasks"].items() if r["status"] == "ok"]
    glue_ok = [t for t, r in status["glue"].items() if r["status"] == "ok"]
    lines = [f"submission {status['name']} ({status['track']}): {'complete' if status['complete'] else 'INCOMPLETE'}",
             f"  revisions: {len(have)} of {len(revs)} ({', '.join(have) or 'none'}); main = {status['main']['checkpoint']}",
             f"  main full suite: {len(main_ok)} of {len(FULL_TASKS)} tasks; GLUE: {len(glue_ok)} of {len(GLUE_TASKS)} tasks",
             f"  AoA surprisal.json: {'written' if status['aoa'].get('word_file') else 'missing (no official word file)'}"]
    if status["missing"]:
        lines.append("missing (listed in status.json and README.md, not filled in):")
        lines += [f"  - {m}" for m in status["missing"]]
    lines.append(f"wrote {out_dir / SUBMISSION_FILE}, {out_dir / STATUS_FILE}, {out_dir / 'README.md'}, "
                 f"{out_dir / 'model'} (branches: {', '.join(sorted(status['branches']))})")
    lines.append("to publish on the Hugging Face Hub (not done here):")
    lines += [f"  {c}" for c in push_commands((out_dir / "model").resolve(), f"USER/{status['name']}")]
    return "\n".join(lines)
