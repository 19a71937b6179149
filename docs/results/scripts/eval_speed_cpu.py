"""Build the tiny model behind docs/results/eval_speed.md's CPU table, then time each task of the fast suite
on it, one torch thread (how that table was measured; session 12).

    PYTHONPATH=src python docs/results/scripts/eval_speed_cpu.py build /tmp/es        # tokenizer + checkpoint
    PYTHONPATH=<tree>/src OMP_NUM_THREADS=1 python docs/results/scripts/eval_speed_cpu.py time /tmp/es/ckpt LABEL
"""
import json
import lzma
import sys
import time
from pathlib import Path

import torch


def build(root: Path) -> None:
    from blalm.model.checkpoint import save_model
    from blalm.model.cli import load_model_config
    from blalm.model.decoder import build_model
    from blalm.tokenizer.train import load_tokenizer, train_tokenizer

    lines = []
    for path in sorted(Path("../shared/data/dev").glob("*.jsonl.xz")):
        n = 0
        with lzma.open(path, "rt") as fh:
            for raw in fh:
                for line in json.loads(raw)["text"].split("\n"):
                    if line.strip():
                        lines.append(line)
                        n += 1
                if n > 4000:
                    break
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "train.txt").write_text("\n".join(lines[:-500]) + "\n")
    (corpus / "dev.txt").write_text("\n".join(lines[-500:]) + "\n")
    train_tokenizer(corpus, root / "tok", vocab_size=8000, show_progress=False)
    tok = load_tokenizer(root / "tok")
    torch.manual_seed(0)
    cfg = load_model_config(Path("configs/model/tiny_blalm.toml"), [f"vocab_size={len(tok)}", "short_conv=true"])
    save_model(build_model(cfg).eval(), root / "ckpt", tokenizer_dir=root / "tok")


def time_tasks(model_path: str, label: str) -> None:
    from blalm.config import from_dict
    from blalm.eval.config import EvalConfig
    from blalm.eval.loading import load_for_eval
    from blalm.eval.suite import run_tasks

    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    model, tok = load_for_eval(model_path)
    print(json.dumps({"impl": label, "task": "load", "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
    for task in ["blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past", "reading"]:
        cfg = from_dict(EvalConfig, {"device": "cpu", "progress": False, "tasks": [task]})
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_tasks(model, tok, cfg)
        print(json.dumps({"impl": label, "task": task, "wall": round(time.perf_counter() - t0, 2),
                          "cpu": round(time.process_time() - c0, 2),
                          "score": {k: v.get("score") for k, v in res.items()}}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(Path(sys.argv[2]))
    else:
        time_tasks(sys.argv[2], sys.argv[3])
