"""Write ``report.md``: each paper table with our numbers beside the paper's, and the plots.

``write_report(paths, out_dir)`` takes sweep folders (``blalm sweep``: ``sweep.json``), run
folders (``blalm train``; scored with ``blalm eval RUN_DIR``) or folders holding run folders, and
writes ``out_dir/report.md`` with PNG plots beside it (``blalm.report.plots``):

- a sweep of a paper experiment gets that table (``blalm.report.paper``): per run of the grid the
  paper's row and ours below it, the best checkpoint in parentheses as the paper prints it, and
  the mean ± std over seeds where the run has several (``numpy.std``, the population std that
  Table 4 uses); the paper's own repeated runs (App. C, E) are summarised the same way, except
  where the paper states the aggregate itself (Table 4);
- a plain run gets its best checkpoint beside the paper's nearest row (the same track and
  mechanism, ``paper.reference_row``) and its score at every checkpoint scored;
- every source gets the runs table (status, best checkpoint, average, validation perplexity),
  training loss and validation perplexity against words seen, the scores against words seen,
  BLiMP by phenomenon for the best runs, and the DynMod α of every layer over training (App. G.1).

Our "PPL" is the validation perplexity logged with the selected checkpoint (per token of our
tokenizer on our dev split: not comparable in absolute terms with the paper's).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from blalm.atomic import read_json, write_text_atomic
from blalm.errors import InputError
from blalm.report import paper
from blalm.report.plots import finite
from blalm.run.layout import CONFIG_FILE as RUN_CONFIG_FILE
from blalm.run.layout import is_run_dir
from blalm.run.metrics import checkpoint_val_ppl, read_metrics

REPORT_FILE = "report.md"
COLUMN_TITLES = tuple(paper.TITLES[k] for k in paper.COLUMNS)
SCORE_KEYS = paper.COLUMNS + ("average",)


@dataclass
class RunData:
    """One training run folder and what has been written about it."""

    dir: Path
    run_id: str                               # "strict-small/blalm/seed0" in a sweep, else the folder name
    track: str = "none"
    name: str = ""                            # the run's name in its experiment ("" for a plain run)
    label: str = ""
    seed: int | None = None
    paper_key: str = ""
    status: str = "done"
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None    # eval/summary.json
    metrics: list[dict[str, Any]] = field(default_factory=list)
    glue: dict[str, Any] | None = None       # the GLUE summary of RUN_DIR/glue/results.json, when it is "ok"

    @property
    def best(self) -> dict[str, Any] | None:
        return (self.summary or {}).get("best")

    @property
    def best_val_ppl(self) -> float | None:
        return checkpoint_val_ppl(self.metrics, (self.best or {}).get("checkpoint"))

    @property
    def model(self) -> dict[str, Any]:
        return self.config.get("model", {}) if isinstance(self.config.get("model"), dict) else {}


GLUE_DIR = "glue"   # RUN_DIR/glue: where the report looks for the run's fine-tuning results


def glue_cell(scores: Sequence[float | None]) -> str:
    return fmt_stat(mean_std([finite(v) for v in scores]))


@dataclass
class Source:
    """What one path given to the report holds: a sweep, or plain runs."""

    path: Path
    runs: list[RunData]
    sweep: dict[str, Any] | None = None

    @property
    def title(self) -> str:
        if self.sweep:
            return self.sweep.get("title") or self.sweep.get("experiment") or self.path.name
        return f"Run {self.path}" if is_run_dir(self.path) else f"Runs under {self.path}"


# ----------------------------------------------------------------------------------------------
# reading


def load_run(run_dir: Path, **info: Any) -> RunData:
    """A run folder's config, evaluation summary, metrics and (``blalm finetune BEST --out
    RUN_DIR/glue``) GLUE summary, read once."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / RUN_CONFIG_FILE) or {}
    found = read_json(run_dir / GLUE_DIR / "results.json")
    glue = found.get("glue") if isinstance(found, dict) else None
    run = RunData(dir=run_dir, run_id=info.pop("run_id", run_dir.name), config=config,
                  summary=read_json(run_dir / "eval" / "summary.json"), metrics=read_metrics(run_dir),
                  glue=glue if isinstance(glue, dict) and glue.get("status") == "ok" else None, **info)
    if run.track == "none" and isinstance(config.get("track"), str):
        run.track = config["track"]
    run.label = run.label or run.name or run.run_id
    return run


