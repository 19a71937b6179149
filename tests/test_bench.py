"""The benchmarks on CPU: rows are complete, the kernels they time agree with the reference, bad
tile specs are refused. (Speed itself is measured on the device, not asserted here.)"""

from __future__ import annotations

import pytest
import torch

from blalm.bench.mixer import MixerShape, bench_mixers, parse_tiles
from blalm.bench.train import bench_train
from blalm.model.decoder import build_model, count_parameters
from blalm.train.config import load_train_config


def test_mixer_rows_time_every_mixer_and_hold_kernels_to_the_reference():
    shape = MixerShape(batch=1, heads=2, seq=32, head_dim=8, dtype="float32", window=8)
    rows = list(bench_mixers(shape, ["parallel", "chunkwise", "recurrent"], "cpu", warmup=1, reps=2, check=True))
    assert [r["mixer"] for r in rows] == ["sdpa_causal", "swa_w8", "mlstm_parallel", "mlstm_chunkwise",
                                          "mlstm_recurrent"]
    for row in rows:
        assert "error" not in row and row["fwd_bwd_ms_median"] > 0 and row["device"].startswith("cpu")
        if row["mixer"].startswith("mlstm_"):
            errs = row["max_rel_err_vs_float64_reference"]
            assert set(errs) == {"out", "grad_q", "grad_k", "grad_v", "grad_i", "grad_f"}
            assert max(errs.values()) < 1e-4, errs


def test_unknown_mixer_kernel_is_refused_with_its_name():
    shape = MixerShape(batch=1, heads=1, seq=16, head_dim=8, dtype="float32")
    with pytest.raises(Exception, match="nonexistent"):
        list(bench_mixers(shape, ["nonexistent"], "cpu", warmup=0, reps=1))


def test_parse_tiles():
    assert parse_tiles("64,64,4,2;32,16,2,1") == [(64, 64, 4, 2), (32, 16, 2, 1)]
    with pytest.raises(ValueError, match="BLOCK_M,BLOCK_N,WARPS,STAGES"):
        parse_tiles("64,64,4")


def test_train_bench_row_on_cpu(repo_root):
    cfg = load_train_config(repo_root / "configs/train/demo.toml",
                            ["global_batch=4", "micro_batch=2", "context_length=32"])
    (row,) = bench_train(cfg, torch.device("cpu"), steps=1, warmup=1)
    expected = count_parameters(build_model(cfg.model))["total"]
    assert row["parameters"] == expected and row["world_size"] == 1
    assert row["tokens_per_s"] == pytest.approx(4 * 32 / (row["step_ms_median"] / 1e3), rel=0.01)


@pytest.mark.parametrize("mixer_set", [["model.mixer=\"mlstm\"", "model.short_conv=true"],
                                       ["model.mixer=\"attention\"", "model.short_conv=false"]])
def test_reference_decoder_has_our_shape_and_is_timed_beside_ours(repo_root, mixer_set):
    cfg = load_train_config(repo_root / "configs/train/demo.toml",
                            ["global_batch=4", "micro_batch=2", "context_length=32", *mixer_set])
    ours, plain = bench_train(cfg, torch.device("cpu"), steps=1, warmup=1, reference=True)
    assert plain["model"] == ("plain-naive-mlstm" if cfg.model.mixer == "mlstm" else "plain-sdpa")
    assert plain["parameters"] == ours["parameters"]           # same shape, parameter for parameter
    assert plain["ours_over_plain"] == pytest.approx(ours["tokens_per_s"] / plain["tokens_per_s"], rel=1e-3)


def test_reference_naive_mlstm_is_the_mlstm():
    from blalm.bench.reference import naive_mlstm
    from blalm.model.ops.mlstm import mlstm_parallel

    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, 40, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    i_pre = torch.randn(2, 3, 40, generator=gen, dtype=torch.float64) - 2
    f_pre = torch.randn(2, 3, 40, generator=gen, dtype=torch.float64) + 3
    torch.testing.assert_close(naive_mlstm(q, k, v, i_pre, f_pre).double(), mlstm_parallel(q, k, v, i_pre, f_pre),
                               rtol=1e-6, atol=1e-6)


def test_a_peer_that_cannot_run_is_an_error_row_not_a_crash():
    """On this CPU machine the peers' packages (or CUDA) are missing: each becomes a row with an error,
    from its own process, and the bench goes on to the next."""
    from blalm.bench.peers import bench_peers

    shape = MixerShape(batch=1, heads=1, seq=16, head_dim=8, dtype="float32")
    rows = list(bench_peers(shape, ["nxai_triton_limit_chunk", "fla_chunk_simple_gla"], warmup=0, reps=1))
    assert [r["mixer"] for r in rows] == ["peer_nxai_triton_limit_chunk", "peer_fla_chunk_simple_gla"]
    assert all(r.get("error") for r in rows), rows


def test_eval_profile_prints_the_warm_pass_operators_and_writes_its_trace(data_dir, tmp_path, capsys):
    """``blalm bench eval MODEL --profile --trace FILE``: the operators of a warm scoring pass, and a
    Chrome trace of it (the GPU's version answers issue 15's "where do the 10 s of full BLiMP go")."""
    import json

    from blalm.cli import main
    from test_eval_scoring import build_tiny_lm
    from test_eval_suite import make_mini_eval

    model = build_tiny_lm(tmp_path / "lm", data_dir)
    mini = make_mini_eval(data_dir / "eval", tmp_path / "mini_eval")
    trace = tmp_path / "trace.json"
    assert main(["bench", "eval", str(model), "--data-dir", str(mini), "--device", "cpu", "--tasks", "blimp",
                 "--profile", "--trace", str(trace)]) == 0
    table = capsys.readouterr().out
    assert "Self CPU" in table and "aten::linear" in table
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "aten::log_softmax" for e in events)
