"""Fast by default (issue 14): ``compile = "auto"`` and ``micro_batch = 0`` resolved per device."""

from __future__ import annotations

import json

import pytest

from blalm.model.decoder import build_model, count_parameters
from blalm.train.config import load_train_config
from blalm.train.execution import estimated_bytes, resolve_execution
from blalm.train.trainer import train
from test_train_helpers import REPO_ROOT, tiny_config, train_data  # noqa: F401

GiB = 2 ** 30


def paper_config(model: str = "blalm_270m.toml"):
    return load_train_config(REPO_ROOT / "configs/train/strict_small.toml",
                             [f'model_config="configs/model/{model}"', "model.short_conv=false"])


def test_the_shipped_paper_config_asks_for_the_fast_path():
    cfg = paper_config()
    assert cfg.compile == "auto" and cfg.micro_batch == 0 and cfg.model.mlstm_kernel == "auto"


def test_cpu_keeps_the_cpu_behaviour_and_explicit_values_win():
    cfg = paper_config()
    params = count_parameters(build_model(cfg.model, "meta"))["total"]
    cpu = resolve_execution(cfg, "cpu", params)
    assert cpu.compile is False and cpu.micro_batch == 8                     # the former default
    odd = resolve_execution(load_train_config(REPO_ROOT / "configs/train/strict_small.toml", ["global_batch=12"]),
                            "cpu", params)
    assert odd.micro_batch == 6                                            # a divisor: the global batch is kept
    given = load_train_config(REPO_ROOT / "configs/train/strict_small.toml", ["micro_batch=16", "compile=false"])
    assert resolve_execution(given, "cuda", params, 1, 141 * GiB) == given


@pytest.mark.parametrize("memory_gib, world, expected", [(141, 1, 64), (80, 1, 64), (24, 1, 16), (24, 2, 16),
                                                         (80, 2, 32), (8, 1, 2), (2, 1, 1)])
def test_gpu_micro_batch_is_the_largest_divisor_that_fits(memory_gib, world, expected):
    cfg = paper_config()
    params = count_parameters(build_model(cfg.model, "meta"))["total"]
    gpu = resolve_execution(cfg, "cuda", params, world, memory_gib * GiB)
    assert gpu.compile is True and gpu.micro_batch == expected
    assert (cfg.global_batch // world) % gpu.micro_batch == 0


def test_the_memory_rule_is_on_the_safe_side_of_the_measured_peaks():
    """Peaks recorded in docs/results/performance.md: BLaLM 270M compiled at micro-batch 64, 35.2 GiB
    (H200, 2026-12-01); the Transformer 250M compiled at 64, 33.9 GiB; BLaLM eager at 32, 33.9 GiB (H100)."""
    for model, micro, compiled, measured in (("blalm_270m.toml", 64, True, 35.2), ("transformer_250m.toml", 64, True, 33.9),
                                             ("blalm_270m.toml", 32, False, 33.9)):
        cfg = paper_config(model)
        params = count_parameters(build_model(cfg.model, "meta"))["total"]
        estimate = estimated_bytes(cfg, params, micro, compiled) / GiB
        assert measured <= estimate <= 1.5 * measured, (model, micro, estimate)


def test_a_cpu_run_records_what_was_chosen(train_data, tmp_path):
    corpus, tokenizer = train_data
    train(tiny_config(corpus, tokenizer, micro_batch=0, max_steps=2, epochs=1), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["micro_batch"] == 8 and saved["compile"] is False


def test_a_global_batch_the_processes_do_not_divide_is_refused_before_choosing(train_data, tmp_path):
    """micro_batch = 0 with 3 processes and global batch 8: no micro-batch can keep 8 blocks a step."""
    from blalm.errors import BlalmError
    from blalm.train.trainer import check_inputs

    corpus, tokenizer = train_data
    cfg = tiny_config(corpus, tokenizer, micro_batch=0)
    assert check_inputs(cfg, world_size=2) is not None                 # 8 = 4 a process: fine
    with pytest.raises(BlalmError, match="global_batch \\(8\\) must be a multiple of micro_batch x processes"):
        check_inputs(cfg, world_size=3)
