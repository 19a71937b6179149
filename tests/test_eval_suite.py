"""``blalm eval`` end to end on a small copy of the evaluation data, and its refusals of bad input."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from blalm.config import from_dict
from blalm.errors import ConfigError, InputError
from blalm.eval import cli as eval_cli
from blalm.eval.config import EWOK_PASSWORD, PAPER_COLUMNS, EvalConfig
from blalm.eval.data import load_entity_tracking, load_minimal_pairs
from blalm.eval.loading import load_for_eval
from blalm.eval.suite import RESULTS_FILE, evaluate_model, paper_average
from test_eval_scoring import build_tiny_lm




@pytest.fixture(scope="module")
def tiny_path(data_dir: Path, tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), data_dir)


def _head(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as fh:
        dst.write_text("".join(line for _, line in zip(range(n), fh)), encoding="utf-8")


def make_mini_eval(src: Path, dst: Path) -> Path:
    """The official layout with small slices of the real files (the zips copied as they are)."""
    fe, fu = dst / "fast_eval", dst / "full_eval"
    for name in ("passive_1", "anaphor_gender_agreement", "wh_island"):
        _head(src / "fast_eval/blimp_fast" / f"{name}.jsonl", fe / "blimp_fast" / f"{name}.jsonl", 20)
    for name in ("hypernym", "turn_taking"):
        _head(src / "fast_eval/supplement_fast" / f"{name}.jsonl", fe / "supplement_fast" / f"{name}.jsonl", 10)
    shutil.copy(src / "fast_eval/ewok_fast.zip", fe / "ewok_fast.zip")
    shutil.copy(src / "fast_eval/wug_past_tense.zip", fe / "wug_past_tense.zip")
    _head(src / "fast_eval/wug_adj_nominalization/wug_adj_nominalization.jsonl",
          fe / "wug_adj_nominalization/wug_adj_nominalization.jsonl", 30)
    _head(src / "fast_eval/reading/reading_data.csv", fe / "reading/reading_data.csv", 301)
    (fu / "entity_tracking").mkdir(parents=True)
    for split in ("regular", "ambiref", "move_contents"):   # 3 items of each numops group
        lines = (src / "full_eval/entity_tracking" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        kept, seen = [], {}
        for line in lines:
            k = json.loads(line)["numops"]
            if seen.get(k, 0) < 3:
                seen[k] = seen.get(k, 0) + 1
                kept.append(line)
        (fu / "entity_tracking" / f"{split}.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    (dst / "aoa").mkdir(parents=True)
    shutil.copy(src / "aoa/child_american_english_proportions.csv", dst / "aoa")
    return dst


@pytest.fixture(scope="module")
def mini_eval(data_dir: Path, tmp_path_factory) -> Path:
    return make_mini_eval(data_dir / "eval", tmp_path_factory.mktemp("mini_eval"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blalm")
    eval_cli.register(p.add_subparsers(dest="verb"))
    return p


def ewok_plaintext_markers(zip_path: Path) -> list[bytes]:
    """A few distinctive EWoK sentences, read in memory, to look for on disk."""
    out = []
    with zipfile.ZipFile(zip_path) as zf:
        for name in [n for n in zf.namelist() if n.endswith(".jsonl")][:3]:
            rec = json.loads(zf.open(name, pwd=EWOK_PASSWORD).readline())
            out.append(rec["Context1"].encode("utf-8"))
    return out


def files_containing(roots: list[Path], markers: list[bytes], newer_than: float) -> list[Path]:
    hits = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = Path(dirpath) / f
                try:
                    st = p.stat()
                    if st.st_mtime < newer_than or st.st_size > 50_000_000 or p.suffix == ".zip":
                        continue
                    data = p.read_bytes()
                except OSError:
                    continue
                if any(m in data for m in markers):
                    hits.append(p)
    return hits


def test_cli_fast_suite_end_to_end(tiny_path, mini_eval, tmp_path, capsys):
    start = time.time() - 1
    out = tmp_path / "out"
    args = parser().parse_args(["eval", str(tiny_path), "--suite", "fast", "--data-dir", str(mini_eval),
                                "--out", str(out), "--batch-size", "16", "--entity-fast-items", "2",
                                "--quiet"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| BLiMP | B. Suppl. | Entity |  EWoK |" in printed
    report = json.loads((out / RESULTS_FILE).read_text())
    tasks = report["tasks"]
    for task, _ in PAPER_COLUMNS:
        assert tasks[task]["status"] == "ok", (task, tasks[task])
    assert report["average"]["status"] == "ok"
    assert report["average"]["score"] == pytest.approx(sum(tasks[t]["score"] for t, _ in PAPER_COLUMNS) / 6)
    assert f"{report['average']['score']:.2f} |" in printed
    # per-paradigm and per-split detail
    assert {k: v["n"] for k, v in tasks["blimp"]["per_paradigm"].items()} == {
        "passive_1": 20, "anaphor_gender_agreement": 20, "wh_island": 20}
    assert set(tasks["entity_tracking"]["per_split"]) == {"regular", "ambiref", "move_contents"}
    assert all(v["n"] == 2 for v in tasks["entity_tracking"]["per_group"].values())
    assert len(tasks["entity_tracking"]["per_group"]) == 18
    assert tasks["ewok"]["n_groups"] == 11 and tasks["ewok"]["n_items"] == 1100
    assert set(tasks["eye_tracking"]["per_measure"]) == {"RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound"}
    assert tasks["wug_adj"]["status"] == "ok" and tasks["wug_past"]["n_items"] == 50
    assert tasks["glue"]["status"] == "not available" and "blalm finetune" in tasks["glue"]["reason"]
    assert tasks["aoa"]["status"] == "not available" and "checkpoints" in tasks["aoa"]["reason"]
    assert "score" not in tasks["glue"] and "score" not in tasks["aoa"]
    assert report["prepend_bos"] is False and report["tokenizer_adds_bos"] is False
    assert report["run_info"]["config"]["suite"] == "fast"
    # EWoK's plaintext was never written: not in the out dir, this test's tmp dirs, or the system temp dir
    markers = ewok_plaintext_markers(mini_eval / "fast_eval/ewok_fast.zip")
    assert markers
    assert files_containing([out, tmp_path, mini_eval, Path(tempfile.gettempdir())], markers, start) == []


def test_missing_task_folder_is_skipped_with_its_reason(tiny_path, mini_eval, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(mini_eval, partial)
    shutil.rmtree(partial / "fast_eval/supplement_fast")
    (partial / "fast_eval/reading/reading_data.csv").unlink()
    cfg = from_dict(EvalConfig, {"data_dir": str(partial), "progress": False, "batch_size": 32,
                                 "tasks": ["blimp", "blimp_supplement", "reading", "glue"]})
    report = evaluate_model(tiny_path, cfg, out_dir=tmp_path / "out")
    tasks = report["tasks"]
    assert tasks["blimp"]["status"] == "ok"
    for name in ("blimp_supplement", "eye_tracking", "self_paced_reading"):
        assert tasks[name]["status"] == "skipped"
        assert "not found" in tasks[name]["reason"]
        assert tasks[name].get("score") is None
    assert "supplement_fast" in tasks["blimp_supplement"]["reason"]
    assert report["average"]["status"] == "not available"
    assert "blimp_supplement" in report["average"]["reason"] and "score" not in report["average"]
    assert set(tasks) == {"blimp", "blimp_supplement", "eye_tracking", "self_paced_reading", "glue"}


def test_malformed_jsonl_line_is_an_error_naming_file_and_line(tiny_path, mini_eval, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(mini_eval, bad)
    path = bad / "fast_eval/blimp_fast/passive_1.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = '{"sentence_good": "A cat sat.", "sentence_bad": '
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"passive_1\.jsonl:5: not valid JSON"):
        load_minimal_pairs(bad / "fast_eval/blimp_fast")
    lines[4] = '{"sentence_good": "A cat sat."}'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = from_dict(EvalConfig, {"data_dir": str(bad), "progress": False, "tasks": ["blimp"]})
    with pytest.raises(InputError, match=r"passive_1\.jsonl:5: missing key 'sentence_bad'"):
        evaluate_model(tiny_path, cfg)


def test_vocabulary_mismatch_and_bad_model_folders_are_errors(data_dir, tmp_path):
    small = build_tiny_lm(tmp_path / "mismatch", data_dir, vocab_size=300)
    with pytest.raises(InputError, match=r"mismatch: the tokenizer has 500 tokens but the model's .* has only 300"):
        load_for_eval(small)
    with pytest.raises(InputError, match="model folder not found"):
        load_for_eval(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_for_eval(tmp_path / "empty")


def test_wrong_zip_password_is_an_error_naming_the_zip(mini_eval):
    from blalm.eval.data import load_ewok
    with pytest.raises(InputError, match=r"ewok_fast\.zip: cannot decrypt"):
        load_ewok(mini_eval / "fast_eval/ewok_fast.zip", b"wrong")


def test_entity_fast_subsample_is_fixed_and_documented(data_dir):
    folder = data_dir / "eval/full_eval/entity_tracking"
    a = load_entity_tracking(folder, per_group=5)
    b = load_entity_tracking(folder, per_group=5)
    assert a == b and len(a) == 3 * 6 * 5
    full = load_entity_tracking(folder)
    assert len(full) == 9483
    first = [it for it in full if it.group == "ambiref_3_ops"][:5]
    assert [it for it in a if it.group == "ambiref_3_ops"] == first


def test_config_and_cli_refuse_bad_values_and_document_every_option():
    with pytest.raises(ConfigError, match="unknown task 'blimpp'"):
        from_dict(EvalConfig, {"tasks": ["blimpp"]})
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        from_dict(EvalConfig, {"batch_size": 0})
    p = parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["eval"]
    for action in sub._actions:
        assert action.help, action.dest
    with pytest.raises(SystemExit):
        p.parse_args(["eval", "m", "--tasks", "nope"])
    args = p.parse_args(["eval", "m", "--tasks", "reading", "blimp"])
    cfg = eval_cli.config_from_args(args)
    from blalm.eval.config import expand_tasks
    assert expand_tasks(cfg.tasks) == ["blimp", "eye_tracking", "self_paced_reading"]


def test_paper_average_needs_all_six_columns():
    ok = {t: {"status": "ok", "score": 10.0 * (i + 1)} for i, (t, _) in enumerate(PAPER_COLUMNS)}
    assert paper_average(ok) == {"status": "ok", "score": 35.0, "components": {t: v["score"] for t, v in ok.items()}}
    ok["ewok"] = {"status": "skipped", "reason": "x"}
    res = paper_average(ok)
    assert res["status"] == "not available" and "ewok" in res["reason"]
