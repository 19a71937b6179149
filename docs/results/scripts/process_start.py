"""How long a small `blalm finetune` and `blalm train` process takes on the CPU, start-up included
(cpu_pipeline.md, session 15: no initialisation on meta, the fine-tuning without a Hugging Face
wrapper). Prepares a tiny blalm checkpoint (1 layer x 32, a 500-id BPE tokenizer on GLUE text), a
tiny training corpus, and the two argument lists, as the test suite's subprocess tests use them:

    PYTHONPATH=src python docs/results/scripts/process_start.py /tmp/start
    # then time each (e.g. /usr/bin/time -v), one torch thread as the tests run them:
    OMP_NUM_THREADS=1 PYTHONPATH=src python -m blalm.cli finetune $(cat /tmp/start/finetune.args)
    OMP_NUM_THREADS=1 PYTHONPATH=src python -m blalm.cli train $(cat /tmp/start/train.args)

(``--out`` is the same folder each time: remove ``/tmp/start/ft_out`` and ``/tmp/start/train_out``
between runs, or each run after the first only reads the finished run back.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from blalm.data.config import default_data_dir
from blalm.finetune.tasks import load_task
from blalm.model.checkpoint import save_model
from blalm.model.cli import load_model_config
from blalm.model.decoder import build_model
from blalm.tokenizer.train import train_tokenizer

REPO = Path(__file__).resolve().parents[3]


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    glue = default_data_dir() / "eval" / "full_eval" / "glue_filtered"
    lines = []
    for name in ("mnli", "mrpc", "multirc", "qqp", "rte", "wsc"):
        train, valid = load_task(glue, name, max_train=150, max_valid=10)
        lines += [" ".join(f.split()) for ex in train + valid for f in ex["fields"]]
    corpus = work / "corpus"
    corpus.mkdir(exist_ok=True)
    (corpus / "train.txt").write_text("".join(line + "\n" for line in lines[:-40]), encoding="utf-8")
    (corpus / "dev.txt").write_text("".join(line + "\n" for line in lines[-40:]), encoding="utf-8")
    train_tokenizer(corpus, work / "tokenizer", vocab_size=500, show_progress=False)
    torch.manual_seed(0)
    cfg = load_model_config(REPO / "configs/model/tiny_blalm.toml",
                            ["vocab_size=500", "num_layers=1", "hidden_size=32", "intermediate_size=64"])
    model = save_model(build_model(cfg).eval(), work / "tiny", tokenizer_dir=work / "tokenizer")
    finetune = [str(model), "--tasks", "rte,mrpc", "--out", str(work / "ft_out"), "--eval-data", str(glue), "--quiet"]
    for item in ("max_train=16", "max_valid=8", "batch_size=4", "epochs=2", "max_length=40", "lr=1e-3",
                 "log_every=1", 'device="cpu"'):
        finetune += ["--set", item]
    train = [str(REPO / "configs/train/demo.toml"), "--out", str(work / "train_out")]
    for item in (f"corpus_dir={str(corpus)!r}", f"tokenizer_dir={str(work / 'tokenizer')!r}",
                 "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2", "model.num_heads=2",
                 "model.chunk_size=16", "context_length=32", "global_batch=8", "micro_batch=4", "epochs=2",
                 "max_steps=50", "milestone_scale=1000", "eval_max_blocks=8", "progress=false", 'device="cpu"', "seed=1",
                 'track="none"'):
        train += ["--set", item]
    (work / "finetune.args").write_text(" ".join(finetune) + "\n")
    (work / "train.args").write_text(" ".join(train) + "\n")
    print(f"wrote {work / 'finetune.args'} and {work / 'train.args'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
