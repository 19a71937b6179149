"""Fine-tuning (BabyLM 2025 (Super)GLUE protocol): a tiny fixed-seed blalm model with a real
tokenizer fine-tuned on slices of the real glue_filtered files; last-token pooling under right
padding; accuracy/F1/MCC against brute force; per-epoch validation and best-epoch selection (F1 for
MRPC/QQP); kill-and-resume to identical weights and per-epoch records; an exported blalm folder and a
Hugging Face GPT-2 folder as MODEL; BoolQ without training data; errors and --help; the GLUE column
of 'blalm eval'."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from blalm import cli
from blalm.config import from_dict
from blalm.errors import BlalmError, ConfigError, InputError
from blalm.finetune.config import FinetuneConfig
from blalm.finetune.head import (SequenceClassifier, compiled_width_multiple, last_token_states, pad_batch,
                                 width_multiple)
from blalm.finetune.metrics import accuracy, binary_f1, binary_mcc
from blalm.finetune.run import (HEAD_FILE, best_epoch, eval_batch_size, finetune, predict, predict_logits,
                                task_metrics)
from blalm.finetune.tasks import TASKS, encode, load_task
from blalm.model.checkpoint import load_model, save_model
from blalm.model.compile import compile_backbone
from blalm.model.cli import load_model_config
from blalm.model.decoder import build_model
from blalm.tokenizer.train import load_tokenizer, train_tokenizer
from blalm.run import checkpoint as ckpt

VOCAB = 500
REPO_ROOT = Path(__file__).resolve().parents[1]
AVAILABLE = ("mnli", "mrpc", "multirc", "qqp", "rte", "wsc")




@pytest.fixture(scope="module")
def glue_dir(data_dir) -> Path:
    path = data_dir / "eval" / "full_eval" / "glue_filtered"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def model_dir(glue_dir, tmp_path_factory) -> Path:
    """A tiny fixed-seed blalm checkpoint with a real BPE tokenizer trained on GLUE text."""
    lines = []
    for name in AVAILABLE:
        train, valid = load_task(glue_dir, name, max_train=150, max_valid=10)
        lines += [f for ex in train + valid for f in ex["fields"]]
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "train.txt").write_text("".join(" ".join(ln.split()) + "\n" for ln in lines[:-40]), "utf-8")
    (corpus / "dev.txt").write_text("".join(" ".join(ln.split()) + "\n" for ln in lines[-40:]), "utf-8")
    tok = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(corpus, tok, vocab_size=VOCAB, show_progress=False)
    torch.manual_seed(0)
    cfg = load_model_config(REPO_ROOT / "configs/model/tiny_blalm.toml",
                            [f"vocab_size={VOCAB}", "num_layers=1", "hidden_size=32", "intermediate_size=64"])
    return save_model(build_model(cfg).eval(), tmp_path_factory.mktemp("ckpt") / "tiny", tokenizer_dir=tok)


def _cfg(model_dir, glue_dir, **kw) -> FinetuneConfig:
    data = {"model": str(model_dir), "data_dir": str(glue_dir), "tasks": list(AVAILABLE), "max_train": 12,
            "max_valid": 12, "batch_size": 4, "epochs": 1, "max_length": 48, "lr": 1e-3, "device": "cpu",
            "progress": False, **kw}
    return from_dict(FinetuneConfig, data)


def test_every_available_task_finetunes_and_reports(model_dir, glue_dir, tmp_path):
    out = tmp_path / "ft"
    report = finetune(_cfg(model_dir, glue_dir, tasks=[*AVAILABLE, "boolq"]), out, log=lambda m: None)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["glue"] == report["glue"]
    for name in AVAILABLE:
        res = report["tasks"][name]
        assert res["status"] == "ok", res
        assert res["n_train"] == 12 and res["n_valid"] == 12 and res["steps"] == 3
        assert 0.0 <= res["accuracy"] <= 100.0
        binary = TASKS[name].num_labels == 2          # F1 and MCC for the binary tasks, as the pipeline
        assert ("f1" in res) == binary and ("mcc" in res) == binary
        assert res["score"] == (res["f1"] if name in ("mrpc", "qqp") else res["accuracy"])
        assert res["metric_for_valid"] == ("f1" if name in ("mrpc", "qqp") else "accuracy")
        assert res["best_epoch"] == 1 and [r["epoch"] for r in res["per_epoch"]] == [1]
        assert res["seconds"] > 0 and report["task_seconds"][name] == res["seconds"]
        # the task folder: metrics, a loadable fine-tuned decoder + head, the per-task predictions
        task_res = json.loads((out / name / "results.json").read_text())
        gold = [ex["label"] for ex in load_task(glue_dir, name, 12, 12)[1]]
        assert task_res["accuracy"] == pytest.approx(accuracy(task_res["predictions"], gold))
        latest = ckpt.read_latest(out / name / "checkpoints")
        load_model(latest)
        assert load_file(str(latest / HEAD_FILE))["5.weight"].shape[0] == TASKS[name].num_labels
        kinds = [json.loads(line)["kind"] for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        assert kinds[0] == "setup" and "train" in kinds and kinds[-2:] == ["valid", "eval"]
    # fine-tuning changed the decoder's weights
    base = load_file(str(model_dir / "model.safetensors"))
    tuned = load_file(str(ckpt.read_latest(out / "rte" / "checkpoints") / "model.safetensors"))
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    # BoolQ: no training data -> not available with the reason, and left out of the GLUE mean
    boolq = report["tasks"]["boolq"]
    assert boolq["status"] == "not available" and "boolq.train.jsonl" in boolq["reason"]
    assert report["glue"]["status"] == "ok" and set(report["glue"]["components"]) == set(AVAILABLE)
    assert "boolq" in report["glue"]["missing"]
    assert report["glue"]["score"] == pytest.approx(sum(report["tasks"][t]["score"] for t in AVAILABLE) / 6)
    # re-running finds everything done
    again = finetune(_cfg(model_dir, glue_dir, tasks=[*AVAILABLE, "boolq"]), out, log=lambda m: None)
    assert again["glue"] == report["glue"]
    # 'blalm eval --suite full --glue DIR' shows the GLUE column; without --glue it is not available.
    # (In a subprocess: loading a blalm checkpoint for evaluation registers blalm with transformers'
    # Auto classes in this process, which test_hf_export's remote-code test must not see.)
    base = ["eval", str(model_dir), "--suite", "full", "--tasks", "glue", "--device", "cpu", "--quiet",
            "--data-dir", str(glue_dir.parents[1]), "--out"]
    run = _blalm([*base, str(tmp_path / "ev1"), "--glue", str(out)])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "GLUE |" in run.stdout and f"{report['glue']['score']:.2f} |" in run.stdout
    ev = json.loads((tmp_path / "ev1" / "results.json").read_text())["tasks"]["glue"]
    assert ev["status"] == "ok" and ev["score"] == pytest.approx(report["glue"]["score"])
    assert set(ev["per_task"]) == set(AVAILABLE) and "boolq" in ev["missing"]
    run = _blalm([*base, str(tmp_path / "ev2")])
    assert run.returncode == 0, run.stderr[-3000:]
    ev = json.loads((tmp_path / "ev2" / "results.json").read_text())["tasks"]["glue"]
    assert ev["status"] == "not available" and "blalm finetune" in ev["reason"]


def test_boolq_with_user_training_data(model_dir, glue_dir, tmp_path):
    """BoolQ runs when --data-dir holds a training file (here: a slice of the valid file, renamed)."""
    data = tmp_path / "data"
    data.mkdir()
    rows = (glue_dir / "boolq.valid.jsonl").read_text().splitlines()
    (data / "boolq.train.jsonl").write_text("\n".join(rows[:8]) + "\n")
    (data / "boolq.valid.jsonl").write_text("\n".join(rows[8:16]) + "\n")
    report = finetune(_cfg(model_dir, data, tasks=["boolq"]), tmp_path / "out", log=lambda m: None)
    assert report["tasks"]["boolq"]["status"] == "ok" and report["tasks"]["boolq"]["n_train"] == 8


def test_head_reads_the_last_real_token_under_right_padding(model_dir):
    """Fails for first-token pooling: a late token changes the head's input, padding does not."""
    torch.manual_seed(0)
    clf = SequenceClassifier(load_model(model_dir), 2, dropout=0.0).eval()
    tok = load_tokenizer(model_dir)
    a = encode(tok, ["The cat sat on the mat.", "A cat is sitting."], 64)
    b = a[:-1] + [a[-2] if a[-1] != a[-2] else a[0]]              # differs only in the last token
    short = a[:5]
    ids, mask = pad_batch([a, b, short], tok.pad_token_id)
    assert mask[2].sum() == 5 and ids.shape[1] == len(a)
    with torch.no_grad():
        pooled = clf.pooled(ids, mask)
        alone = [clf.pooled(*pad_batch([s], tok.pad_token_id))[0] for s in (a, b, short)]
        logits = clf(ids, mask)
    assert not torch.allclose(pooled[0], pooled[1])                 # the late token matters
    for row, single in zip(pooled, alone):                          # padding changes nothing
        torch.testing.assert_close(row, single, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, clf.head(pooled))
    # it is the last real token's state of the decoder, not the first one's
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    got = last_token_states(hidden, torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    assert torch.equal(got, torch.stack([hidden[0, 2], hidden[1, 3]]))


def _tiny_decoder(**overrides):
    torch.manual_seed(0)
    items = [f"vocab_size={VOCAB}", "num_layers=2", "hidden_size=32", "intermediate_size=64", "chunk_size=8",
             "swa_window=8", *(f"{k}={json.dumps(v)}" for k, v in overrides.items())]
    return build_model(load_model_config(REPO_ROOT / "configs/model/tiny_blalm.toml", items)).eval()


def test_validation_in_length_sorted_batches_matches_one_at_a_time():
    """predict() scores the valid file in batches sorted by length and returns file order: every row's
    logits equal its logits alone (no padding), for the mLSTM (chunkwise: widths across chunk
    boundaries; with the SWA branch) and the attention decoder; rounded widths change nothing."""
    gen = torch.Generator().manual_seed(1)
    lengths = [int(n) for n in torch.randint(1, 30, (23,), generator=gen)]
    seqs = [torch.randint(3, VOCAB, (n,), generator=gen).tolist() for n in lengths]
    for overrides in ({}, {"swa": "add"}, {"mixer": "attention", "short_conv": False}):
        torch.manual_seed(0)
        clf = SequenceClassifier(_tiny_decoder(**overrides), 3, dropout=0.0).train()
        with torch.no_grad():
            alone = torch.cat([clf.eval()(*pad_batch([s], 0)) for s in seqs])
            unsorted = torch.cat([clf(*pad_batch(seqs[i:i + 5], 0)) for i in range(0, len(seqs), 5)])
        clf.train()
        for batch, multiple in ((5, 1), (4, 8), (32, 1)):
            got = predict_logits(clf, seqs, 0, batch, torch.device("cpu"), multiple=multiple)
            torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got, unsorted, rtol=1e-5, atol=1e-5)
            assert predict(clf, seqs, 0, batch, torch.device("cpu"), multiple=multiple) == alone.argmax(-1).tolist()
        assert clf.training                                   # predict restores the mode
    # the order is restored: a shuffled file gives the shuffled predictions
    perm = torch.randperm(len(seqs), generator=gen).tolist()
    got = predict_logits(clf, [seqs[i] for i in perm], 0, 4, torch.device("cpu"))
    torch.testing.assert_close(got, alone[perm], rtol=1e-5, atol=1e-5)