def load_source(path: Path) -> Source:
    """A sweep folder, a run folder, or a folder holding run folders (searched recursively)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; give a 'blalm sweep' --out folder or a 'blalm train' run folder")
    sweep = read_json(path / "sweep.json")
    if isinstance(sweep, dict) and isinstance(sweep.get("runs"), list):
        runs = []
        for rec in sweep["runs"]:
            run_dir = path / rec.get("dir", "")
            info = dict(track=rec.get("track", "none"), name=rec.get("name", ""), label=rec.get("label", ""),
                        seed=rec.get("seed"), paper_key=rec.get("paper_key", ""))
            if is_run_dir(run_dir):
                runs.append(load_run(run_dir, run_id=rec.get("run_id", run_dir.name),
                                     status=rec.get("status", "done"), **info))
            else:   # never trained (or its folder is gone): listed with its status
                runs.append(RunData(dir=run_dir, run_id=rec.get("run_id", "?"), status=rec.get("status", "missing"),
                                    **info))
        return Source(path, runs, sweep)
    if is_run_dir(path):
        return Source(path, [load_run(path)])
    found = sorted(p.parent for p in path.rglob(RUN_CONFIG_FILE) if is_run_dir(p.parent))
    if not found:
        raise InputError(f"{path}: neither a sweep folder (sweep.json) nor a run folder (checkpoints/ and "
                         f"config.json), and no run folder below it")
    return Source(path, [load_run(d, run_id=str(d.relative_to(path))) for d in found])


# ----------------------------------------------------------------------------------------------
# numbers


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int] | None:
    """Mean, population std (``numpy.std``, as the paper's Table 4) and count of the given values."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    arr = np.asarray(vals, dtype=np.float64)
    return float(arr.mean()), float(arr.std()), len(vals)


def fmt_stat(stat: tuple[float, float, int] | None, digits: int = 2) -> str:
    if stat is None:
        return "—"
    mean, std, n = stat
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def ours_stats(runs: Sequence[RunData]) -> dict[str, tuple[float, float, int] | None]:
    """Per column (and "ppl"), the mean ± std over the runs' best checkpoints."""
    bests = [r.best for r in runs if r.best]
    out: dict[str, tuple[float, float, int] | None] = {
        k: mean_std([finite(b.get(k)) for b in bests]) for k in SCORE_KEYS}
    out["ppl"] = mean_std([r.best_val_ppl for r in runs])
    return out


def paper_stats(table: str, key: str) -> tuple[dict[str, tuple[float, float, int] | None], list[paper.PaperRow]]:
    rows = paper.table_rows(table).get(key, [])
    out: dict[str, tuple[float, float, int] | None] = {}
    for i, k in enumerate(paper.COLUMNS):
        out[k] = mean_std([r.scores[i] if r.scores else None for r in rows])
    out["average"] = mean_std([r.average for r in rows])
    out["ppl"] = mean_std([r.ppl for r in rows])
    for k, (m, s) in paper.STATED.get(table, {}).get(key, {}).items():
        out[k] = (m, s, len(rows))
    return out, rows


def _ckpts(names: Sequence[str | None]) -> str:
    names = [n for n in names if n]
    return f" ({', '.join(names)})" if names else ""


# ----------------------------------------------------------------------------------------------
# markdown


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def paper_table_md(source: Source) -> list[str]:
    """The experiment's paper table, the paper's row and ours below it, run by run."""
    assert source.sweep is not None
    table = source.sweep.get("paper_table") or ""
    info = paper.TABLES.get(table)
    lines: list[str] = []
    if info:
        lines += [f"### {info['title']}", "",
                  f"Paper: {info['section']} (best checkpoint in parentheses: the paper's checkpoint number; "
                  f"ours: the checkpoint's name). Ours: scale `{source.sweep.get('scale')}`, "
                  f"{(source.sweep.get('experiment_config') or {}).get('eval', {}).get('suite', 'fast')} suite.", ""]
    with_glue = table == "table7"
    head = ["Track", "Run", "", *COLUMN_TITLES, "Avg.", "PPL", *(["GLUE"] if with_glue else [])]
    lines += [_row(head), _row(["---"] * len(head))]
    groups: dict[str, list[RunData]] = {}
    for run in source.runs:
        groups.setdefault(run.paper_key or run.run_id, []).append(run)
    for key, runs in groups.items():
        track, label = runs[0].track, runs[0].label or runs[0].name
        stats, prow = paper_stats(table, key) if table else ({}, [])
        if prow:
            who = "paper" + (f" ({', '.join(r.checkpoint for r in prow if r.checkpoint)})"
                             if any(r.checkpoint for r in prow) else "")
            if len(prow) > 1:
                who += f", {len(prow)} runs"
            avg = fmt_stat(stats.get("average")) + ("*" if any(r.average_computed for r in prow) else "")
            glue = [glue_cell([r.extra.get("glue") for r in prow])] if with_glue else []
            lines.append(_row([track, label, who, *[fmt_stat(stats.get(k)) for k in paper.COLUMNS], avg,
                               fmt_stat(stats.get("ppl")), *glue]))
        else:
            lines.append(_row([track, label, "paper", *["—"] * (9 if with_glue else 8)]))
        ours = ours_stats(runs)
        done = [r for r in runs if r.best]
        who = "**ours**" + _ckpts([r.best["checkpoint"] for r in done])  # type: ignore[index]
        if len(done) > 1:
            who += f", {len(done)} seeds"
        if not done:
            who = f"**ours** ({', '.join(sorted({r.status for r in runs}))})"
        glue = [glue_cell([(r.glue or {}).get("score") for r in runs])] if with_glue else []
        lines.append(_row(["", "", who, *[fmt_stat(ours.get(k)) for k in paper.COLUMNS],
                           fmt_stat(ours.get("average")), fmt_stat(ours.get("ppl")), *glue]))
    lines.append("")
    notes = ["Mean ± std over seeds (population std, `numpy.std`, as the paper's Table 4) where a run has several."]
    if table == "table4":
        notes.append("The paper's ± for Avg. and PPL are Table 4's own; the other columns' are computed from App. E.")
    if table == "table7":
        notes.append(paper.TABLE7_NOTE)
        notes.append(f"Our GLUE: `blalm finetune BEST_CHECKPOINT --out RUN_DIR/{GLUE_DIR}` (the report reads "
                     f"`RUN_DIR/{GLUE_DIR}/results.json`); the mean over the tasks fine-tuned.")
    if any(r.average_computed for rows in paper.table_rows(table).values() for r in rows):
        notes.append("\\* the mean of the paper's six columns, computed here (the paper prints no such average).")
    if table == "table2":
        notes.append("The paper's 'baseline' is the official BabyLM corpus; our `unfiltered` runs (the same sources "
                     "without the §3.2 filters) stand in for it.")
    lines += [f"- {n}" for n in notes] + [""]
    return lines


def runs_table_md(source: Source) -> list[str]:
    head = ["Run", "Track", "Model", "Optimizer", "lr", "Status", "Best checkpoint", "Words seen", "Avg.", "Val PPL"]
    lines = [_row(head), _row(["---"] * len(head))]
    for r in source.runs:
        best = r.best or {}
        model = r.model
        desc = "Transformer" if model.get("mixer") == "attention" else "BLaLM" if model else "—"
        mech = [m for m, on in (("ShortConv", model.get("short_conv")), ("Hedgehog", model.get("hedgehog"))) if on]
        if model.get("swa", "none") != "none":
            mech.append(f"SWA {model['swa']}")
        if model:
            desc += f" {model.get('num_layers')}×{model.get('hidden_size')}" + (f" + {', '.join(mech)}" if mech else "")
        avg = finite(best.get("average"))
        ppl = r.best_val_ppl
        words = best.get("words_seen")
        lines.append(_row([f"`{r.run_id}`", r.track, desc, str(r.config.get("optimizer", "—")),
                           f"{r.config['lr']:.3g}" if isinstance(r.config.get("lr"), (int, float)) else "—",
                           r.status if r.best or r.status != "done" else "not scored",
                           best.get("checkpoint", "—"), f"{words:,}" if isinstance(words, int) else "—",
                           "—" if avg is None else f"{avg:.2f}", "—" if ppl is None else f"{ppl:.2f}"]))
    return lines + [""]


def plain_run_md(run: RunData) -> list[str]:
    """One run beside the paper's nearest row, and its score at every checkpoint scored."""
    lines: list[str] = []
    model = run.model
    from_mech = []
    if model.get("short_conv"):
        from_mech.append("short_conv")
    if model.get("hedgehog"):
        from_mech.append("hedgehog")
    if model.get("swa", "none") != "none":
        from_mech.append(f"swa_{model['swa']}")
    ref = paper.reference_row(run.track, str(model.get("mixer", "mlstm")), from_mech)
    head = ["", *COLUMN_TITLES, "Avg.", "PPL"]
    lines += [_row(head), _row(["---"] * len(head))]
    if ref is not None:
        table, prow = ref
        cells = [f"{v:.2f}" for v in prow.scores] if prow.scores else ["—"] * 6
        lines.append(_row([f"paper: {prow.label}, {run.track} ({prow.checkpoint}; {paper.TABLES[table]['section']})",
                           *cells, f"{prow.average:.2f}" if prow.average is not None else "—",
                           f"{prow.ppl:.2f}" if prow.ppl is not None else "—"]))
    best = run.best
    if best:
        ppl = run.best_val_ppl
        lines.append(_row([f"**ours** ({best['checkpoint']})",
                           *["—" if finite(best.get(k)) is None else f"{best[k]:.2f}" for k in paper.COLUMNS],
                           "—" if finite(best.get("average")) is None else f"{best['average']:.2f}",
                           "—" if ppl is None else f"{ppl:.2f}"]))
    else:
        lines.append(_row(["**ours** (not scored: run `blalm eval RUN_DIR`)", *["—"] * 8]))
    lines.append("")
    if ref is not None:
        setup = next((r for r in run.metrics if r.get("kind") == "setup"), {})
        params = (setup.get("parameters") or {}).get("total")
        words = setup.get("train_words")
        big = "Transformer (~250M parameters)" if model.get("mixer") == "attention" else "BLaLM (~270M parameters)"
        lines += [f"The paper's row is its {big} on its full {run.track} corpus, with the mechanism of this run; "
                  f"ours: {model.get('num_layers', '?')} layers × {model.get('hidden_size', '?')}"
                  + (f" ({params:,} parameters)" if isinstance(params, int) else "")
                  + (f" on {words:,} training words" if isinstance(words, int) else "")
                  + ". The paper's numbers are a target, not a like-for-like comparison.", ""]
    glue = run.glue
    if glue is not None:
        final = paper.table_rows("table7").get(f"{run.track}/final", [])
        theirs = final[0].extra.get("glue") if final else None
        tasks = ", ".join(f"{t} {v:.2f}" for t, v in sorted((glue.get("components") or {}).items()))
        lines += [f"(Super)GLUE, fine-tuned with `blalm finetune` (`{GLUE_DIR}/results.json`): **{glue['score']:.2f}**"
                  + (f" ({tasks})" if tasks else "")
                  + (f"; the paper's final {run.track} submission: {theirs:.2f} (Table 7)." if theirs else "."), ""]
    if run.summary and run.summary.get("checkpoints"):
        lines += ["Every checkpoint scored (fast suite):", ""]
        head = ["Checkpoint", "Words seen", *COLUMN_TITLES, "Avg."]
        lines += [_row(head), _row(["---"] * len(head))]
        for c in run.summary["checkpoints"]:
            mark = " (best)" if best and c.get("checkpoint") == best.get("checkpoint") else ""
            lines.append(_row([f"{c.get('checkpoint')}{mark}", f"{c.get('words_seen', 0):,}",
                               *["n/a" if finite(c.get(k)) is None else f"{c[k]:.2f}" for k in SCORE_KEYS]]))
        lines.append("")
    return lines


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "source"


def write_report(paths: Sequence[Path], out_dir: Path, eval_data_dir: Path | None = None,
                 log=lambda s: None) -> Path:
    """Write ``out_dir/report.md`` and its PNG plots for the given sweep or run folders."""
    from blalm.report import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [load_source(Path(p)) for p in paths]
    lines = ["# blalm report", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M:%S')} from: " + ", ".join(f"`{s.path}`" for s in sources) + ".",
             "The paper: Haller, Golde & Akbik (2025), *Sample-Efficient Language Modeling with Linear Attention "
             "and Lightweight Enhancements*; its numbers are transcribed in `blalm/report/paper.py`.", ""]
    used: set[str] = set()
    for source in sources:
        slug = _slug(source.sweep.get("experiment", source.path.name) if source.sweep else source.path.name)
        while slug in used:
            slug += "_"
        used.add(slug)
        lines += [f"## {source.title}", ""]
        if source.sweep:
            lines += [f"Sweep `{source.path}`: experiment `{source.sweep.get('experiment')}` "
                      f"({source.sweep.get('source', '')}), scale `{source.sweep.get('scale')}`, "
                      f"{len(source.runs)} run(s).", ""]
            lines += paper_table_md(source)
            lines += ["### Runs", ""] + runs_table_md(source)
        else:
            single = is_run_dir(source.path)
            for run in source.runs:
                if not single:
                    lines += [f"### `{run.run_id}`", ""]
                lines += plain_run_md(run)
            if not single:
                lines += ["### Runs", ""] + runs_table_md(source)
        figures = plots.plot_source(source, out_dir, slug, eval_data_dir)
        if figures:
            lines += ["### Plots", ""]
            for name, caption in figures:
                lines += [f"**{caption}**", "", f"![{caption}]({name})", ""]
            log(f"{len(figures)} plot(s) for {source.path}")
    path = out_dir / REPORT_FILE
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path
