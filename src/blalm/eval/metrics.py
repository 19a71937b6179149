"""Pure scoring functions of the evaluation stage: numbers in, numbers out (numpy only, no I/O).

Each function restates a definition of the official BabyLM 2025 pipeline
(``babylm/evaluation-pipeline-2025``); the file named in each docstring is where it is defined
there. The pipeline uses scipy and statsmodels; we compute the same quantities with numpy so that
the stage needs no further dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np


# ---------------------------------------------------------------------------------------------
# Ranking tasks (BLiMP, supplement, EWoK, entity tracking)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Choice:
    """The outcome of one multiple-choice item whose correct candidate is index 0.

    ``correct`` follows the pipeline (``sentence_zero_shot/compute_results.py``: the prediction is
    ``torch.max(...)[1]``, the first maximum, and the label is always 0), so an item whose correct
    candidate ties with the best other candidate counts as correct. ``tie`` marks those items;
    ``strictly_correct`` counts them as wrong.
    """

    correct: bool
    tie: bool

    @property
    def strictly_correct(self) -> bool:
        return self.correct and not self.tie


def judge(scores: Sequence[float]) -> Choice:
    """Judge one item from its candidates' summed log-probabilities (index 0 is the correct one)."""
    if len(scores) < 2:
        raise ValueError(f"an item needs at least two candidates, got {len(scores)}")
    best_other = max(scores[1:])
    return Choice(correct=scores[0] >= best_other, tie=scores[0] == best_other)


@dataclass
class GroupCount:
    n: int = 0
    correct: int = 0
    ties: int = 0

    def add(self, choice: Choice) -> None:
        self.n += 1
        self.correct += int(choice.correct)
        self.ties += int(choice.tie)

    def as_dict(self) -> dict:
        return {"n": self.n, "correct": self.correct, "ties": self.ties,
                "accuracy": 100.0 * self.correct / self.n,
                "accuracy_ties_wrong": 100.0 * (self.correct - self.ties) / self.n}


def count_by_group(groups: Sequence[str], choices: Sequence[Choice]) -> dict[str, GroupCount]:
    """Counts per group (BLiMP paradigm, EWoK domain, entity-tracking split and number of operations),
    groups in first-seen order."""
    out: dict[str, GroupCount] = {}
    for group, choice in zip(groups, choices, strict=True):
        out.setdefault(group, GroupCount()).add(choice)
    return out


def macro_accuracy(counts: Mapping[str, GroupCount], ties_correct: bool = True) -> float:
    """Unweighted mean over groups of each group's accuracy, in percent (``sentence_zero_shot/run.py``
    ``process_results``: the mean of the per-UID accuracies)."""
    if not counts:
        raise ValueError("no groups to average")
    accs = [100.0 * (c.correct - (0 if ties_correct else c.ties)) / c.n for c in counts.values()]
    return float(sum(accs) / len(accs))


def entity_tracking_average(counts: Mapping[str, GroupCount], splits: Sequence[str],
                            ties_correct: bool = True) -> tuple[float, dict[str, float]]:
    """Entity tracking's score (``sentence_zero_shot/run.py`` ``process_results``): per split, the mean
    of the accuracies of its ``{split}_{numops}_ops`` groups; then the mean over the splits present."""
    per_split: dict[str, float] = {}
    for split in splits:
        keys = [k for k in counts if k.startswith(f"{split}_") and k[len(split) + 1:].split("_")[0].isdigit()]
        if keys:
            per_split[split] = macro_accuracy({k: counts[k] for k in keys}, ties_correct)
    if not per_split:
        raise ValueError("no entity-tracking split present")
    return float(sum(per_split.values()) / len(per_split)), per_split


# ---------------------------------------------------------------------------------------------
# Correlations (WUG, AoA)
# ---------------------------------------------------------------------------------------------

def softmax_first(scores: Sequence[float]) -> float:
    """Probability of candidate 0 under a softmax over the candidates' summed log-probabilities
    (the WUG "model ratio", ``sentence_zero_shot/compute_results.py`` ``rank_and_evaluate_wug``),
    in float32 as the pipeline takes it: a preference that saturates there (exactly 0 or 1) ties
    with the others that do, and Spearman's rho ranks such ties as the pipeline does."""
    s = np.asarray(scores, dtype=np.float32)
    e = np.exp(s - s.max())
    return float(e[0] / e.sum())