def test_pad_batch_rounds_widths_and_refuses_empty_sequences():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=1, multiple=8)
    assert ids.shape == mask.shape == (2, 8)
    assert ids[0, :3].tolist() == [5, 6, 7] and ids[1].tolist() == [8] + [1] * 7
    assert mask.sum(1).tolist() == [3, 1]
    assert pad_batch([[5] * 8], 0, multiple=8)[0].shape == (1, 8) and pad_batch([[5] * 9], 0, 8)[0].shape == (1, 16)
    with pytest.raises(ValueError, match=r"at least one token; rows \[1\]"):
        pad_batch([[5], []], 0)
    # the eval batch: 0 = auto (128 on CUDA, 32 on the CPU)
    cfg = FinetuneConfig(model="m")
    assert cfg.eval_batch == 0
    assert eval_batch_size(cfg, torch.device("cpu")) == 32 and eval_batch_size(cfg, torch.device("cuda")) == 128
    assert eval_batch_size(FinetuneConfig(model="m", eval_batch=7), torch.device("cuda")) == 7


# ----------------------------------------------------------------------------------------------
# compile (regional: each decoder block)


class _CountingBackend:
    """A torch.compile backend that runs the captured graph as it is and counts the graphs."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.mark.slow   # torch.compile on the CPU: minutes (make test-all)
def test_compiled_blocks_compile_once_per_chunk_count_and_mode():
    """compile_backbone compiles the blocks (not the final norm, whose hook stops the decoder) with
    dynamic shapes: batches of every length 1..24 and sizes 3..5, rounded to whole chunks (widths 8,
    16, 24), cost one graph per width and mode (training, no_grad) for both layers together, and
    give the eager model's logits and gradients; checkpoints keep the eager parameter names."""
    gen = torch.Generator().manual_seed(3)
    eager = SequenceClassifier(_tiny_decoder(), 2, dropout=0.0)
    compiled = SequenceClassifier(_tiny_decoder(), 2, dropout=0.0)
    compiled.load_state_dict(eager.state_dict())
    backend = _CountingBackend()
    assert compile_backbone(compiled.backbone, backend=backend) == 2
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    multiple = width_multiple(compiled.backbone)
    assert multiple == 8 and width_multiple(_tiny_decoder(mixer="attention", short_conv=False)) == 1
    for n, lengths in enumerate(([8, 3], [17, 1, 5, 9, 2], [24, 20, 23, 21], [1, 2, 3], [16, 10, 11, 12, 15],
                                 [6, 7, 5, 2], [22, 17, 24])):
        ids, mask = pad_batch([torch.randint(3, VOCAB, (k,), generator=gen).tolist() for k in lengths], 0, multiple)
        for model in (eager, compiled):
            model.zero_grad()
            model(ids, mask).square().sum().backward()
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
        with torch.no_grad():
            torch.testing.assert_close(compiled(ids, mask), eager(ids, mask), rtol=1e-4, atol=1e-5)
    assert backend.graphs == 3 * 2                # widths 8, 16, 24; training and no_grad
    # a Hugging Face base model: its block list ('h' for GPT-2) is compiled; no list: stays eager
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    gpt = GPT2Model(GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=3, n_head=2))
    eager = SequenceClassifier(GPT2Model(gpt.config), 2, dropout=0.0).eval()
    eager.backbone.load_state_dict(gpt.state_dict())
    compiled = SequenceClassifier(gpt, 2, dropout=0.0).eval()
    compiled.head.load_state_dict(eager.head.state_dict())
    backend = _CountingBackend()
    assert compile_backbone(gpt, backend=backend) == 3
    with torch.no_grad():
        for lengths in ([5, 9, 3], [20, 11], [7, 7, 7, 2], [30, 2]):
            ids, mask = pad_batch([torch.randint(3, VOCAB, (k,), generator=gen).tolist() for k in lengths], 0)
            torch.testing.assert_close(compiled(ids, mask), eager(ids, mask), rtol=1e-4, atol=1e-5)
    assert backend.graphs == 1                    # the three blocks, every width (no decoding cache filled)
    assert compile_backbone(torch.nn.Linear(2, 2), backend=_CountingBackend()) == 0


