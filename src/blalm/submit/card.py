"""The model card (``model/README.md`` on ``main``) and the submission folder's ``README.md``.

Both are pure functions of the status (:func:`blalm.submit.build.submission_status`) and the run's
files, with no times or paths of this machine in the card, so that a re-run writes the same card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blalm.submit.layout import GLUE_TASKS, MAIN
from blalm.submit.plan import Plan

ZERO_SHOT_TITLES = (("blimp", "BLiMP"), ("blimp_supplement", "BLiMP suppl."), ("ewok", "EWoK"),
                    ("entity_tracking", "Entity tracking"), ("eye_tracking", "Eye tracking"),
                    ("self_paced_reading", "Self-paced reading"), ("wug_adj", "WUG adj."),
                    ("wug_past", "WUG past"), ("comps", "COMPS"))
MODEL_KEYS = ("mixer", "hidden_size", "intermediate_size", "num_layers", "num_heads", "vocab_size",
              "short_conv", "swa", "swa_window", "hedgehog", "tie_embeddings")
TRAIN_KEYS = ("track", "epochs", "context_length", "global_batch", "optimizer", "lr", "warmup_fraction",
              "weight_decay", "seed", "milestone_scale")


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def task_scores(tasks: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """``{column: score}`` from a revision's task records (reading splits into eye / self-paced)."""
    out: dict[str, float | None] = {}
    for name, rec in tasks.items():
        if name == "reading":
            out["eye_tracking"] = rec.get("eye_tracking")
            out["self_paced_reading"] = rec.get("self_paced_reading")
        else:
            out[name] = rec.get("score")
    return out


def corpus_lines(plan: Plan) -> list[str]:
    corpus = plan.run_config.get("corpus_dir")
    path = Path(corpus) / "manifest.json" if corpus else None
    if path is None or not path.is_file():
        return [f"The corpus manifest was not found (`{corpus}/manifest.json` at submission time)."]
    manifest = json.loads(path.read_text(encoding="utf-8"))
    lines = [f"{manifest.get('train_words', 0):,} training words (budget {manifest.get('budget_words', 0):,}), "
             f"{manifest.get('dev_words', 0):,} dev words, corpus seed {manifest.get('seed')}.", "",
             "| source | kind | words | dev words | licence |", "|---|---|---:|---:|---|"]
    for name, src in (manifest.get("sources") or {}).items():
        licence = src.get("licence") or src.get("license") or "not recorded in the manifest"
        lines.append(f"| {name} | {src.get('kind', '')} | {src.get('words', 0):,} | {src.get('dev_words', 0):,} "
                     f"| {licence} |")
    return lines


def training_lines(plan: Plan) -> list[str]:
    cfg, model = plan.run_config, plan.run_config.get("model", {})
    git = (plan.run_info.get("git") or {})
    lines = [f"- {k}: `{cfg[k]}`" for k in TRAIN_KEYS if k in cfg]
    lines.append("- model: " + ", ".join(f"{k} `{model[k]}`" for k in MODEL_KEYS if k in model))
    lines.append(f"- blalm commit: `{git.get('commit', 'unknown')}`" + (" (with uncommitted changes)" if git.get("dirty") else ""))
    versions = plan.run_info.get("versions") or {}
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if float(cfg.get("milestone_scale", 1.0)) != 1.0:
        lines.append(f"- **milestone_scale = {cfg['milestone_scale']}**: the run checkpointed at the BabyLM "
                     f"milestones times this factor, and its checkpoints are named after the official milestones "
                     f"in order (`chck_NM` is the checkpoint at N M x {cfg['milestone_scale']} words seen): not a "
                     f"challenge-valid run")
    return lines


def scores_lines(status: dict[str, Any]) -> list[str]:
    main = task_scores(status["main"]["tasks"])
    lines = ["| task | score |", "|---|---:|"]
    lines += [f"| {title} | {_num(main.get(key))} |" for key, title in ZERO_SHOT_TITLES]
    for task in GLUE_TASKS:
        rec = status["glue"][task]
        lines.append(f"| GLUE {task} ({rec.get('metric', 'score')}) | {_num(rec.get('score'))} |")
    lines.append(f"| AoA (blalm, BOS-only, Wordbank CDI) | {_num(status['aoa'].get('score'))} |")
    return lines


