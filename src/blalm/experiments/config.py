"""The typed config of an experiment (``configs/experiments/*.toml``).

An experiment is a grid of named training runs per track, each run a list of ``--set``-style
overrides on the track's base training config, trained on one of the track's corpora::

    name = "exp2_architecture"
    paper_table = "table3"             # the paper table the report reproduces (blalm.report.paper)
    seeds = [0]                        # every run once per seed (a run may give its own seeds)

    [tracks.strict-small]
    train_config = "configs/train/strict_small.toml"
    set = ["optimizer=\"adamw\""]      # every run of this track
    [tracks.strict-small.corpora.curated]
    config = "configs/corpus/strict_small.toml"   # built once into DIR/corpora/<track>-<name>/
    # dir = "out/strict_small/corpus"             # or an existing corpus folder (+ tokenizer_dir)

    [runs.blalm_lr5e-4]
    set = ["lr=5e-4"]                  # corpus = "curated" (the first corpus) unless given
    # tracks = ["strict"]              # only in these tracks (default: every track)

    [scales.reduced]                   # --scale reduced: merged over the experiment before it is read;
    train_set = ["model.num_layers=4"] # train_set / corpus_set are appended to every run / corpus
    corpus_set = ["budget_words=500000"]
    lr_multiplier = 1.0                # every run's lr (and muon_lr) times this
    budget_scale = 0.05                # every built corpus's budget_words and dev_words times this
    [scales.reduced.eval]
    last = 3                           # score only the last 3 checkpoints of each run

Override order for a run: the base training config <- the track's ``set`` <- the run's ``set`` <-
the scale's ``train_set`` <- ``seed`` <- the corpus and tokenizer folders <- ``--train-set`` of the
command line. Load with :func:`load_experiment`; :func:`expand_grid` lists the runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from blalm.config import Origin, check, deep_merge, load_config, set_dotted
from blalm.errors import ConfigError
from blalm.runinfo import REPO_ROOT

PaperTable = Literal["", "table2", "table3", "table4", "table5", "table6", "table7"]
TRACKS = ("strict-small", "strict")
LIST_KEYS = ("train_set", "corpus_set")   # a scale's lists are appended, not replaced
PAPER_EVAL_TASKS = ["blimp", "blimp_supplement", "entity_tracking", "ewok", "eye_tracking", "self_paced_reading"]


@dataclass
class CorpusSpec:
    config: str = ""              # a corpus config (configs/corpus/*.toml), built once by the sweep
    set: list[str] = field(default_factory=list)   # overrides for that corpus config
    dir: str = ""                 # an existing corpus folder ('blalm corpus' output) instead of config
    tokenizer_dir: str = ""       # an existing tokenizer folder; "" = trained on the corpus by the sweep

    def validate(self) -> None:
        check(bool(self.config) != bool(self.dir),
              "a corpus gives exactly one of 'config' (built by the sweep) or 'dir' (an existing corpus folder)")


@dataclass
class TrackSpec:
    train_config: str             # base training config (configs/train/*.toml)
    corpora: dict[str, CorpusSpec] = field(default_factory=dict)
    set: list[str] = field(default_factory=list)   # overrides for every run of the track

    def validate(self) -> None:
        check(bool(self.corpora), "a track needs at least one [tracks.TRACK.corpora.NAME] table")


@dataclass
class RunSpec:
    set: list[str] = field(default_factory=list)   # training overrides of this run
    corpus: str = ""              # a corpus name of the track ("" = its first corpus)
    seeds: list[int] | None = None  # None = the experiment's seeds
    tracks: list[str] = field(default_factory=list)  # only these tracks ([] = every track)
    label: str = ""               # a readable name for tables ("" = the run's name)


@dataclass
class SweepEvalConfig:
    enabled: bool = True          # score the checkpoints after training
    last: int = 0                 # score only the last N checkpoints of each run (0 = all, as the paper)
    suite: Literal["fast", "full"] = "fast"
    tasks: list[str] = field(default_factory=lambda: list(PAPER_EVAL_TASKS))
    data_dir: str = ""            # evaluation data ("" = --data-dir/eval, else the default)
    batch_size: int = 64
    device: Literal["auto", "cpu", "cuda"] = "auto"
    entity_fast_per_group: int = 100

    def validate(self) -> None:
        check(self.last >= 0, f"eval.last must be >= 0 (0 = every checkpoint), got {self.last}")
        check(self.batch_size >= 1, f"eval.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class ExperimentConfig:
    name: str
    title: str = ""
    paper_table: PaperTable = ""
    description: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    vocab_size: int = 15000       # tokenizers the sweep trains
    tracks: dict[str, TrackSpec] = field(default_factory=dict)
    runs: dict[str, RunSpec] = field(default_factory=dict)
    eval: SweepEvalConfig = field(default_factory=SweepEvalConfig)
    # the chosen scale's settings (merged in by load_experiment)
    scale: str = "paper"
    train_set: list[str] = field(default_factory=list)
    corpus_set: list[str] = field(default_factory=list)
    lr_multiplier: float = 1.0
    budget_scale: float = 1.0     # every built corpus's budget_words and dev_words times this
    scales: dict[str, Any] = field(default_factory=dict)   # every scale table, as written
    source: str = ""              # the file it was read from

    def validate(self) -> None:
        check(bool(self.tracks), "no [tracks.TRACK] table: an experiment needs at least one track")
        for name in self.tracks:
            check(name in TRACKS, f"tracks.{name}: unknown track; use one of {', '.join(TRACKS)}")
        check(bool(self.runs), "no [runs.NAME] table: an experiment needs at least one run")
        check(bool(self.seeds), "seeds: give at least one seed")
        check(self.lr_multiplier > 0, f"lr_multiplier must be > 0, got {self.lr_multiplier}")
        check(0 < self.budget_scale <= 1, f"budget_scale must be in (0, 1], got {self.budget_scale}")
        check(self.vocab_size >= 300, f"vocab_size must be >= 300, got {self.vocab_size}")
        for run_name, run in self.runs.items():
            check(bool(run_name) and "/" not in run_name and run_name not in (".", ".."),
                  f"runs.{run_name}: a run name is a folder name (no '/')")
            for t in run.tracks:
                check(t in self.tracks, f"runs.{run_name}.tracks: {t!r} is not a track of this experiment "
                                        f"({', '.join(self.tracks)})")
            for t in run.tracks or list(self.tracks):
                corpora = self.tracks[t].corpora
                check(not run.corpus or run.corpus in corpora,
                      f"runs.{run_name}.corpus: {run.corpus!r} is not a corpus of track {t} ({', '.join(corpora)})")
            check(run.seeds is None or bool(run.seeds), f"runs.{run_name}.seeds: give at least one seed")


@dataclass(frozen=True)
class PlannedRun:
    """One training run of the grid."""

    track: str
    name: str                    # the run's name in the experiment (a paper row key with the track)
    seed: int
    corpus: str                  # corpus name within the track
    overrides: tuple[str, ...]   # on the track's train_config (corpus/tokenizer folders not yet set)
    label: str

    @property
    def run_id(self) -> str:
        return f"{self.track}/{self.name}/seed{self.seed}"

    @property
    def paper_key(self) -> str:
        return f"{self.track}/{self.name}"

    def folder(self, out_dir: Path) -> Path:
        return Path(out_dir) / "runs" / self.track / self.name / f"seed{self.seed}"


def resolve_path(path: str | Path) -> Path:
    """``path`` as given when absolute or found from the current folder, else under the repository root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    candidate = REPO_ROOT / p
    return candidate if candidate.exists() else p