def test_reduce_overhead_needs_compile_and_rounds_widths_for_its_cuda_graphs(model_dir, glue_dir):
    """--compile-mode reduce-overhead: a CUDA graph per batch shape, so widths go in steps of 64 (and of
    the mLSTM chunk); without --compile it is refused, naming the fix."""
    with pytest.raises(ConfigError, match="add --compile"):
        _cfg(model_dir, glue_dir, compile_mode="reduce-overhead")
    chunked, attention = _tiny_decoder(), _tiny_decoder(mixer="attention", short_conv=False)   # chunk 8; none
    widths = {(net, mode, on): compiled_width_multiple(net, _cfg(model_dir, glue_dir, compile=on, compile_mode=mode))
              for net in (chunked, attention) for mode, on in (("default", False), ("default", True),
                                                               ("reduce-overhead", True))}
    assert list(widths.values()) == [1, 8, 64, 1, 1, 64]
    ids, _ = pad_batch([[5] * 70, [6] * 3], 0, widths[(chunked, "reduce-overhead", True)])
    assert ids.shape == (2, 128)


@pytest.mark.slow   # torch.compile on the CPU: minutes (make test-all)
def test_reduce_overhead_finetuning_matches_eager(model_dir, glue_dir, tmp_path):
    """--compile --compile-mode reduce-overhead runs the loop with its CUDA-graph step marks and
    widths of 64 (on the CPU inductor runs the compiled code without graphs): the eager run's
    losses, scores and predictions within float rounding."""
    kw = dict(tasks=["rte"], max_train=8, max_valid=8, max_length=16, log_every=1)
    eager = finetune(_cfg(model_dir, glue_dir, **kw), tmp_path / "eager", log=lambda m: None)
    graphed = finetune(_cfg(model_dir, glue_dir, compile=True, compile_mode="reduce-overhead", **kw),
                       tmp_path / "graphed", log=lambda m: None)
    records = [json.loads(line) for line in (tmp_path / "graphed" / "rte" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["width_multiple"] == 64
    loss = {d: [json.loads(line)["loss"] for line in (tmp_path / d / "rte" / "metrics.jsonl").read_text().splitlines()
                if '"train"' in line] for d in ("eager", "graphed")}
    assert len(loss["eager"]) == 2 and loss["graphed"] == pytest.approx(loss["eager"], rel=1e-4)
    res = {d: json.loads((tmp_path / d / "rte" / "results.json").read_text()) for d in ("eager", "graphed")}
    assert res["graphed"]["predictions"] == res["eager"]["predictions"]
    assert graphed["tasks"]["rte"]["score"] == eager["tasks"]["rte"]["score"]


@pytest.mark.slow   # torch.compile on the CPU: minutes (make test-all)
def test_compiled_finetuning_matches_eager(model_dir, glue_dir, tmp_path):
    """--compile (inductor, as on the GPU) fine-tunes to the eager run's losses, scores and
    predictions within float rounding; resuming may switch it."""
    kw = dict(tasks=["rte"], max_train=8, max_valid=8, max_length=16, log_every=1)
    eager = finetune(_cfg(model_dir, glue_dir, **kw), tmp_path / "eager", log=lambda m: None)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = finetune(_cfg(model_dir, glue_dir, compile=True, **kw), tmp_path / "compiled", log=lambda m: None)
    # one width (16 = the chunk size) for training and one for validation; the backward is AOT-compiled
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 2

    def records(out):
        return [json.loads(line) for line in (out / "rte" / "metrics.jsonl").read_text().splitlines()]

    setup = records(tmp_path / "compiled")[0]
    assert setup["compiled_layers"] == 1 and setup["width_multiple"] == 16
    loss = {d: [r["loss"] for r in records(tmp_path / d) if r["kind"] == "train"] for d in ("eager", "compiled")}
    assert len(loss["eager"]) == 2 and loss["compiled"] == pytest.approx(loss["eager"], rel=1e-4)
    res = {d: json.loads((tmp_path / d / "rte" / "results.json").read_text()) for d in ("eager", "compiled")}
    assert res["compiled"]["predictions"] == res["eager"]["predictions"]
    assert compiled["tasks"]["rte"]["score"] == eager["tasks"]["rte"]["score"]
    (m_e, h_e), (m_c, h_c) = _weights(tmp_path / "eager", "rte"), _weights(tmp_path / "compiled", "rte")
    assert m_e.keys() == m_c.keys()
    for k in m_e:
        torch.testing.assert_close(m_c[k], m_e[k], rtol=1e-4, atol=1e-5, msg=k)


def _brute_f1(pred, gold):
    tp = sum(1 for p, g in zip(pred, gold) if p == g == 1)
    prec = tp / max(1, sum(pred))
    rec = tp / max(1, sum(gold))
    return 0.0 if tp == 0 else 100 * 2 * prec * rec / (prec + rec)


def _brute_mcc(pred, gold) -> float:
    """Pearson correlation of the two 0/1 vectors (what MCC is), 0 when either is constant."""
    n = len(pred)
    mp, mg = sum(pred) / n, sum(gold) / n
    cov = sum((p - mp) * (g - mg) for p, g in zip(pred, gold))
    sp = sum((p - mp) ** 2 for p in pred) ** 0.5
    sg = sum((g - mg) ** 2 for g in gold) ** 0.5
    return 0.0 if sp == 0 or sg == 0 else cov / (sp * sg)


def test_metrics_match_brute_force():
    for pred in itertools.product((0, 1), repeat=6):
        for gold in ((1, 0, 1, 1, 0, 0), (0, 0, 0, 0, 0, 1), (1, 1, 1, 1, 1, 1)):
            assert accuracy(pred, gold) == pytest.approx(100 * sum(p == g for p, g in zip(pred, gold)) / 6)
            assert binary_f1(pred, gold) == pytest.approx(_brute_f1(pred, gold))
            assert binary_mcc(pred, gold) == pytest.approx(100 * _brute_mcc(pred, gold), abs=1e-9)
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 1]) == 50.0
    assert binary_f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])