def fast_lines(status: dict[str, Any]) -> list[str]:
    keys = [k for k, _ in ZERO_SHOT_TITLES if k != "comps"]
    lines = ["| revision | checkpoint | words seen | " + " | ".join(t for k, t in ZERO_SHOT_TITLES if k in keys) + " |",
             "|---|---|---:|" + "---:|" * len(keys)]
    for revision, rec in status["revisions"].items():
        if rec["checkpoint"] is None:
            lines.append(f"| {revision} | missing | | " + " | ".join("" for _ in keys) + " |")
            continue
        scores = task_scores(rec["tasks"])
        lines.append(f"| {revision} | {rec['checkpoint']} | {rec['words_seen']:,} | "
                     + " | ".join(_num(scores.get(k)) for k in keys) + " |")
    return lines


def model_card(plan: Plan, status: dict[str, Any]) -> str:
    main = status["main"]
    mixer = plan.run_config.get("model", {}).get("mixer", "")
    head = ["---", "language: en", "library_name: transformers",
            f"tags: [babylm, babylm-2025, {plan.track}, blalm{', ' + mixer if mixer else ''}]", "---", "",
            f"# {plan.name}", "",
            f"A BabyLM 2025 **{plan.track}** model trained with blalm and packaged by `blalm submit`. `main` is "
            f"checkpoint `{main['checkpoint']}` ({main['words_seen']:,} words seen); each branch `chck_NM` holds "
            f"the checkpoint after N million words.", ""]
    if not status["complete"]:
        head += ["**This submission is incomplete.** Missing:", ""] + [f"- {m}" for m in status["missing"]] + [""]
    body = ["## Loading", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("REPO", revision="{MAIN}", trust_remote_code=True)',
            'tokenizer = AutoTokenizer.from_pretrained("REPO", trust_remote_code=True)', "```", "",
            "## Training", ""] + training_lines(plan) + ["", "## Corpus", ""] + corpus_lines(plan)
    body += ["", f"## Scores of `{MAIN}` (full suite, blalm's scorer)", ""] + scores_lines(status)
    body += ["", "Zero-shot accuracies in %, eye tracking and self-paced reading as (R2_model - R2_baseline) / "
             "(1 - R2_baseline) x 100, WUG as Spearman rho x 100, GLUE the best epoch's validation score in %.",
             "", "## Checkpoints (fast suite)", "", "Entity tracking here is its regular split (the official "
             "fast set).", ""] + fast_lines(status)
    return "\n".join(head + body) + "\n"


def folder_readme(plan: Plan, status: dict[str, Any]) -> str:
    from blalm.submit.repo import push_commands

    state = "complete" if status["complete"] else "INCOMPLETE"
    lines = [f"# BabyLM 2025 submission: {plan.name} ({plan.track}) - {state}", "",
             f"Made by `blalm submit` from `{plan.run_dir}`. Re-running the same command does only what is missing.",
             ""]
    if status["missing"]:
        lines += ["## Missing (not filled in)", ""] + [f"- {m}" for m in status["missing"]] + [""]
    lines += ["## Contents", "",
              "- `model/`: git repository; `main` = the final (or selected) checkpoint with the model card, "
              "`chck_NM` = the checkpoint after N million words. Locally, `revision=` is ignored for a folder: "
              "`git -C model worktree add ../chck_3M chck_3M` gives a loadable folder of one revision.",
              f"- `results/{plan.name}/`: predictions in the official pipeline's layout (fast suite per "
              f"revision, full suite, GLUE and AoA under `main`).",
              "- `submission.json`: the collated file, as `collate_preds.py --fast` writes it.",
              "- `status.json`: what is complete, per revision and task; `work/`: blalm's scores and "
              "intermediate files.", "", "## Publishing (never done by blalm)", "", "```bash"]
    lines += push_commands(plan.repo.resolve(), f"USER/{plan.name}") + ["```", "",
              "To check with the official pipeline (its `collate_preds.py`, from its repository root):", "",
              "```bash", f"python -m evaluation_pipeline.collate_preds --model_path_or_name {plan.name} "
              f"--backend causal --fast --track {plan.track} --results_dir {plan.results.resolve()}", "```"]
    return "\n".join(lines) + "\n"
