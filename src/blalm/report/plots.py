"""The report's PNG plots (matplotlib, Agg backend: no display needed).

- ``*_training.png``: training loss and validation perplexity against words seen, one line per run
  (``RUN_DIR/metrics.jsonl``);
- ``*_scores.png``: the paper's six columns and their average against words seen, at every scored
  checkpoint (``RUN_DIR/eval/summary.json``), the selected checkpoint marked;
- ``*_blimp.png``: BLiMP accuracy by phenomenon (the ``linguistics_term`` and ``field`` of the
  BLiMP data, macro over its paradigms) of the best checkpoint of the best runs (at most 8, by
  average; ``results.json``), by paradigm when the BLiMP data cannot be read;
- ``*_dynmod_alpha.png``: the DynMod α of every layer over training (paper App. G.1), read from the
  checkpoints' ``model.safetensors`` (``layers.N.mixer.swa_alpha``), or, for a run folder copied
  without its weights, from the training log (``swa_coefficients`` of the ``train`` records: α, or
  tanh(α) for the bounded variant); ``tanh(α)``, the weight the bounded variant applies, is drawn
  dashed for ``swa = "dynmod_bounded"``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from blalm.atomic import read_json
from blalm.report import paper

ALPHA_PARAM = re.compile(r"^layers\.(\d+)\.mixer\.swa_alpha$")
MAX_BLIMP_RUNS = 8


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def _colors(n: int):
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    tmp.replace(path)


def _legend(ax, n: int) -> None:
    if n > 1:
        ax.legend(fontsize=7 if n > 6 else 8, loc="best", ncol=1 if n <= 8 else 2)


def plot_training(runs: Sequence[Any], path: Path, title: str) -> bool:
    """Training loss and validation perplexity against words seen."""
    curves = []
    for run in runs:
        train = [(r["words_seen"], finite(r.get("loss"))) for r in run.metrics
                 if r.get("kind") == "train" and isinstance(r.get("words_seen"), int)]
        val = [(r["words_seen"], finite(r.get("val_ppl"))) for r in run.metrics
               if r.get("kind") == "eval" and isinstance(r.get("words_seen"), int)]
        train = [(w, v) for w, v in train if v is not None]
        val = [(w, v) for w, v in val if v is not None]
        if train or val:
            curves.append((run.run_id, train, val))
    if not curves:
        return False
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for (label, train, val), color in zip(curves, _colors(len(curves))):
        if train:
            ax1.plot(*zip(*train), color=color, lw=1.2, label=label)
        if val:
            ax2.plot(*zip(*val), color=color, lw=1.2, marker="o", ms=3, label=label)
    ax1.set(xlabel="words seen", ylabel="training loss (nats/token)", title="training loss")
    ax2.set(xlabel="words seen", ylabel="validation perplexity", title="validation perplexity", yscale="log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    _legend(ax2, len(curves))
    fig.suptitle(title)
    _save(fig, path)
    return True


def plot_scores(runs: Sequence[Any], path: Path, title: str) -> bool:
    """Each paper column and the average at every scored checkpoint, against words seen."""
    scored = [r for r in runs if r.summary and r.summary.get("checkpoints")]
    if not scored:
        return False
    plt = _pyplot()
    keys = [*paper.COLUMNS, "average"]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    flat = axes.ravel()
    colors = _colors(len(scored))
    for run, color in zip(scored, colors):
        rows = sorted(run.summary["checkpoints"], key=lambda c: c.get("words_seen", 0))
        best = (run.summary.get("best") or {}).get("checkpoint")
        for ax, key in zip(flat, keys):
            pts = [(c.get("words_seen", 0), finite(c.get(key)), c.get("checkpoint")) for c in rows]
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, lw=1.2, marker="o", ms=3,
                    label=run.run_id)
            for w, v, name in pts:
                if name == best:
                    ax.plot([w], [v], marker="*", ms=11, color=color, mec="black", mew=0.6, ls="none")
    for ax, key in zip(flat, keys):
        ax.set_title(paper.TITLES[key] + (" (selects the best, ★)" if key == "average" else ""), fontsize=10)
        ax.set_xlabel("words seen", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    flat[-1].axis("off")
    handles, labels = flat[-2].get_legend_handles_labels()
    if handles:
        flat[-1].legend(handles, labels, loc="center", fontsize=8 if len(labels) <= 10 else 6, ncol=1 if len(labels) <= 12 else 2)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return True


def blimp_groups(data_dir: Path | None) -> dict[str, tuple[str, str]]:
    """``{UID: (linguistics_term, field)}`` from the BLiMP files of ``data_dir`` (first line of each)."""
    out: dict[str, tuple[str, str]] = {}
    if data_dir is None or not Path(data_dir).is_dir():
        return out
    for path in sorted(Path(data_dir).glob("*.jsonl")):
        try:
            with path.open(encoding="utf-8") as fh:
                obj = json.loads(fh.readline())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(obj, dict) and "UID" in obj:
            field = re.sub(r"[/\- ]+", "_", str(obj.get("field", "")))   # the files spell it 3 ways
            out[str(obj["UID"])] = (str(obj.get("linguistics_term", obj["UID"])), field)
    return out


def _best_blimp(run: Any) -> tuple[dict[str, Any], str] | None:
    best = (run.summary or {}).get("best")
    if not best:
        return None
    results = read_json(run.dir / "eval" / best["checkpoint"] / "results.json")
    blimp = (results or {}).get("tasks", {}).get("blimp", {})
    if blimp.get("status") != "ok" or not isinstance(blimp.get("per_paradigm"), dict):
        return None
    return blimp, best["checkpoint"]


def plot_blimp(runs: Sequence[Any], path: Path, title: str, eval_data_dir: Path | None = None) -> bool:
    """BLiMP accuracy by phenomenon (or by paradigm) of the best checkpoint of the best runs."""
    found = [(r, *b) for r in runs if (b := _best_blimp(r)) is not None]
    if not found:
        return False
    found.sort(key=lambda t: -(finite((t[0].best or {}).get("average")) or -1e9))
    found = found[:MAX_BLIMP_RUNS]
    data_dirs = [Path(b.get("data", "")) for _, b, _ in found if b.get("data")]
    if eval_data_dir is not None:
        data_dirs.append(Path(eval_data_dir) / "fast_eval" / "blimp_fast")
    groups: dict[str, tuple[str, str]] = {}
    for d in data_dirs:
        groups = blimp_groups(d)
        if groups:
            break
    per_run: list[dict[str, float]] = []
    for _, blimp, _ in found:
        buckets: dict[str, list[float]] = {}
        for uid, counts in blimp["per_paradigm"].items():
            acc = finite(counts.get("accuracy"))
            if acc is None:
                continue
            term, fld = groups.get(uid, (uid, ""))
            label = f"{term} ({fld})" if groups and fld else term
            buckets.setdefault(label, []).append(acc)
        per_run.append({k: sum(v) / len(v) for k, v in buckets.items()})
    labels = sorted(set().union(*per_run))
    plt = _pyplot()
    height = max(3.5, 0.28 * len(labels) * max(1, min(len(found), 4)) / 2 + 1.5)
    fig, ax = plt.subplots(figsize=(10, min(height, 40)))
    n = len(found)
    bar = 0.8 / n
    for i, ((run, _, ckpt), accs, color) in enumerate(zip(found, per_run, _colors(n))):
        ys = [j + (i - (n - 1) / 2) * bar for j in range(len(labels))]
        ax.barh(ys, [accs.get(lbl, float("nan")) for lbl in labels], height=bar, color=color,
                label=f"{run.run_id} ({ckpt})")
    ax.set_yticks(range(len(labels)), labels, fontsize=8 if len(labels) < 30 else 6)
    ax.invert_yaxis()
    ax.axvline(50, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="accuracy (%)", xlim=(0, 100),
           title=title + (" — by phenomenon (field)" if groups else " — by paradigm"))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
    return True


def read_alphas(run_dir: Path) -> tuple[list[int], list[list[float]], str] | None:
    """(words seen per checkpoint, α per layer per checkpoint, swa mode) of a DynMod run, or None.
    Reads only the α tensors of each checkpoint's weights; a run whose checkpoints hold no weights
    (a copy without them) is read from its training log instead (:func:`logged_alphas`)."""
    from safetensors import safe_open

    from blalm.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE
    from blalm.run.checkpoint import list_checkpoints
    from blalm.run.layout import checkpoints_dir

    words, alphas, mode = [], [], ""
    for ckpt in list_checkpoints(checkpoints_dir(run_dir)):    # complete ones, by step
        folder = Path(ckpt["path"])
        model_cfg = read_json(folder / CONFIG_FILE)
        if not isinstance(model_cfg, dict) or not (folder / WEIGHTS_FILE).is_file():
            continue
        mode = str(model_cfg.get("swa", mode))
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as fh:
            found = sorted((int(m.group(1)), k) for k in fh.keys() if (m := ALPHA_PARAM.match(k)))
            if not found:
                return None
            alphas.append([float(fh.get_tensor(k).float().reshape(-1)[0]) for _, k in found])
        words.append(int(ckpt.get("words_seen", 0)))
    return (words, alphas, mode) if words else logged_alphas(run_dir)


def logged_alphas(run_dir: Path) -> tuple[list[int], list[list[float]], str] | None:
    """(words seen, α per layer, swa mode) at every ``train`` record of a DynMod run's log, or None.
    The trainer logs the weight each layer applies: α for ``dynmod``, tanh(α) for ``dynmod_bounded``
    (inverted here)."""
    from blalm.run.layout import CONFIG_FILE as RUN_CONFIG_FILE
    from blalm.run.metrics import read_metrics

    config = read_json(Path(run_dir) / RUN_CONFIG_FILE)
    mode = str(((config or {}).get("model") or {}).get("swa", "")) if isinstance(config, dict) else ""
    if not mode.startswith("dynmod"):
        return None
    words, alphas = [], []
    for rec in read_metrics(run_dir, "train"):
        coeffs = rec.get("swa_coefficients")
        if coeffs and "words_seen" in rec:
            words.append(int(rec["words_seen"]))
            alphas.append([math.atanh(min(max(c, -1 + 1e-7), 1 - 1e-7)) if mode == "dynmod_bounded" else float(c)
                           for c in coeffs])
    return (words, alphas, mode) if words else None


def plot_dynmod_alpha(runs: Sequence[Any], path: Path, title: str) -> bool:
    """α of every layer against words seen, one panel per DynMod run (paper App. G.1)."""
    found = []
    for run in runs:
        if str(run.model.get("swa", "none")).startswith("dynmod"):
            got = read_alphas(run.dir)
            if got is not None:
                found.append((run, got))
    if not found:
        return False
    plt = _pyplot()
    cols = min(len(found), 3)
    rows = math.ceil(len(found) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, (run, (words, alphas, mode)) in zip(axes.ravel(), found):
        n_layers = len(alphas[0])
        for layer in range(n_layers):
            color = cmap(layer / max(1, n_layers - 1))
            series = [a[layer] for a in alphas]
            ax.plot(words, series, color=color, lw=1.3, marker="o", ms=2.5, label=f"layer {layer}")
            if mode == "dynmod_bounded":
                ax.plot(words, [math.tanh(v) for v in series], color=color, lw=0.9, ls="--")
        ax.set(xlabel="words seen", ylabel="α" + (" (dashed: tanh α)" if mode == "dynmod_bounded" else ""),
               title=f"{run.run_id} ({mode})")
        ax.axhline(0, color="grey", lw=0.6)
        ax.grid(alpha=0.3)
        if n_layers <= 12:
            ax.legend(fontsize=7, ncol=2 if n_layers > 6 else 1)
        else:
            sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, n_layers - 1))
            fig.colorbar(sm, ax=ax, label="layer")
    for ax in axes.ravel()[len(found):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_source(source: Any, out_dir: Path, slug: str, eval_data_dir: Path | None = None) -> list[tuple[str, str]]:
    """Every plot of one report source; ``[(file name, caption)]`` of those written."""
    out = []
    tracks = sorted({r.track for r in source.runs})
    for track in tracks:
        runs = [r for r in source.runs if r.track == track and r.dir.is_dir()]
        suffix = f"_{track}" if len(tracks) > 1 else ""
        label = f"{source.title}" + (f" — {track}" if track != "none" else "")
        name = f"{slug}{suffix}_training.png"
        if plot_training(runs, out_dir / name, label):
            out.append((name, f"Training loss and validation perplexity against words seen ({label})"))
        name = f"{slug}{suffix}_scores.png"
        if plot_scores(runs, out_dir / name, label):
            out.append((name, f"Scores against words seen at every scored checkpoint ({label})"))
        name = f"{slug}{suffix}_blimp.png"
        if plot_blimp(runs, out_dir / name, f"BLiMP, best checkpoints ({label})", eval_data_dir):
            out.append((name, f"BLiMP by phenomenon, best checkpoint of the best runs ({label})"))
        name = f"{slug}{suffix}_dynmod_alpha.png"
        if plot_dynmod_alpha(runs, out_dir / name, f"DynMod α per layer over training ({label})"):
            out.append((name, f"DynMod α of every layer over training, paper App. G.1 ({label})"))
    return out