def _cli_args(model_dir, glue_dir, out) -> list[str]:
    args = [str(model_dir), "--tasks", "rte,mrpc", "--out", str(out), "--data-dir", str(glue_dir), "--quiet"]
    for item in ("max_train=16", "max_valid=8", "batch_size=4", "epochs=2", "max_length=40", "lr=1e-3",
                 "save_every=3", "log_every=1", "device=\"cpu\""):
        args += ["--set", item]
    return args


def _blalm(argv, fault=None):
    """``blalm ARGV`` in a subprocess (one torch thread, as this process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("BLALM_FAULT", None)
    if fault:
        env["BLALM_FAULT"] = fault
    code = "import sys, torch; torch.set_num_threads(1); from blalm import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def _run(args, fault=None):
    return _blalm(["finetune", *args], fault)


def _weights(out, task):
    latest = ckpt.read_latest(out / task / "checkpoints")
    return load_file(str(latest / "model.safetensors")), load_file(str(latest / HEAD_FILE))


def test_killed_finetuning_resumes_to_identical_weights(model_dir, glue_dir, tmp_path, capsys):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    run = _run(_cli_args(model_dir, glue_dir, reference))
    assert run.returncode == 0, run.stderr[-3000:]
    # SIGKILL in the middle of rte's 5th optimizer step (after its backward); checkpoints were written at
    # step 3 (save_every) and step 4 (the end of epoch 1)
    run = _run(_cli_args(model_dir, glue_dir, killed), fault="step_backward@5")
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert ckpt.read_state(ckpt.read_latest(killed / "rte" / "checkpoints"))["step"] == 4
    assert not (killed / "rte" / "results.json").exists()
    # SIGKILL in the middle of a checkpoint write of the resumed run (step 6: files written, not renamed)
    run = _run(_cli_args(model_dir, glue_dir, killed), fault="checkpoint_written@1")
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert ckpt.read_state(ckpt.read_latest(killed / "rte" / "checkpoints"))["step"] == 4
    assert any(".tmp-" in p.name for p in (killed / "rte" / "checkpoints").iterdir())
    run = _run(_cli_args(model_dir, glue_dir, killed))
    assert run.returncode == 0, run.stderr[-3000:]
    for task in ("rte", "mrpc"):
        (m_ref, h_ref), (m_got, h_got) = _weights(reference, task), _weights(killed, task)
        assert m_ref.keys() == m_got.keys() and h_ref.keys() == h_got.keys()
        for k in m_ref:
            assert torch.equal(m_ref[k], m_got[k]), (task, k)
        for k in h_ref:
            assert torch.equal(h_ref[k], h_got[k]), (task, k)
        ref = json.loads((reference / task / "results.json").read_text())
        got = json.loads((killed / task / "results.json").read_text())
        assert ref["predictions"] == got["predictions"] and ref["accuracy"] == got["accuracy"]
        # the per-epoch validation records (epoch 1 of rte scored before the kill, kept in its checkpoint)
        assert [r["epoch"] for r in got["per_epoch"]] == [1, 2]
        assert ref["per_epoch"] == got["per_epoch"] and ref["best_epoch"] == got["best_epoch"]
    records = [json.loads(line) for line in (killed / "rte" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, 9))                 # the records of lost steps are dropped on resume, none twice
    assert [r["epoch"] for r in records if r["kind"] == "valid"] == [1, 2]
    # changed settings are refused, not silently mixed
    args = _cli_args(model_dir, glue_dir, killed)
    args[args.index("lr=1e-3")] = "lr=2e-3"
    assert cli.main(["finetune", *args]) == 2
    assert "lr: 0.001 in the run, 0.002 now" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# per-epoch validation and best-epoch selection


def test_best_epoch_is_chosen_by_the_tasks_validation_metric(model_dir, glue_dir, tmp_path):
    out = tmp_path / "ft"
    report = finetune(_cfg(model_dir, glue_dir, tasks=["mrpc", "rte"], epochs=4, max_train=16, max_valid=24,
                           lr=3e-3), out, log=lambda m: None)
    for name, metric in (("mrpc", "f1"), ("rte", "accuracy")):
        res = json.loads((out / name / "results.json").read_text())
        epochs = res["per_epoch"]
        assert [r["epoch"] for r in epochs] == [1, 2, 3, 4] and [r["step"] for r in epochs] == [4, 8, 12, 16]
        assert res["metric_for_valid"] == metric and all(r["score"] == r[metric] for r in epochs)
        # the best epoch by the task's metric, the earliest on a tie; the reported scores are its scores
        best = max(epochs, key=lambda r: (r[metric], -r["epoch"]))
        assert res["best_epoch"] == best["epoch"]
        assert {k: res[k] for k in ("accuracy", "f1", "mcc", "score")} == \
               {k: best[k] for k in ("accuracy", "f1", "mcc", "score")}
        # the stored predictions are the best epoch's: they give its scores
        gold = [ex["label"] for ex in load_task(glue_dir, name, 16, 24)[1]]
        assert accuracy(res["predictions"], gold) == best["accuracy"]
        assert binary_f1(res["predictions"], gold) == best["f1"]
        # metrics.jsonl has one 'valid' record per epoch, the same numbers
        valid = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line)["kind"] == "valid"]
        assert [{k: v for k, v in r.items() if k != "kind"} for r in valid] == epochs
        assert report["tasks"][name]["score"] == best["score"]
        # only the newest two checkpoint folders are kept (a damaged newest one can be skipped)
        assert sorted(p.name for p in (out / name / "checkpoints").iterdir() if p.is_dir()) == \
            ["step0000012", "step0000016"]
    # in this fixed-seed run mrpc's best epoch is not the last (F1 50.0 at epoch 3, 48.3 at epoch 4);
    # rte's is (accuracy 50.0); ties are the next test's
    assert json.loads((out / "mrpc" / "results.json").read_text())["best_epoch"] == 3
    assert json.loads((out / "rte" / "results.json").read_text())["best_epoch"] == 4


def test_validation_metric_is_f1_for_mrpc_and_qqp_and_accuracy_otherwise():
    """Two epochs' predictions where accuracy and F1 disagree: MRPC/QQP pick the F1 one."""
    gold = [1, 1, 1, 0, 0, 0, 0, 0]
    high_accuracy = [0, 0, 1, 0, 0, 0, 0, 0]     # accuracy 75, F1 50
    high_f1 = [1, 1, 1, 1, 1, 1, 0, 0]           # accuracy 62.5, F1 66.7
    for name in TASKS:
        task = TASKS[name]
        if task.num_labels != 2:
            continue
        records = [{"epoch": e, **task_metrics(task, pred, gold)} for e, pred in ((1, high_accuracy), (2, high_f1))]
        assert records[0]["accuracy"] > records[1]["accuracy"] and records[0]["f1"] < records[1]["f1"]
        assert best_epoch(records)["epoch"] == (2 if name in ("mrpc", "qqp") else 1), name
        assert best_epoch(records + [{**records[0], "epoch": 3}])["epoch"] == best_epoch(records)["epoch"]  # ties
    mnli = task_metrics(TASKS["mnli"], [0, 1, 2, 2], [0, 2, 2, 1])
    assert mnli == {"accuracy": 50.0, "score": 50.0, "metric": "accuracy"}


