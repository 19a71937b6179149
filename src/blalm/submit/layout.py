"""The names and places of a BabyLM 2025 submission, as the official pipeline defines them.

* **Revisions** (``collate_preds.py`` ``STRICT_SMALL_FAST_REVISIONS`` / ``OTHER_FAST_REVISIONS``):
  strict-small ``chck_1M`` … ``chck_9M``, ``chck_10M`` … ``chck_100M`` (19); strict (and the other
  tracks) ``chck_1M`` … ``chck_9M``, ``chck_10M`` … ``chck_90M``, ``chck_100M`` … ``chck_1000M`` (28).
  ``chck_NM`` is the model after N million words seen.
* **Milestone mapping.** ``blalm train`` checkpoints at the BabyLM milestones times
  ``milestone_scale`` and lists the milestones each checkpoint reached in its ``state.json``
  (``milestones``, words seen). Revision ``chck_NM`` is the checkpoint that reached
  ``round(N × 1M × milestone_scale)`` words: with scale 1 the real milestone; with another scale
  (a CPU demo on a small corpus) the scaled milestones map to the official names in order, so
  ``chck_3M`` of a run at scale 0.05 is its checkpoint at 150k words seen. A checkpoint that reached
  two milestones in one optimizer step serves both names. A revision whose milestone the run never
  reached is missing (a shorter run).
* **Results** (``sentence_zero_shot/run.py``, ``reading/run.py``, ``finetune/run.py``,
  ``AoA_word/run.py``): ``results/NAME/REVISION/zero_shot/causal/<task>/<dataset>/predictions.json``,
  ``results/NAME/REVISION/zero_shot/causal/reading/predictions.json``,
  ``results/NAME/main/finetune/<task>/predictions.json`` and
  ``results/NAME/main/zero_shot/causal/AoA_word/surprisal.json``; ``<dataset>`` is the data folder's
  name (``blimp_fast``, ``blimp_filtered``, ...).
* **Data** under the evaluation data folder (``../shared/data/eval``, the official
  ``evaluation_data`` layout). The official fast entity tracking (``entity_tracking_fast``) holds
  exactly the items of the full set's ``regular`` split (its sizes in ``collate_preds.py`` are the
  regular split's), so where ``fast_eval/entity_tracking_fast`` is absent the fast suite reads
  ``full_eval/entity_tracking/regular.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

BACKEND = "causal"
MAIN = "main"
UNIT = 1_000_000

TRACK_REVISIONS: dict[str, tuple[str, ...]] = {
    "strict-small": tuple(f"chck_{i}M" for i in range(1, 10)) + tuple(f"chck_{10 * i}M" for i in range(1, 11)),
    "strict": (tuple(f"chck_{i}M" for i in range(1, 10)) + tuple(f"chck_{10 * i}M" for i in range(1, 10))
               + tuple(f"chck_{100 * i}M" for i in range(1, 11))),
}
GLUE_TASKS = ("boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc")   # collate_preds.py's order


def revision_words(revision: str) -> int:
    """``chck_3M`` → 3,000,000 (the official word count of the revision)."""
    return int(revision.removeprefix("chck_").removesuffix("M")) * UNIT


@dataclass(frozen=True)
class ZeroShotTask:
    name: str                    # our name (the collated file's key)
    task: str                    # the official --task (folder under zero_shot/causal/)
    data: dict[str, str]         # suite -> data path under the evaluation folder
    dataset: dict[str, str]      # suite -> dataset folder name under the task ("" for reading)


ZERO_SHOT_TASKS: tuple[ZeroShotTask, ...] = (
    ZeroShotTask("blimp", "blimp", {"fast": "fast_eval/blimp_fast", "full": "full_eval/blimp_filtered"},
                 {"fast": "blimp_fast", "full": "blimp_filtered"}),
    ZeroShotTask("blimp_supplement", "blimp",
                 {"fast": "fast_eval/supplement_fast", "full": "full_eval/supplement_filtered"},
                 {"fast": "supplement_fast", "full": "supplement_filtered"}),
    ZeroShotTask("ewok", "ewok", {"fast": "fast_eval/ewok_fast.zip", "full": "full_eval/ewok_filtered.zip"},
                 {"fast": "ewok_fast", "full": "ewok_filtered"}),
    ZeroShotTask("entity_tracking", "entity_tracking",
                 {"fast": "fast_eval/entity_tracking_fast", "full": "full_eval/entity_tracking"},
                 {"fast": "entity_tracking_fast", "full": "entity_tracking"}),
    ZeroShotTask("wug_adj", "wug_adj",
                 {s: f"{s}_eval/wug_adj_nominalization/wug_adj_nominalization.jsonl" for s in ("fast", "full")},
                 {"fast": "wug_adj_nominalization", "full": "wug_adj_nominalization"}),
    ZeroShotTask("wug_past", "wug_past", {s: f"{s}_eval/wug_past_tense.zip" for s in ("fast", "full")},
                 {"fast": "wug_past_tense", "full": "wug_past_tense"}),
    ZeroShotTask("comps", "comps", {"full": "full_eval/comps"}, {"full": "comps"}),
    ZeroShotTask("reading", "reading", {s: f"{s}_eval/reading/reading_data.csv" for s in ("fast", "full")},
                 {"fast": "", "full": ""}),
)
FAST_TASKS = tuple(t for t in ZERO_SHOT_TASKS if "fast" in t.data)
FULL_TASKS = ZERO_SHOT_TASKS
ENTITY_FAST_FALLBACK = "full_eval/entity_tracking"   # its regular split (see the module docstring)
AOA_WORD_FILES = ("full_eval/aoa/cdi_childes.json", "aoa/cdi_childes.json")   # eval_aoa.sh's default first
CDI_FILE = "aoa/child_american_english_proportions.csv"
GLUE_DATA = "full_eval/glue_filtered"


def zero_shot_dir(results: Path, name: str, revision: str) -> Path:
    return results / name / revision / "zero_shot" / BACKEND


def predictions_path(results: Path, name: str, revision: str, task: ZeroShotTask, suite: str) -> Path:
    base = zero_shot_dir(results, name, revision) / task.task
    return (base / task.dataset[suite] if task.dataset[suite] else base) / "predictions.json"


def glue_predictions_path(results: Path, name: str, task: str) -> Path:
    return results / name / MAIN / "finetune" / task / "predictions.json"


def aoa_path(results: Path, name: str) -> Path:
    return zero_shot_dir(results, name, MAIN) / "AoA_word" / "surprisal.json"


@dataclass(frozen=True)
class Milestone:
    """One official revision and the run checkpoint that serves it (None: the run lacks it)."""

    revision: str
    words: int                         # the official word count
    scaled_words: int                  # the run's milestone (words seen) that maps to it
    checkpoint: dict[str, Any] | None  # the checkpoint's state.json (+ "path"), or None


def map_milestones(checkpoints: Sequence[dict[str, Any]], track: str, scale: float) -> list[Milestone]:
    """Every revision of ``track`` with the checkpoint whose ``state.json`` lists its scaled milestone."""
    by_milestone: dict[int, dict[str, Any]] = {}
    for ckpt in checkpoints:
        for words in ckpt.get("milestones") or []:
            by_milestone.setdefault(int(words), ckpt)
    out = []
    for revision in TRACK_REVISIONS[track]:
        words = revision_words(revision)
        scaled = round(words * scale)      # blalm.train.milestones: round(milestone x scale)
        out.append(Milestone(revision, words, scaled, by_milestone.get(scaled)))
    return out