def rank_average(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing their mean rank (scipy's ``rankdata(method="average")``)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    sorted_a = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; NaN when either side is constant or has fewer than two values."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"pearson: lengths differ ({len(a)} vs {len(b)})")
    if len(a) < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den == 0.0:
        return float("nan")
    return float(max(-1.0, min(1.0, float((a * b).sum()) / den)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks (``scipy.stats.spearmanr``'s definition)."""
    return pearson(rank_average(x), rank_average(y))


# ---------------------------------------------------------------------------------------------
# Reading (eye tracking, self-paced reading)
# ---------------------------------------------------------------------------------------------

def ols_r2(y: Sequence[float], columns: Sequence[Sequence[float]]) -> float:
    """R² of an ordinary least-squares fit of ``y`` on the given predictor columns plus an intercept
    (statsmodels' ``rsquared`` for a model with a constant: 1 − SSR / centred TSS)."""
    yy = np.asarray(y, dtype=np.float64)
    X = np.column_stack([np.ones(len(yy))] + [np.asarray(c, dtype=np.float64) for c in columns])
    if len(yy) <= X.shape[1]:
        raise ValueError(f"ols: {len(yy)} rows are too few for {X.shape[1]} parameters")
    coef, *_ = np.linalg.lstsq(X, yy, rcond=None)
    resid = yy - X @ coef
    tss = float(((yy - yy.mean()) ** 2).sum())
    if tss == 0.0:
        raise ValueError("ols: the target is constant")
    return 1.0 - float(resid @ resid) / tss


def design_with_interactions(named: Mapping[str, Sequence[float]]) -> tuple[list[str], list[np.ndarray]]:
    """Main effects then every pairwise product, in the order the pipeline's formulas list them
    (``a + b + c + a:b + a:c + b:c``)."""
    names = list(named)
    cols = [np.asarray(named[n], dtype=np.float64) for n in names]
    out_names, out_cols = list(names), list(cols)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out_names.append(f"{names[i]}:{names[j]}")
            out_cols.append(cols[i] * cols[j])
    return out_names, out_cols


def complete_rows(*columns: Sequence[float]) -> np.ndarray:
    """Boolean mask of the rows where every column is a finite number (pandas' ``dropna``)."""
    mask = np.ones(len(columns[0]), dtype=bool)
    for c in columns:
        mask &= np.isfinite(np.asarray(c, dtype=np.float64))
    return mask


def predictive_power(target: Sequence[float], baseline: Mapping[str, Sequence[float]],
                     surprisal: Sequence[float]) -> dict[str, float]:
    """How much a surprisal predictor adds to a baseline regression (``reading/run.py``).

    The baseline regresses ``target`` on the baseline predictors and all their pairwise interactions,
    on the rows where target and baseline predictors are present; the full model adds ``surprisal``
    as one more main effect, on the rows where it is present too. Returns both R², the plain
    ΔR² and the pipeline's reported score, ``(R²_model − R²_baseline) / (1 − R²_baseline) × 100``
    (the share of the baseline's unexplained variance that surprisal explains, in percent).
    """
    y = np.asarray(target, dtype=np.float64)
    base_cols = {k: np.asarray(v, dtype=np.float64) for k, v in baseline.items()}
    s = np.asarray(surprisal, dtype=np.float64)
    rows_b = complete_rows(y, *base_cols.values())
    rows_m = rows_b & complete_rows(s)
    _, cols_b = design_with_interactions({k: v[rows_b] for k, v in base_cols.items()})
    r2_b = ols_r2(y[rows_b], cols_b)
    _, cols_m = design_with_interactions({k: v[rows_m] for k, v in base_cols.items()})
    r2_m = ols_r2(y[rows_m], cols_m + [s[rows_m]])
    return {"r2_baseline": r2_b, "r2_model": r2_m, "delta_r2": r2_m - r2_b,
            "score": (r2_m - r2_b) / (1.0 - r2_b) * 100.0,
            "rows_baseline": int(rows_b.sum()), "rows_model": int(rows_m.sum())}


# ---------------------------------------------------------------------------------------------
# Sigmoid fits (age of acquisition)
# ---------------------------------------------------------------------------------------------

def sigmoid4(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """``a / (1 + exp(-b (x - c))) + d`` (``utils.py`` ``sigmoid_function``)."""
    with np.errstate(over="ignore"):
        return a / (1.0 + np.exp(-b * (x - c))) + d


def fit_curve(f: Callable[..., np.ndarray], x: Sequence[float], y: Sequence[float], p0: Sequence[float],
              lower: Sequence[float] | None = None, upper: Sequence[float] | None = None,
              max_iter: int = 1000) -> np.ndarray | None:
    """Least-squares fit of ``y ≈ f(x, *p)`` by Levenberg–Marquardt with a numerical Jacobian;
    with bounds, each step is projected onto the box. Returns the parameters, or None when the
    fit does not converge to finite values (scipy's ``curve_fit`` raising, in the pipeline)."""
    xx = np.asarray(x, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    p = np.asarray(p0, dtype=np.float64).copy()
    lo = np.full_like(p, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    hi = np.full_like(p, np.inf) if upper is None else np.asarray(upper, dtype=np.float64)
    p = np.clip(p, lo, hi)

    def residual(q: np.ndarray) -> np.ndarray:
        return f(xx, *q) - yy

    r = residual(p)
    if not np.all(np.isfinite(r)):
        return None
    cost = float(r @ r)
    lam = 1e-3
    for _ in range(max_iter):
        J = np.empty((len(xx), len(p)))
        for k in range(len(p)):
            h = 1e-7 * max(1.0, abs(p[k]))
            q = p.copy()
            q[k] += h
            J[:, k] = (residual(q) - r) / h
        if not np.all(np.isfinite(J)):
            return None
        A = J.T @ J
        g = J.T @ r
        improved = False
        while lam < 1e12:
            step = _bounded_step(A, g, lam, p, lo, hi)
            if step is None:
                lam *= 10
                continue
            q = np.clip(p + step, lo, hi)
            rq = residual(q)
            cq = float(rq @ rq) if np.all(np.isfinite(rq)) else np.inf
            if cq < cost:
                # scipy's defaults: stop on a relative cost or parameter change below 1e-8; we use 1e-10
                done = (cost - cq <= 1e-10 * cost
                        or float(np.linalg.norm(q - p)) <= 1e-10 * (1e-10 + float(np.linalg.norm(p))))
                p, r, cost = q, rq, cq
                lam = max(lam / 10, 1e-12)
                improved = True
                break
            lam *= 10
        if not improved or done:
            break
    return p if np.all(np.isfinite(p)) else None


def _bounded_step(A: np.ndarray, g: np.ndarray, lam: float, p: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray) -> np.ndarray | None:
    """The damped Gauss-Newton step, with parameters held at a bound the step would cross fixed
    (solved again over the free ones), so the fit slides along the bound instead of stalling."""
    free = np.ones(len(p), dtype=bool)
    step = np.zeros(len(p))
    for _ in range(len(p) + 1):
        idx = np.flatnonzero(free)
        if len(idx) == 0:
            return step
        sub = A[np.ix_(idx, idx)]
        try:
            step = np.zeros(len(p))
            step[idx] = np.linalg.solve(sub + lam * np.diag(np.diag(sub) + 1e-12), -g[idx])
        except np.linalg.LinAlgError:
            return None
        blocked = free & (((p <= lo) & (step < 0)) | ((p >= hi) & (step > 0)))
        if not blocked.any():
            return step
        free &= ~blocked
    return step


def sigmoid_crossing(a: float, b: float, c: float, d: float, level: float) -> float | None:
    """Where ``sigmoid4`` reaches ``level``: ``c − ln(a / (level − d) − 1) / b``; None when the curve
    never reaches it (``level`` outside ``(d, a + d)``) or is not increasing (``a, b ≤ 0``)."""
    if a <= 0 or b <= 0 or not (d < level < a + d):
        return None
    return float(c - math.log(a / (level - d) - 1.0) / b)