# ----------------------------------------------------------------------------------------------
# Hugging Face model folders


def _same_run(a: Path, b: Path, task: str) -> None:
    """Two fine-tuning runs of ``task`` ended with the same weights, per-epoch scores and predictions."""
    (m_a, h_a), (m_b, h_b) = _weights(a, task), _weights(b, task)
    assert m_a.keys() == m_b.keys() and all(torch.equal(m_a[k], m_b[k]) for k in m_a)
    assert all(torch.equal(h_a[k], h_b[k]) for k in h_a)
    res_a, res_b = (json.loads((d / task / "results.json").read_text()) for d in (a, b))
    assert res_a["per_epoch"] == res_b["per_epoch"] and res_a["predictions"] == res_b["predictions"]


def test_exported_blalm_folder_finetunes_as_its_checkpoint(model_dir, glue_dir, tmp_path):
    """MODEL = the folder 'blalm export' writes (loaded with AutoModelForCausalLM + trust_remote_code, in
    a subprocess so that this process's Auto registry stays clean) gives the very run of the checkpoint."""
    from blalm.model.export import export_hf

    export = export_hf(model_dir, tmp_path / "export")
    assert not (export / "model_config.json").exists() and (export / "config.json").is_file()
    settings = ["max_train=12", "max_valid=12", "batch_size=4", "epochs=2", "max_length=40", "lr=1e-3"]
    args = [str(export), "--tasks", "rte", "--out", str(tmp_path / "hf"), "--data-dir", str(glue_dir),
            "--device", "cpu", "--quiet", *itertools.chain.from_iterable(("--set", s) for s in settings)]
    run = _run(args)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rte: accuracy" in run.stdout and "best epoch" in run.stdout
    finetune(_cfg(model_dir, glue_dir, tasks=["rte"], max_train=12, max_valid=12, epochs=2, max_length=40),
             tmp_path / "ckpt", log=lambda m: None)
    _same_run(tmp_path / "hf", tmp_path / "ckpt", "rte")
    latest = ckpt.read_latest(tmp_path / "hf" / "rte" / "checkpoints")
    assert ckpt.read_state(latest)["model_kind"] == "blalm"
    load_model(latest)                                  # the fine-tuned decoder is a blalm checkpoint


