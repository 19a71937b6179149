"""The fast scoring paths give the numbers of the plain one: token-budget batches, shared prefixes
through the decoding cache (BLaLM with every mechanism, and the Transformer), the session's caches
and in-place weights, and the old fixed-count batching; plus the batch plans themselves."""

from __future__ import annotations

import pytest
import torch

from blalm.config import from_dict
from blalm.eval.batching import Batching, plan_batches, plan_shared_batches, shared_prefix_groups
from blalm.eval.config import EvalConfig
from blalm.eval.data import load_entity_tracking, load_ewok, load_minimal_pairs
from blalm.eval.config import EWOK_PASSWORD
from blalm.eval.loading import load_for_eval
from blalm.eval.scoring import Encoded, encode_candidates, forward_logits, sequence_logprobs
from blalm.eval.session import EvalSession
from blalm.eval.suite import evaluate_model
from blalm.eval.tasks import encode_items
from test_eval_suite import make_mini_eval
from test_hf_export import checkpoints, exports, tokenizer_dir  # noqa: F401  (fixtures)

TOL = 2e-5


def old_sequence_logprobs(model, seqs, batch_size=64):
    """The scoring loop before this change (fixed batch counts, the mask always passed, a copy back
    per batch), kept here as the reference the new batching must equal."""
    unique = list(dict.fromkeys(s for s in seqs if s.scored))
    order = sorted(range(len(unique)), key=lambda i: -len(unique[i].ids))
    results = {s: 0.0 for s in seqs if not s.scored}
    with torch.inference_mode():
        for k in range(0, len(order), batch_size):
            rows = [unique[i] for i in order[k:k + batch_size]]
            width = max(len(r.ids) for r in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            pick = torch.zeros((len(rows), width - 1), dtype=torch.bool)
            for j, r in enumerate(rows):
                ids[j, :len(r.ids)] = torch.tensor(r.ids)
                mask[j, :len(r.ids)] = 1
                pick[j, [p - 1 for p in r.scored]] = True
            logits = forward_logits(model, ids[:, :-1], mask[:, :-1])
            first = min(r.scored[0] for r in rows) - 1
            logp = torch.log_softmax(logits[:, first:].float(), dim=-1)
            target = logp.gather(-1, ids[:, 1 + first:].unsqueeze(-1)).squeeze(-1)
            target = torch.where(pick[:, first:], target, torch.zeros_like(target))
            for r, v in zip(rows, target.double().sum(dim=1).tolist()):
                results[r] = v
    return [results[s] for s in seqs]


@pytest.fixture(scope="module")
def eval_dir(data_dir):
    return data_dir / "eval"


def mixed_candidates(tok, eval_dir) -> list[Encoded]:
    """Entity-tracking items (long shared prefixes), EWoK (short ones) and BLiMP pairs (none)."""
    entity = load_entity_tracking(eval_dir / "full_eval/entity_tracking", per_group=1)[::2]
    ewok = load_ewok(eval_dir / "fast_eval/ewok_fast.zip", EWOK_PASSWORD)[::100]
    blimp = load_minimal_pairs(eval_dir / "fast_eval/blimp_fast")[::400]
    return encode_items(tok, entity + ewok + blimp)


@pytest.mark.parametrize("name", ["blalm", "transformer"])
def test_shared_prefixes_and_token_budgets_give_the_unshared_scores(name, checkpoints, eval_dir):  # noqa: F811
    model, tok = load_for_eval(checkpoints[name])
    seqs = mixed_candidates(tok, eval_dir)
    groups, _ = shared_prefix_groups([s.ids for s in seqs], 32)
    assert len(groups) >= 9 and all(len(g.members) == 5 for g in groups[:9])   # every entity item shares
    one_by_one = sequence_logprobs(model, seqs, batching=Batching(batch_size=1, shared_prefix_min=0))
    old = old_sequence_logprobs(model, seqs)
    assert old == pytest.approx(one_by_one, abs=TOL)
    for batching in (Batching(), Batching(token_budget=300, shared_prefix_min=8), Batching(token_budget=0),
                     Batching(batch_size=3, token_budget=50, shared_prefix_min=16)):
        got = sequence_logprobs(model, seqs, batching=batching)
        assert got == pytest.approx(one_by_one, abs=TOL), batching
    reordered = sequence_logprobs(model, seqs[::-1], batching=Batching(token_budget=200))
    assert reordered[::-1] == pytest.approx(one_by_one, abs=TOL)


def test_batch_plans_respect_the_budget_and_cover_every_sequence():
    lengths = [5, 40, 3, 17, 17, 90, 1, 33] * 7
    for batching in (Batching(token_budget=100), Batching(batch_size=4, token_budget=0),
                     Batching(token_budget=128, widths=(16, 32, 64, 128))):
        batches = plan_batches(lengths, batching)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            width = batching.padded_width(max(lengths[i] for i in b))
            assert len(b) <= batching.batch_size
            assert len(b) == 1 or not batching.token_budget or len(b) * width <= batching.token_budget
    seqs = [(1, 2, 3, 4, 5, 6, 7), (1, 2, 3, 4, 5, 9, 9, 9), (1, 2, 3, 4, 8), (2, 2), (1, 2, 3, 4, 5, 6, 7)]
    groups, alone = shared_prefix_groups(seqs, 3)
    # 4 tokens shared, cut to 3 so that the shortest member keeps an input and a target of its own
    assert [(g.prefix, g.members) for g in groups] == [(3, (0, 1, 2, 4))] and alone == [3]
    assert shared_prefix_groups(seqs, 4) == ([], [0, 1, 2, 3, 4])
    assert shared_prefix_groups(seqs, 0) == ([], [0, 1, 2, 3, 4])
    plans = plan_shared_batches(groups, [len(s) for s in seqs], Batching())
    assert plans == [(3, [0])]


def test_fixed_shapes_are_planned_for_the_inputs_fed(repo_root):
    """A sequence of n tokens feeds n - 1 inputs (the last token is only a target): the plan sizes its
    batches by that width, so each fixed (compiled) shape holds real rows, not filler ones. The fixed
    shapes run here through the eager model (the shape logic is the same; compiling is not needed)."""
    from blalm.model.cli import load_model_config
    from blalm.model.decoder import build_model

    torch.manual_seed(0)
    model = build_model(load_model_config(repo_root / "configs/model/tiny_blalm.toml", ["vocab_size=100"])).eval()
    shapes = []
    model.register_forward_pre_hook(lambda m, args, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                    with_kwargs=True)
    seqs = [Encoded(ids=tuple((7 * i + 3 * j) % 100 for j in range(33)), scored=tuple(range(20, 33)))
            for i in range(64)]                    # 32 inputs each: exactly a ladder width
    eager = sequence_logprobs(model, seqs, batching=Batching(shared_prefix_min=0))
    shapes.clear()
    fixed = Batching(token_budget=1024, shared_prefix_min=0, widths=(16, 32, 64))
    got = sequence_logprobs(model, seqs, batching=fixed)
    assert shapes == [(32, 32), (32, 32)]          # 1024 tokens each, every row a real one
    assert got == pytest.approx(eager, abs=TOL)


def test_session_reuses_data_tokens_and_the_model_and_scores_the_same(checkpoints, data_dir, tmp_path, repo_root):  # noqa: F811
    mini = make_mini_eval(data_dir / "eval", tmp_path / "mini")
    cfg = from_dict(EvalConfig, {"data_dir": str(mini), "device": "cpu", "progress": False,
                                 "entity_fast_per_group": 1, "tasks": ["blimp", "ewok", "entity_tracking", "reading"]})
    fresh = evaluate_model(checkpoints["blalm"], cfg)
    session = EvalSession()
    first = evaluate_model(checkpoints["blalm"], cfg, session=session)
    # a second checkpoint of the same architecture: other weights, copied into the held model
    from blalm.model.checkpoint import load_model, save_model

    other = load_model(checkpoints["blalm"])
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    second_path = save_model(other, tmp_path / "other", tokenizer_dir=checkpoints["blalm"])
    second = evaluate_model(second_path, cfg, session=session)
    alone = evaluate_model(second_path, cfg)
    assert session.hits["model"] == 1 and session.hits["data"] >= 4 and session.hits["encoded"] >= 4
    for a, b in ((fresh, first), (alone, second)):
        for task, res in a["tasks"].items():
            assert res["score"] == pytest.approx(b["tasks"][task]["score"], abs=1e-9), task
    assert first["tasks"]["blimp"]["score"] != second["tasks"]["blimp"]["score"] or \
        first["tasks"]["ewok"]["score"] != second["tasks"]["ewok"]["score"]
    assert {"read", "tokenize", "score"} <= set(first["tasks"]["ewok"]["timings"])
    assert first["tasks"]["blimp"]["n_sentences"] == 2 * first["tasks"]["blimp"]["n_items"]
    # a tokenizer with another vocabulary is never given the first one's token ids
    from test_eval_scoring import build_tiny_lm

    other_tok = build_tiny_lm(tmp_path / "qwen", data_dir)
    before = session.hits["encoded"]
    evaluate_model(other_tok, cfg, session=session)
    assert session.hits["encoded"] == before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transformer", "blalm"])
def test_compiled_model_with_bucketed_shapes_scores_the_same(checkpoints, eval_dir, name):  # noqa: F811
    """--compile compiles each decoder block in place (dynamic shapes): the same log-probs as eager."""
    from blalm.eval.scoring import compile_for_scoring

    model, tok = load_for_eval(checkpoints[name])
    seqs = encode_items(tok, load_minimal_pairs(eval_dir / "fast_eval/blimp_fast")[::700])
    plain = sequence_logprobs(model, seqs, batching=Batching())
    compiled = sequence_logprobs(compile_for_scoring(model), seqs,   # one shape
                                 batching=Batching(token_budget=1024, widths=(64,)))
    assert compiled == pytest.approx(plain, abs=TOL)