def load_experiment(path: str | Path, overrides: Sequence[str] = (), scale: str | None = None) -> ExperimentConfig:
    """Read an experiment config, apply ``key=value`` overrides, merge the chosen scale
    (``scale`` or the file's ``scale``; "paper" needs no table) and build the typed config."""
    path = resolve_path(path)

    def merge_scale(data: dict[str, Any], origin: Origin) -> dict[str, Any]:
        return _merge_scale(data, origin, scale, path)

    return load_config(ExperimentConfig, path, overrides, prepare=merge_scale)


def _merge_scale(data: dict[str, Any], origin: Origin, scale: str | None, path: Path) -> dict[str, Any]:
    """The experiment's keys with the chosen ``[scales.NAME]`` table merged in (lists appended)."""
    where = origin.source
    scales = data.get("scales", {})
    if not isinstance(scales, dict):
        raise ConfigError(f"{where}: 'scales' must be a table of [scales.NAME] tables")
    chosen = scale or data.get("scale", "paper")
    if not isinstance(chosen, str):
        raise origin.error("scale", "'scale' must be a string")
    if chosen not in scales and chosen != "paper":
        raise ConfigError(f"{where}: unknown scale {chosen!r}; this experiment has: "
                          f"{', '.join(['paper'] + [s for s in scales if s != 'paper'])}")
    table = scales.get(chosen, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: scales.{chosen} must be a table")
    allowed = set(LIST_KEYS) | {"lr_multiplier", "budget_scale", "eval", "vocab_size", "seeds", "description"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise origin.error(f"scales.{chosen}.{unknown[0]}", f"unknown key 'scales.{chosen}.{unknown[0]}'; "
                                                            f"allowed keys: {', '.join(sorted(allowed))}")
    merged = deep_merge(data, {k: v for k, v in table.items() if k not in LIST_KEYS and k != "description"})
    for key in LIST_KEYS:
        if key in table:
            merged[key] = list(data.get(key, [])) + list(table[key])
    for key, value in origin.values.items():     # the command line wins over the scale's table
        if key.split(".")[0] not in LIST_KEYS:
            set_dotted(merged, key, value)
    merged["scale"] = chosen
    merged["source"] = str(path)
    return merged


def expand_grid(exp: ExperimentConfig, tracks: Sequence[str] = (), runs: Sequence[str] = ()) -> list[PlannedRun]:
    """Every (track, run, seed) of the experiment, in config order; ``tracks`` / ``runs`` select."""
    for t in tracks:
        if t not in exp.tracks:
            raise ConfigError(f"{exp.source}: track {t!r} is not in this experiment ({', '.join(exp.tracks)})")
    for r in runs:
        if r not in exp.runs:
            raise ConfigError(f"{exp.source}: run {r!r} is not in this experiment ({', '.join(exp.runs)})")
    out = []
    for track_name, track in exp.tracks.items():
        if tracks and track_name not in tracks:
            continue
        for run_name, run in exp.runs.items():
            if runs and run_name not in runs:
                continue
            if run.tracks and track_name not in run.tracks:
                continue
            corpus = run.corpus or next(iter(track.corpora))
            for seed in (run.seeds if run.seeds is not None else exp.seeds):
                overrides = tuple(track.set) + tuple(run.set) + tuple(exp.train_set) + (f"seed={seed}",)
                out.append(PlannedRun(track_name, run_name, seed, corpus, overrides, run.label or run_name))
    return out
