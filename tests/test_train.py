"""The training stage on CPU: a tiny BLaLM (hidden 32, 2 layers) on a real tiny corpus and tokenizer."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from blalm.config import load_config
from blalm.errors import BlalmError, ConfigError
from blalm.model.config import ModelConfig
from blalm.model.decoder import build_model
from blalm.run import checkpoint as ckpt
from blalm.train import milestones as ms
from blalm.train.config import load_train_config
from blalm.run.metrics import read_metrics
from blalm.run.schedule import epoch_permutation, lr_factor
from blalm.train.data import batch_indices, prepare_tokens
from blalm.train.optim import build_optimizers, split_parameters
from blalm.train.trainer import train
from test_train_helpers import (  # noqa: F401
    DEMO_TRAIN_CONFIG,
    REPO_ROOT,
    tiny_config,
    train_data,
)

GLOBAL_TOKENS = 8 * 32   # global batch x context length of the tiny config


@pytest.fixture(scope="module")
def finished_run(train_data, tmp_path_factory):
    """One complete tiny run (2 epochs), shared by the tests that inspect its outputs."""
    corpus, tokenizer = train_data
    out = tmp_path_factory.mktemp("run") / "run"
    messages: list[str] = []
    summary = train(tiny_config(corpus, tokenizer), out, log=messages.append)
    return out, summary, messages


# ----------------------------------------------------------------------------------------------
# a whole run


def test_loss_goes_down(finished_run):
    out, summary, _ = finished_run
    losses = summary["losses"]
    assert summary["steps"] == summary["total_steps"] == len(losses) >= 20
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.4
    evals = read_metrics(out, "eval")
    assert evals[0]["step"] == 0 and evals[0]["val_loss"] == pytest.approx(math.log(500), abs=0.15)
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.3
    for e in evals:
        assert e["val_ppl"] == pytest.approx(math.exp(e["val_loss"]), rel=1e-9)
        assert 0 < e["val_bpb"] < e["val_loss"] / math.log(2)   # a token stands for more than one byte


def test_checkpoints_at_scaled_milestones_and_epoch_ends(finished_run):
    out, summary, _ = finished_run
    meta = json.loads((out / "run_info.json").read_text())["data"]
    words, tokens = meta["train_words"], meta["train_tokens"]
    steps_per_epoch = (meta["train_tokens"] // 32) // 8
    total = summary["total_steps"]
    assert total == 2 * steps_per_epoch
    # milestone_scale 0.0005: every 500 words seen up to 5000, then every 5000 (the 10M/100M pattern)
    wanted = [500 * k for k in range(1, 11)] + [5000 * k for k in range(2, 11)]
    expected: dict[int, str] = {}
    for step in range(1, total + 1):
        # words seen = tokens seen x corpus words / corpus tokens
        before, after = (step - 1) * GLOBAL_TOKENS * words // tokens, step * GLOBAL_TOKENS * words // tokens
        hit = [m for m in wanted if before < m <= after]
        if hit:
            expected[step] = ms.milestone_name(hit[-1])
        elif step % steps_per_epoch == 0:
            expected[step] = f"epoch_{step // steps_per_epoch:02d}"
    assert len(expected) >= 8 and "epoch_01" in expected.values()
    found = ckpt.list_checkpoints(out / "checkpoints")
    assert {c["step"]: c["name"] for c in found} == expected
    assert summary["checkpoints"] == [expected[s] for s in sorted(expected)]
    assert (out / "checkpoints" / "latest").read_text().strip() == expected[total]
    for c in found:
        assert c["words_seen"] == c["step"] * GLOBAL_TOKENS * words // tokens
        assert c["tokens_seen"] == c["step"] * GLOBAL_TOKENS
        assert c["epoch_end"] == (c["step"] % steps_per_epoch == 0)
    assert found[-1]["complete"] is True


def test_checkpoints_load_without_pickle(finished_run, train_data):
    out, _, _ = finished_run
    from safetensors import safe_open

    corpus, tokenizer = train_data
    dev = prepare_tokens(corpus, tokenizer, corpus / ".tokens").dev
    x = torch.from_numpy(np.asarray(dev[:64], dtype=np.int64)).view(2, 32)
    latest = ckpt.read_latest(out / "checkpoints")
    found = ckpt.list_checkpoints(out / "checkpoints")
    newest_two = {Path(c["path"]) for c in found[-2:]}
    assert latest in newest_two
    for c in found:
        folder = Path(c["path"])
        assert {p.suffix for p in folder.iterdir()} <= {".safetensors", ".json", ".jsonl"}   # no pickle
        with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
            assert "embed_tokens.weight" in fh.keys()
        # the optimizer state stays in the newest two checkpoints only (keep_optimizer_state = "latest"),
        # so that a damaged newest one can be skipped at a resume
        assert (folder / "optimizer.safetensors").is_file() == (folder in newest_two)
        assert ckpt.verify_checkpoint(folder) == []
        model = ckpt.load_checkpoint_model(folder)
        assert model.config.vocab_size == 500
        loss = model(x, labels=x).loss.item()
        assert abs(loss - c["val"]["val_loss"]) < 1.5
    with safe_open(str(latest / "optimizer.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert any(k.startswith("muon/layers.0.ffn.up_proj.weight/momentum_buffer") for k in keys)
    assert any(k == "adamw/embed_tokens.weight/exp_avg_sq" for k in keys)


def test_run_records_config_run_info_and_metrics(finished_run):
    out, _, messages = finished_run
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["vocab_size"] == 500 and config["model"]["hidden_size"] == 32
    assert config["lr"] == 3e-3 and config["optimizer"] == "muon"
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 1 and "torch" in info["versions"] and info["config"] == config
    assert "machine" in info and "git" in info
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert any("optimizer split" in m and "Muon" in m and "AdamW" in m for m in messages)
    setup = read_metrics(out, "setup")[0]
    assert setup["optimizer_split"]["muon"]["tensors"] == 16          # 8 matrices in each of 2 layers
    records = read_metrics(out, "train")
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))   # log_every = 1
    first, peak_step = records[0], math.ceil(0.1 * len(records))
    assert first["lr"]["adamw"] == pytest.approx(3e-3 / peak_step)     # linear warm-up
    assert records[peak_step - 1]["lr"]["muon"] == pytest.approx(3e-3)
    assert records[-1]["lr"]["adamw"] < 1e-4                           # cosine to 0
    for r in records:
        assert r["grad_norm"] > 0 and r["tokens_per_s"] > 0 and r["swa_coefficients"] == []
        assert r["tokens_seen"] == r["step"] * GLOBAL_TOKENS
    assert records[-1]["words_seen"] > records[0]["words_seen"]


def test_rerunning_a_finished_run_does_nothing(finished_run, train_data):
    out, summary, _ = finished_run
    corpus, tokenizer = train_data
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    again = train(tiny_config(corpus, tokenizer), out, log=lambda m: None)
    assert again["already_complete"] and again["steps"] == summary["steps"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_resume_refuses_a_changed_config(finished_run, train_data):
    out, _, _ = finished_run
    corpus, tokenizer = train_data
    with pytest.raises(BlalmError, match=r"different config(.|\n)*lr: 0.003 in the run, 0.001 now"):
        train(tiny_config(corpus, tokenizer, lr=1e-3), out, log=lambda m: None)
    with pytest.raises(BlalmError, match=r"model.hidden_size"):
        train(tiny_config(corpus, tokenizer, **{"model.hidden_size": 16}), out, log=lambda m: None)


def test_dynmod_alpha_is_logged(train_data, tmp_path):
    corpus, tokenizer = train_data
    cfg = tiny_config(corpus, tokenizer, max_steps=3, **{"model.swa": "dynmod", "model.short_conv": False})
    train(cfg, tmp_path / "run", log=lambda m: None)
    records = read_metrics(tmp_path / "run", "train")
    assert all(len(r["swa_coefficients"]) == 2 for r in records)
    assert any(abs(a) > 0 for a in records[-1]["swa_coefficients"])   # α leaves its init 0


# ----------------------------------------------------------------------------------------------
# non-finite losses


def _poison(steps_to_poison, accumulation: int = 2):
    """A forward hook that makes the loss NaN in the training forwards of the given (1-based)
    optimizer steps, and snapshots the weights there (to check that no update follows)."""
    state = {"forwards": 0, "snapshots": {}}

    def hook(module, args, output):
        if not module.training or output.loss is None:
            return output
        state["forwards"] += 1
        step = (state["forwards"] - 1) // accumulation + 1
        if (state["forwards"] - 1) % accumulation == 0:
            state["snapshots"][step] = {n: p.detach().clone() for n, p in module.named_parameters()}
        if step in steps_to_poison:
            output.loss = output.loss * float("nan")
        return output

    return hook, state


def test_nonfinite_loss_skips_the_update(train_data, tmp_path):
    corpus, tokenizer = train_data
    hook, state = _poison({3})
    summary = train(tiny_config(corpus, tokenizer, max_steps=6), tmp_path / "run",
                    model_hook=lambda m: m.register_forward_hook(hook), log=lambda m: None)
    assert summary["steps"] == 6 and summary["nonfinite_steps"] == 1
    assert math.isnan(summary["losses"][2]) and all(math.isfinite(v) for i, v in enumerate(summary["losses"]) if i != 2)
    snaps = state["snapshots"]
    for name in snaps[3]:
        assert torch.equal(snaps[3][name], snaps[4][name]), name        # step 3 skipped: no update at all
    assert any(not torch.equal(snaps[2][n], snaps[3][n]) for n in snaps[2])  # other steps do update
    skipped = read_metrics(tmp_path / "run", "nonfinite")
    assert [r["step"] for r in skipped] == [3] and skipped[0]["loss"] == "nan"
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_000006" / "state.json").read_text())
    assert state["nonfinite_steps"] == 1


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(train_data, tmp_path):
    corpus, tokenizer = train_data
    hook, _ = _poison(set(range(2, 100)))
    with pytest.raises(BlalmError, match=r"not finite for 3 optimizer steps in a row \(steps 2\.\.4\)"):
        train(tiny_config(corpus, tokenizer, max_steps=10, max_nonfinite_steps=3), tmp_path / "run",
              model_hook=lambda m: m.register_forward_hook(hook), log=lambda m: None)


# ----------------------------------------------------------------------------------------------
# BabyLM rules


def test_track_refuses_more_than_ten_epochs(train_data):
    corpus, tokenizer = train_data
    with pytest.raises(ConfigError, match=r"epochs = 11 breaks the BabyLM rules.*at most 10 epochs"):
        tiny_config(corpus, tokenizer, epochs=11)
    assert tiny_config(corpus, tokenizer, epochs=11, track="none").epochs == 11


@pytest.mark.parametrize("track, words, refused", [("strict-small", 10_000_001, True),
                                                    ("strict", 10_000_001, False),
                                                    ("strict", 100_000_001, True)])
def test_track_refuses_a_corpus_over_budget(train_data, tmp_path, track, words, refused):
    corpus, tokenizer = train_data
    big = tmp_path / "corpus"
    shutil.copytree(corpus, big, ignore=shutil.ignore_patterns(".tokens"))
    manifest = json.loads((big / "manifest.json").read_text())
    manifest["train_words"] = words
    (big / "manifest.json").write_text(json.dumps(manifest))
    cfg = tiny_config(big, tokenizer, track=track, max_steps=1)
    if refused:
        with pytest.raises(BlalmError, match=rf"train_words = {words:,} exceeds the {track} track's budget"):
            train(cfg, tmp_path / "run", log=lambda m: None)
        assert not (tmp_path / "run").exists()
    else:
        assert train(cfg, tmp_path / "run", log=lambda m: None)["steps"] == 1


# ----------------------------------------------------------------------------------------------
# data


def test_token_stream_is_lines_plus_eos_and_cached(train_data, tmp_path):
    corpus, tokenizer = train_data
    from blalm.tokenizer.train import load_tokenizer, read_lines

    data = prepare_tokens(corpus, tokenizer, tmp_path / "cache")
    tok = load_tokenizer(tokenizer)
    lines = [ln for ln in read_lines(corpus / "train.txt") if ln.strip()]
    expected = [i for ln in lines for i in (*tok(ln, add_special_tokens=False)["input_ids"], tok.eos_token_id)]
    assert data.train.dtype == np.uint16 and data.train.tolist() == expected
    assert data.meta["train_lines"] == len(lines) and data.meta["train_words"] == sum(len(ln.split()) for ln in lines)
    assert data.eos_id == 1 and int((data.dev == 1).sum()) == data.meta["dev_lines"]
    # bytes per token add up to the dev text's bytes (newlines included): the basis of bits per byte
    assert int(data.token_bytes[data.dev].astype(np.int64).sum()) == (corpus / "dev.txt").stat().st_size
    # cached: a second call reuses the folder; other bytes make another cache
    stamp = (data.folder / "train.u16").stat().st_mtime_ns
    again = prepare_tokens(corpus, tokenizer, tmp_path / "cache")
    assert again.folder == data.folder and (again.folder / "train.u16").stat().st_mtime_ns == stamp
    changed = tmp_path / "changed"
    shutil.copytree(corpus, changed, ignore=shutil.ignore_patterns(".tokens"))
    with open(changed / "train.txt", "a", encoding="utf-8") as fh:
        fh.write("one more line .\n")
    other = prepare_tokens(changed, tokenizer, tmp_path / "cache")
    assert other.key != data.key and len(other.train) > len(data.train)


def test_vocab_over_uint16_is_refused(train_data, tmp_path):
    corpus, _ = train_data
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|bos|>": 0, "<|eos|>": 1, "<|pad|>": 2, "<unk>": 3, **{f"w{i}": i + 4 for i in range(70_000)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|bos|>", eos_token="<|eos|>",
                            pad_token="<|pad|>").save_pretrained(str(tmp_path / "big_tok"))
    with pytest.raises(BlalmError, match=r"vocabulary of 70,004 ids does not fit the uint16 token cache"):
        prepare_tokens(corpus, tmp_path / "big_tok", tmp_path / "cache")


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    p = epoch_permutation(100, seed=3, epoch=2)
    assert np.array_equal(p, epoch_permutation(100, seed=3, epoch=2))
    assert sorted(p.tolist()) == list(range(100))
    assert not np.array_equal(p, epoch_permutation(100, seed=3, epoch=3))
    assert not np.array_equal(p, epoch_permutation(100, seed=4, epoch=2))
    # the ranks' shares of a global batch partition it, in order
    shares = [batch_indices(p, 2, 16, rank, 4) for rank in range(4)]
    assert np.array_equal(np.concatenate(shares), p[32:48]) and all(len(s) == 4 for s in shares)


# ----------------------------------------------------------------------------------------------
# optimizers and schedule


MUON_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "ogate.weight", "out_proj.weight",
                 "o_proj.weight", "gate_proj.weight", "up_proj.weight", "down_proj.weight")


@pytest.mark.parametrize("overrides", [
    ["swa=dynmod_bounded", "hedgehog=true", "short_conv=true"],
    ["swa=memory"],
    ["mixer=attention", "short_conv=false", "tie_embeddings=true"],
])
def test_optimizer_split_puts_every_parameter_in_one_optimizer(overrides):
    mcfg = load_config(ModelConfig, REPO_ROOT / "configs/model/tiny_blalm.toml",
                       ["vocab_size=300", "hidden_size=32", "num_heads=2", "intermediate_size=64", *overrides])
    model = build_model(mcfg)
    names = {n for n, _ in model.named_parameters()}
    split = split_parameters(model, "muon")
    muon = {n for n, _ in split.muon}
    adamw = {n for n, _ in split.adamw}
    assert muon | adamw == names and not muon & adamw
    assert muon == {n for n in names if n.startswith("layers.") and n.endswith(MUON_SUFFIXES)}
    assert all(p.ndim == 2 for _, p in split.muon)
    expected_adamw = {"embed_tokens.weight", "norm.weight"} | ({"lm_head.weight"} if not mcfg.tie_embeddings else set())
    assert expected_adamw <= adamw
    kinds = ("mixer_norm", "ffn_norm", "igate", "fgate", "swa_alpha", "conv_q", "hedgehog_q", "memory_k", "q_norm")
    for n in names - muon:
        assert n in expected_adamw or any(k in n for k in kinds) or n.endswith(("head_norm.weight", "conv_k.weight",
                                                                                  "conv_v.weight", "hedgehog_k.weight",
                                                                                  "memory_v", "k_norm.weight")), n
    if mcfg.swa == "dynmod_bounded":
        assert "layers.0.mixer.swa_alpha" in adamw and "layers.1.mixer.hedgehog_q.weight" in adamw
    # the optimizers hold exactly these parameters, decay only on 2-D ones
    cfg = load_train_config(DEMO_TRAIN_CONFIG, ["model.hidden_size=32", "model.num_heads=2"])
    opts, _ = build_optimizers(model, cfg)
    held = {id(p): name for name, opt in opts.items() for g in opt.param_groups for p in g["params"]}
    assert len(held) == sum(len(g["params"]) for opt in opts.values() for g in opt.param_groups) == len(names)
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert {by_id[i] for i, o in held.items() if o == "muon"} == muon
    for g in opts["adamw"].param_groups:
        assert all((p.ndim == 2) == (g["weight_decay"] > 0) for p in g["params"])
    # AdamW alone
    only = split_parameters(model, "adamw")
    assert not only.muon and {n for n, _ in only.adamw} == names


def test_lr_schedule_warmup_then_cosine():
    total = 100
    f = [lr_factor(s, total, 0.1, 0.0) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10]))
    assert all(a > b for a, b in zip(f[10:-1], f[11:]))
    assert f[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_factor(total, total, 0.1, 0.1) == pytest.approx(0.1)


def test_milestones_follow_babylm_and_scale():
    base = ms.milestones(1_000_000_000)
    assert base[:10] == [m * 1_000_000 for m in range(1, 11)]
    assert base[10:19] == [m * 10_000_000 for m in range(2, 11)]
    assert base[19:] == [m * 100_000_000 for m in range(2, 11)]
    assert ms.milestones(200_000, 0.02) == [20_000 * k for k in range(1, 11)]
    assert [ms.milestone_name(m) for m in (1_000_000, 10_000_000, 1_000_000_000, 20_000, 2500)] == \
        ["words_001M", "words_010M", "words_1000M", "words_020k", "words_2500"]


# ----------------------------------------------------------------------------------------------
# config and CLI


def test_config_merges_model_file_table_and_overrides(tmp_path):
    path = tmp_path / "t.toml"
    demo = REPO_ROOT / "configs/train/demo.toml"
    path.write_text(f'extends = "{demo}"\n[model]\nhidden_size = 48\nnum_heads = 4\n')
    cfg = load_train_config(path, ["model.num_layers=3", "lr=1e-3"])
    assert (cfg.model.hidden_size, cfg.model.num_heads, cfg.model.num_layers) == (48, 4, 3)
    assert cfg.model.short_conv is True and cfg.model.intermediate_size == 128   # from tiny_blalm.toml
    assert cfg.lr == 1e-3 and cfg.track == "strict-small"
    small = load_train_config(REPO_ROOT / "configs/train/strict_small.toml")
    assert (small.lr, small.epochs, small.optimizer, small.model.num_layers, small.model.short_conv) == \
        (7e-4, 10, "muon", 24, True)
    strict = load_train_config(REPO_ROOT / "configs/train/strict.toml")
    assert (strict.lr, strict.track, strict.model.swa) == (5.5e-4, "strict", "dynmod_bounded")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_train_config(path, ["learning_rate=1"])
    with pytest.raises(ConfigError, match="global_batch .64. must be a multiple of micro_batch .6."):
        load_train_config(REPO_ROOT / "configs/train/strict_small.toml", ["micro_batch=6"])


def test_cli_registers_train_verb_with_help():
    from blalm.train.cli import register

    parser = argparse.ArgumentParser(prog="blalm")
    register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["train", "c.toml", "--out", "runs/x", "--set", "lr=1e-3", "--quiet"])
    assert args.func.__name__ == "run" and args.overrides == ["lr=1e-3"] and args.out == Path("runs/x")
    helps = [a.help for a in parser._subparsers._group_actions[0].choices["train"]._actions]
    assert all(helps)