def test_hugging_face_gpt2_folder_finetunes_and_resumes(model_dir, glue_dir, tmp_path):
    """Any AutoModelForCausalLM folder: a tiny GPT-2 (saved with save_pretrained, our tokenizer beside
    it) is fine-tuned as its base model; a run cut after epoch 1 resumes to the uninterrupted run."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = load_tokenizer(model_dir)
    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    folder = tmp_path / "gpt2"
    gpt.save_pretrained(folder)
    tok.save_pretrained(folder)
    kw = dict(tasks=["mrpc"], max_train=12, max_valid=12, max_length=40)
    finetune(_cfg(folder, glue_dir, epochs=2, **kw), tmp_path / "full", log=lambda m: None)
    res = json.loads((tmp_path / "full" / "mrpc" / "results.json").read_text())
    assert res["status"] == "ok" and [r["epoch"] for r in res["per_epoch"]] == [1, 2] and res["score"] == res["f1"]
    latest = ckpt.read_latest(tmp_path / "full" / "mrpc" / "checkpoints")
    assert ckpt.read_state(latest)["model_kind"] == "hf"
    tuned = load_file(str(latest / "model.safetensors"))
    assert "wte.weight" in tuned and not any(k.startswith("lm_head") for k in tuned)   # GPT2Model's names
    assert not torch.equal(tuned["wte.weight"], gpt.transformer.wte.weight.detach())   # fine-tuned
    # killed in epoch 2 (after epoch 1's checkpoint), then resumed: the uninterrupted run's end
    part = tmp_path / "part"
    args = [str(folder), "--tasks", "mrpc", "--out", str(part), "--data-dir", str(glue_dir), "--device", "cpu",
            "--quiet"]
    for item in ("max_train=12", "max_valid=12", "max_length=40", "batch_size=4", "epochs=2", "lr=1e-3"):
        args += ["--set", item]
    run = _run(args, fault="step_backward@5")
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert ckpt.read_state(ckpt.read_latest(part / "mrpc" / "checkpoints"))["step"] == 3
    finetune(_cfg(folder, glue_dir, epochs=2, **kw), part, log=lambda m: None)
    _same_run(part, tmp_path / "full", "mrpc")


# ----------------------------------------------------------------------------------------------
# errors and --help


def test_missing_data_and_model_are_named_with_the_fix(model_dir, glue_dir, tmp_path, capsys):
    with pytest.raises(InputError, match=r"nowhere: GLUE data folder not found; give --data-dir"):
        finetune(_cfg(model_dir, tmp_path / "nowhere"), tmp_path / "o1", log=lambda m: None)
    data = tmp_path / "data"
    data.mkdir()
    (data / "rte.valid.jsonl").write_text((glue_dir / "rte.valid.jsonl").read_text())       # no training file
    (data / "mrpc.train.jsonl").write_text((glue_dir / "mrpc.train.jsonl").read_text())     # no valid file
    report = finetune(_cfg(model_dir, data, tasks=["rte", "mrpc"]), tmp_path / "o2", log=lambda m: None)
    rte, mrpc = report["tasks"]["rte"], report["tasks"]["mrpc"]
    assert rte["status"] == mrpc["status"] == "not available" and report["glue"]["status"] == "not available"
    assert f"{data / 'rte.train.jsonl'} (or .jsonl.xz) not found; give --eval-data" in rte["reason"]
    assert f"{data / 'mrpc.valid.jsonl'} (or .jsonl.xz) not found; give --eval-data" in mrpc["reason"]
    with pytest.raises(InputError, match="neither a blalm checkpoint .* nor a Hugging Face model folder"):
        finetune(_cfg(data, glue_dir), tmp_path / "o3", log=lambda m: None)
    missing = tmp_path / "no-model"
    assert cli.main(["finetune", str(missing), "--out", str(tmp_path / "o4"), "--eval-data", str(glue_dir)]) == 2
    assert f"{missing}: not found; give a blalm checkpoint folder" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["finetune", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("MODEL", "--tasks", "--out", "--eval-data", "--data-dir", "--device", "--precision", "--compile", "--no-compile",
                   "--set", "--quiet", "--jobs"):
        assert option in text
    options = {"model", "tasks", "data_dir", "device", "precision", "progress"}     # set by the options above
    for f in dataclasses.fields(FinetuneConfig):
        if f.name not in options:
            assert f"\n  {f.name}=" in text, f.name                              # every --set key explained
    assert "Hugging Face" in text and "best" in text


@pytest.mark.slow
def test_glue_device_script_runs_task_groups_side_by_side_then_one_report(model_dir, glue_dir, tmp_path):
    """scripts/glue_device.sh with JOBS=2 on the CPU ('blalm finetune --jobs 2'): the tasks split into
    two groups of about equal steps (RTE + WSC; MRPC), each fine-tuned by its own process with its
    own log, then one pass writes the run's results.json over every task (done ones read back) and
    the script's summary; the groups' logs come back in $OUT/glue_logs. (Slow: --jobs itself is
    tested in test_finetune_jobs.py; this holds the script's plumbing around it.)"""
    run_dir, out = tmp_path / "glue", tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "DEVICE": "cpu", "COMPILE": "0",
           "JOBS": "2", "TASKS": "rte,mrpc,wsc", "BUDGET": "400", "OUT": str(out),
           "SETTINGS": "max_train=8 max_valid=8 batch_size=4 epochs=1 max_length=40 lr=1e-3"}
    run = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "glue_device.sh"), str(model_dir), str(run_dir),
                          str(glue_dir)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "3 task(s) in 2 processes: rte,wsc (~4 steps) | mrpc (~2 steps)" in run.stdout
    assert "group rte,wsc: done" in run.stdout and "group mrpc: done" in run.stdout
    assert "group mrpc: done" in (out / "glue_finetune.log").read_text()   # the log ($OUT set)
    assert sorted(p.name for p in (out / "glue_logs").iterdir()) == ["mrpc.log", "rte-wsc.log"]
    logs = {p.name: p.read_text() for p in (out / "glue_logs").iterdir()}
    assert "mrpc: best epoch 1 of 1" in logs["mrpc.log"]
    assert "rte: best epoch" in logs["rte-wsc.log"] and "wsc: best epoch" in logs["rte-wsc.log"]
    report = json.loads((run_dir / "results.json").read_text())
    assert sorted(report["tasks"]) == ["mrpc", "rte", "wsc"]
    assert all(r["status"] == "ok" for r in report["tasks"].values())
    assert report["glue"]["score"] == pytest.approx(np.mean([r["score"] for r in report["tasks"].values()]))
    summary = json.loads((out / "glue_results.json").read_text())
    assert summary["complete"] and summary["glue"] == report["glue"]
    for task in ("mrpc", "rte", "wsc"):        # each task trained once, by its group's process
        setups = [json.loads(line) for line in (run_dir / task / "metrics.jsonl").read_text().splitlines()
                  if '"setup"' in line]
        assert len(setups) == 1


def test_a_run_with_other_settings_is_refused_not_resumed(model_dir, glue_dir, tmp_path):
    out = tmp_path / "ft"
    finetune(_cfg(model_dir, glue_dir, tasks=["rte"]), out, log=lambda m: None)
    with pytest.raises(BlalmError, match=r"cannot be resumed:\n  lr: 0.001 in the run, 0.002 now"):
        finetune(_cfg(model_dir, glue_dir, tasks=["rte"], lr=2e-3), out, log=lambda m: None)
    # a resumable key (eval_batch, compile, device, progress) may change: the finished task is read back
    again = finetune(_cfg(model_dir, glue_dir, tasks=["rte"], eval_batch=5), out, log=lambda m: None)
    assert again["tasks"]["rte"]["status"] == "ok"


def test_a_second_finetune_into_the_same_out_is_refused_naming_the_holder(model_dir, glue_dir, tmp_path):
    """Two 'blalm finetune' of a task into one --out: the second is refused, naming the holder (the
    lock is per task folder, so scripts/glue_device.sh's processes on other tasks share the --out)."""
    import socket

    out = tmp_path / "ft"
    hold = ("import sys, time; from blalm.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out / "rte")], stdout=subprocess.PIPE, text=True,
                              cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = _run(_cli_args(model_dir, glue_dir, out))
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
        assert f"{out / 'rte'} is in use: pid {holder.pid} on host {socket.gethostname()}" in run.stderr
        assert "is writing this fine-tuning run" in run.stderr
        assert sorted(p.name for p in (out / "rte").iterdir()) == [".lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
