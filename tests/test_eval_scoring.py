"""The evaluation stage's numbers, checked against unbatched brute force on a tiny real causal LM.

The model is a real ``transformers`` Qwen3 (2 layers, hidden 32, fixed seed) with a byte-level BPE
tokenizer trained here on real held-out text; it is saved with ``save_pretrained`` and loaded back
with ``load_for_eval`` like any HF folder. Every score the stage computes (batched, padded, sorted,
deduplicated) is compared with a one-sentence-at-a-time computation written here:
``model(input_ids).logits`` → float32 ``log_softmax`` → sum.
"""

from __future__ import annotations

import json
import lzma
import math
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from blalm.eval.aoa import aoa_curve_fitness, aoa_word_surprisals, child_aoa, model_aoa
from blalm.eval.config import ENTITY_SPLITS, EWOK_PASSWORD
from blalm.eval.data import (CdiWord, load_cdi, load_entity_tracking, load_ewok, load_minimal_pairs,
                             load_reading, load_wug)
from blalm.eval.loading import load_for_eval
from blalm.eval.metrics import (fit_curve, judge, ols_r2, predictive_power, sigmoid4, softmax_first,
                                spearman)
from blalm.eval.reading import EYE_MEASURES, reading_results, reading_surprisals
from blalm.eval.scoring import encode_candidates, sequence_logprobs
from blalm.eval.tasks import accuracy_result, entity_tracking_result, score_items, wug_result

TOL = 1e-4


# ---------------------------------------------------------------------------------------------
# The tiny model (also imported by test_eval_suite.py)
# ---------------------------------------------------------------------------------------------

def dev_lines(data_dir: Path, n: int = 4000) -> list[str]:
    """About ``n`` non-empty lines of real held-out text, split evenly over the dev files."""
    files = sorted((data_dir / "dev").glob("*.jsonl.xz"))
    out: list[str] = []
    for path in files:
        got: list[str] = []
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            for raw in fh:
                got.extend(line for line in json.loads(raw)["text"].split("\n") if line.strip())
                if len(got) >= n // len(files):
                    break
        out.extend(got[: n // len(files)])
    return out


def build_tiny_lm(folder: Path, data_dir: Path, add_bos: bool = False, vocab_size: int | None = None) -> Path:
    """Train a byte-level BPE (vocab ~500) on real dev text and save it with a fixed-seed Qwen3.

    ``add_bos``: give the tokenizer a post-processor that puts <|bos|> first (Llama-style).
    ``vocab_size``: the model's vocabulary (default: the tokenizer's), to build a mismatch.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(dev_lines(data_dir), trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B",
                                                           special_tokens=[("<|bos|>", 0)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                 pad_token="<|pad|>", clean_up_tokenization_spaces=False)
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(folder))
    torch.manual_seed(1234)
    cfg = Qwen3Config(vocab_size=vocab_size or len(hf), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      max_position_embeddings=2048, tie_word_embeddings=True, initializer_range=0.3,
                      bos_token_id=0, eos_token_id=1, pad_token_id=2)
    Qwen3ForCausalLM(cfg).save_pretrained(str(folder))
    return folder




@pytest.fixture(scope="session")
def eval_dir(data_dir: Path) -> Path:
    return data_dir / "eval"


@pytest.fixture(scope="session")
def tiny(data_dir: Path, tmp_path_factory):
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), data_dir)
    return load_for_eval(path)


@pytest.fixture(scope="session")
def tiny_bos(data_dir: Path, tmp_path_factory):
    """The same weights (same seed) with a tokenizer that adds <|bos|> itself."""
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny_lm_bos"), data_dir, add_bos=True)
    return load_for_eval(path)


# ---------------------------------------------------------------------------------------------
# Brute force, one sequence at a time
# ---------------------------------------------------------------------------------------------

def token_logprobs(model, ids: list[int]) -> list[float]:
    """log P(ids[i] | ids[:i]) for i >= 1, from one unpadded forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    lp = torch.log_softmax(logits.float(), dim=-1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


def brute_sentence(model, tok, sentence: str, bos: bool = False) -> float:
    """A whole sentence: every token after the first (after BOS when there is one) is scored."""
    ids = tok(sentence)["input_ids"]
    if bos and ids[0] != tok.bos_token_id:
        ids = [tok.bos_token_id] + ids
    return math.fsum(token_logprobs(model, ids))


def brute_completion(model, tok, prefix: str, completion: str) -> float:
    """Only the tokens whose characters reach into the completion (prefix + completion = the text)."""
    text = prefix + completion
    enc = tok(text, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    lps = token_logprobs(model, ids)
    picked = [i for i in range(1, len(ids)) if offsets[i][1] > len(prefix)]
    # the scored tokens cover the whole completion
    assert tok.decode([ids[i] for i in picked]).endswith(completion.strip())
    return math.fsum(lps[i - 1] for i in picked)


def first_per_group(items, groups: int, per_group: int):
    seen: dict[str, int] = {}
    out = []
    for it in items:
        if it.group not in seen and len(seen) >= groups:
            continue
        if seen.get(it.group, 0) < per_group:
            seen[it.group] = seen.get(it.group, 0) + 1
            out.append(it)
    return out


def macro(values_by_group: dict[str, list[bool]]) -> float:
    return sum(100.0 * sum(v) / len(v) for v in values_by_group.values()) / len(values_by_group)


# ---------------------------------------------------------------------------------------------
# Tasks against brute force
# ---------------------------------------------------------------------------------------------

def test_blimp_and_supplement_match_brute_force(tiny, eval_dir):
    model, tok = tiny
    for folder, n_groups in (("fast_eval/blimp_fast", 3), ("fast_eval/supplement_fast", 2)):
        items = first_per_group(load_minimal_pairs(eval_dir / folder), n_groups, 20)
        assert len(items) == 20 * n_groups
        scores = score_items(model, tok, items, batch_size=16)
        by_group: dict[str, list[bool]] = {}
        for it, (good, bad) in zip(items, scores):
            ref_good = brute_sentence(model, tok, it.sentences[0])
            ref_bad = brute_sentence(model, tok, it.sentences[1])
            assert good == pytest.approx(ref_good, abs=TOL)
            assert bad == pytest.approx(ref_bad, abs=TOL)
            by_group.setdefault(it.group, []).append(ref_good >= ref_bad)
        res = accuracy_result(items, scores)
        assert res["score"] == pytest.approx(macro(by_group), abs=1e-9)
        assert set(res["per_group"]) == set(by_group)
        assert all(d["n"] == 20 for d in res["per_group"].values())


def test_blimp_group_is_the_uid_and_supplement_group_the_file(eval_dir):
    blimp = load_minimal_pairs(eval_dir / "fast_eval/blimp_fast")
    supp = load_minimal_pairs(eval_dir / "fast_eval/supplement_fast")
    assert len(blimp) == 67 * 200 and len({it.group for it in blimp}) == 67
    assert "passive_1" in {it.group for it in blimp}
    assert {it.group for it in supp} == {"hypernym", "qa_congruence_easy", "qa_congruence_tricky",
                                         "subject_aux_inversion", "turn_taking"}


def test_ewok_scores_only_the_target_after_context1(tiny, eval_dir):
    model, tok = tiny
    with zipfile.ZipFile(eval_dir / "fast_eval/ewok_fast.zip") as zf:
        name = next(n for n in zf.namelist() if n.endswith(".jsonl"))
        raw = [json.loads(line) for line in zf.open(name, pwd=EWOK_PASSWORD).read().decode().splitlines()[:3]]
    items = first_per_group(load_ewok(eval_dir / "fast_eval/ewok_fast.zip", EWOK_PASSWORD), 3, 3)
    assert len(items) == 9 and len({it.group for it in items}) == 3
    first = [it for it in items if it.group == raw[0]["Domain"]][:3]
    for it, rec in zip(first, raw):   # both candidates follow Context1 (the pipeline's decode_ewok)
        assert it.sentences == (f"{rec['Context1']} {rec['Target1']}", f"{rec['Context1']} {rec['Target2']}")
    scores = score_items(model, tok, items, batch_size=4)
    for it, got in zip(items, scores):
        for sent, comp, value in zip(it.sentences, it.completions, got):
            assert value == pytest.approx(brute_completion(model, tok, sent[:-len(comp)], comp), abs=TOL)


def test_entity_tracking_matches_brute_force_and_averages_splits(tiny, eval_dir):
    model, tok = tiny
    items = load_entity_tracking(eval_dir / "full_eval/entity_tracking", per_group=2)
    assert len(items) == 3 * 6 * 2      # 3 splits x numops 0..5 x 2
    items = items[::2][:15] + items[1::2][:15]   # 30 items, every split and several numops
    scores = score_items(model, tok, items, batch_size=8)
    groups: dict[str, list[bool]] = {}
    for it, got in zip(items, scores):
        prefix = it.sentences[0][:-len(it.completions[0])]
        ref = [brute_completion(model, tok, prefix, c) for c in it.completions]
        assert list(got) == pytest.approx(ref, abs=TOL)
        groups.setdefault(it.group, []).append(ref[0] >= max(ref[1:]))
    res = entity_tracking_result(items, scores, ENTITY_SPLITS)
    split_means = []
    for split in ENTITY_SPLITS:
        mine = {g: v for g, v in groups.items() if g.startswith(split + "_")}
        assert res["per_split"][split] == pytest.approx(macro(mine), abs=1e-9)
        split_means.append(macro(mine))
    assert res["score"] == pytest.approx(sum(split_means) / 3, abs=1e-9)


def _ranks(x):
    return [sum(1.0 for b in x if b < a) + (sum(1.0 for b in x if b == a) + 1) / 2 for a in x]


def test_wug_correlation_matches_brute_force(tiny, eval_dir):
    model, tok = tiny
    items = load_wug(eval_dir / "fast_eval/wug_adj_nominalization/wug_adj_nominalization.jsonl")[:20]
    scores = score_items(model, tok, items, batch_size=5)
    prefs = []
    for it, got in zip(items, scores):
        ref = [brute_sentence(model, tok, s) for s in it.sentences]
        assert list(got) == pytest.approx(ref, abs=TOL)
        prefs.append(1.0 / (1.0 + math.exp(ref[1] - ref[0])))   # softmax over two candidates
    rho = float(np.corrcoef(_ranks(prefs), _ranks([it.ratio for it in items]))[0, 1])
    res = wug_result(items, scores)
    assert res["spearman"] == pytest.approx(rho, abs=1e-4)
    assert res["score"] == pytest.approx(100 * rho, abs=1e-2)


def test_wug_past_tense_reads_the_encrypted_zip_with_three_candidates(tiny, eval_dir):
    items = load_wug(eval_dir / "fast_eval/wug_past_tense.zip", EWOK_PASSWORD, "wug_past")
    assert len(items) == 50 and all(len(it.sentences) == 3 for it in items)
    model, tok = tiny
    res = wug_result(items[:10], score_items(model, tok, items[:10]))
    assert res["status"] == "ok" and -100 <= res["score"] <= 100


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def brute_word_surprisal(model, tok, context: str, word: str, bos: bool = False) -> float:
    """The pipeline's get_p2, one forward per subword: -ln prod P(piece | re-tokenized context)."""
    target = tok(word, add_special_tokens=False)["input_ids"]
    total = 0.0
    text = context
    for k, t in enumerate(target):
        if k > 0:
            t = tok(tok.decode(t), add_special_tokens=False)["input_ids"][0]
        ids = ([tok.bos_token_id] if bos else []) + tok(text)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
        total -= float(lp[t])
        text = text + tok.decode(target[k])
    return total


def ols_r2_normal_equations(y, cols):
    X = np.column_stack([np.ones(len(y))] + cols)
    beta = np.linalg.solve(X.T @ X, X.T @ y)
    resid = y - X @ beta
    return 1 - resid @ resid / ((y - y.mean()) @ (y - y.mean()))


def test_reading_surprisals_and_regressions_match_brute_force(tiny, eval_dir):
    model, tok = tiny
    rows = load_reading(eval_dir / "fast_eval/reading/reading_data.csv")
    assert len(rows) == 1726
    sub = rows[::9]                                   # 192 rows
    assert any(len(tok(r.word, add_special_tokens=False)["input_ids"]) > 2 for r in sub)
    pred, prev = reading_surprisals(model, tok, sub, batch_size=16)
    for r, p, q in zip(sub, pred, prev):
        assert p == pytest.approx(brute_word_surprisal(model, tok, r.item, r.word), abs=TOL)
        if r.prev_item is None:
            assert math.isnan(q)
        else:
            assert q == pytest.approx(brute_word_surprisal(model, tok, r.prev_item, r.prev_word), abs=TOL)
    few = sub[:8]                                      # the BOS switch applies to the contexts too
    pred_bos, _ = reading_surprisals(model, tok, few, prepend_bos=True)
    for r, p, q in zip(few, pred_bos, pred):
        assert p == pytest.approx(brute_word_surprisal(model, tok, r.item, r.word, bos=True), abs=TOL)
        assert abs(p - q) > 1e-4
    res = reading_results(sub, pred, prev)

    def col(name):
        return np.array([r.values[name] for r in sub])

    s, L, C, y_pred = col("Subtlex_log10"), col("length"), col("context_length"), np.array(pred)
    scores = []
    for m in EYE_MEASURES:
        y = col(m)
        ok = np.isfinite(y) & np.isfinite(s) & np.isfinite(L) & np.isfinite(C)
        base = [s[ok], L[ok], C[ok], s[ok] * L[ok], s[ok] * C[ok], L[ok] * C[ok]]
        r2b = ols_r2_normal_equations(y[ok], base)
        r2m = ols_r2_normal_equations(y[ok], base + [y_pred[ok]])
        scores.append((r2m - r2b) / (1 - r2b) * 100)
        assert res["eye_tracking"]["per_measure"][m]["r2_baseline"] == pytest.approx(r2b, abs=1e-8)
    assert res["eye_tracking"]["score"] == pytest.approx(sum(scores) / 4, abs=1e-6)

    PL, PP, y = col("prev_length"), np.array(prev), col("self_paced_reading_time")
    ok = np.isfinite(y) & np.isfinite(s) & np.isfinite(L) & np.isfinite(C) & np.isfinite(PL) & np.isfinite(PP)
    v = [s[ok], L[ok], C[ok], PL[ok], PP[ok]]
    base = v + [v[i] * v[j] for i in range(5) for j in range(i + 1, 5)]
    r2b = ols_r2_normal_equations(y[ok], base)
    r2m = ols_r2_normal_equations(y[ok], base + [y_pred[ok]])
    assert res["self_paced_reading"]["score"] == pytest.approx((r2m - r2b) / (1 - r2b) * 100, abs=1e-6)
    assert res["self_paced_reading"]["per_measure"]["self_paced_reading_time"]["rows_baseline"] == int(ok.sum())


def test_reading_data_is_read_as_pandas_reads_it(eval_dir):
    rows = load_reading(eval_dir / "full_eval/reading/reading_data.csv")
    none_item = [r for r in rows if r.item == "None"]     # empty cell -> fillna("None")
    assert len(none_item) == 1 and none_item[0].word == "of"
    assert sum(r.prev_item is None for r in rows) == 206  # 205 sentence starts + the "None" prev_item
    assert sum(math.isnan(r.values["Subtlex_log10"]) for r in rows) == 30


# ---------------------------------------------------------------------------------------------
# Batching, padding, order, ties, BOS, dtype
# ---------------------------------------------------------------------------------------------

def test_padding_batch_size_and_order_change_no_score(tiny, eval_dir):
    model, tok = tiny
    items = (first_per_group(load_minimal_pairs(eval_dir / "fast_eval/blimp_fast"), 3, 15)
             + load_entity_tracking(eval_dir / "full_eval/entity_tracking", per_group=1)[:12])
    ref = score_items(model, tok, items, batch_size=1)
    for bs in (7, 64):
        got = score_items(model, tok, items, batch_size=bs)
        for a, b in zip(ref, got):
            assert list(b) == pytest.approx(list(a), abs=1e-5)
    order = list(range(len(items)))
    random.Random(0).shuffle(order)
    shuffled = score_items(model, tok, [items[i] for i in order], batch_size=7)
    for k, i in enumerate(order):
        assert list(shuffled[k]) == pytest.approx(list(ref[i]), abs=1e-5)
    assert (accuracy_result([items[i] for i in order], shuffled)["per_group"]
            == accuracy_result(items, score_items(model, tok, items, batch_size=64))["per_group"])


def test_identical_candidates_tie_and_count_as_correct_only_in_the_official_score(tiny, eval_dir):
    model, tok = tiny
    real = first_per_group(load_minimal_pairs(eval_dir / "fast_eval/blimp_fast"), 1, 4)
    s = real[0].sentences[0]
    from blalm.eval.data import RankingItem
    tie = RankingItem(group=real[0].group, sentences=(s, s), completions=(s, s), source="test")
    items = real + [tie]
    scores = score_items(model, tok, items, batch_size=3)
    assert scores[-1][0] == scores[-1][1]
    assert judge(scores[-1]).tie and judge(scores[-1]).correct
    res = accuracy_result(items, scores)
    correct_real = sum(judge(x).correct for x in scores[:-1])
    assert res["n_ties"] >= 1
    assert res["score"] == pytest.approx(100 * (correct_real + 1) / 5)
    assert res["score_ties_wrong"] == pytest.approx(100 * (correct_real + 1 - res["n_ties"]) / 5)
    assert judge([1.0, 1.0, 0.5]).correct and not judge([1.0, 1.0, 0.5]).strictly_correct
    assert not judge([0.5, 1.0]).correct


def test_bos_switch_matches_a_tokenizer_that_adds_bos(tiny, tiny_bos, eval_dir):
    model, tok = tiny
    model_b, tok_b = tiny_bos
    assert tok("a cat")["input_ids"][0] != tok.bos_token_id          # ours adds nothing
    assert tok_b("a cat")["input_ids"][0] == tok_b.bos_token_id      # Llama-style adds BOS
    items = first_per_group(load_minimal_pairs(eval_dir / "fast_eval/blimp_fast"), 2, 5)
    plain = score_items(model, tok, items)
    with_switch = score_items(model, tok, items, prepend_bos=True)
    adds_bos = score_items(model_b, tok_b, items)
    adds_bos_switch = score_items(model_b, tok_b, items, prepend_bos=True)   # no double BOS
    for it, p, w, a, a2 in zip(items, plain, with_switch, adds_bos, adds_bos_switch):
        assert list(w) == pytest.approx(list(a), abs=1e-5)
        assert list(a2) == pytest.approx(list(a), abs=1e-5)
        for sent, pv, wv in zip(it.sentences, p, w):
            assert wv == pytest.approx(brute_sentence(model, tok, sent, bos=True), abs=TOL)
            assert pv == pytest.approx(brute_sentence(model, tok, sent, bos=False), abs=TOL)
            assert abs(wv - pv) > 1e-3          # the first token is scored only with BOS


def test_log_softmax_is_float32_for_a_bfloat16_model(tiny, eval_dir):
    model, tok = tiny
    import copy
    m16 = copy.deepcopy(model).to(torch.bfloat16)
    items = first_per_group(load_minimal_pairs(eval_dir / "fast_eval/blimp_fast"), 1, 3)
    sents = [s for it in items for s in it.sentences]
    got = sequence_logprobs(m16, encode_candidates(tok, sents, sents), batch_size=1)
    for s, g in zip(sents, got):
        ids = torch.tensor([tok(s)["input_ids"]])
        with torch.no_grad():
            logits = m16(input_ids=ids[:, :-1], attention_mask=torch.ones_like(ids[:, :-1])).logits[0]
        assert logits.dtype == torch.bfloat16
        f32 = torch.log_softmax(logits.float(), -1).gather(-1, ids[0, 1:, None]).double().sum().item()
        assert g == pytest.approx(f32, abs=TOL)


# ---------------------------------------------------------------------------------------------
# Metrics and AoA
# ---------------------------------------------------------------------------------------------

def test_metrics_against_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)
    x, y = [1, 2, 2, 4, 5], [2, 1, 4, 3, 5]
    assert spearman(x, y) == pytest.approx(float(np.corrcoef(_ranks(x), _ranks(y))[0, 1]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert softmax_first([0.0, 0.0]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    yv = 2 * a + rng.normal(size=50)
    fit = np.polyfit(a, yv, 1)
    r2 = 1 - ((yv - np.polyval(fit, a)) ** 2).sum() / ((yv - yv.mean()) ** 2).sum()
    assert ols_r2(yv, [a]) == pytest.approx(r2)
    noise = rng.normal(size=50)
    pp = predictive_power(yv, {"a": a}, noise)
    assert pp["r2_model"] >= pp["r2_baseline"]
    assert pp["score"] == pytest.approx(pp["delta_r2"] / (1 - pp["r2_baseline"]) * 100)


def test_sigmoid_fit_recovers_known_parameters():
    x = np.linspace(16, 30, 15)
    true = (0.9, 0.6, 22.0, 0.05)
    p = fit_curve(sigmoid4, x, sigmoid4(x, *true), p0=[1.0, 0.1, 23.0, 0.0],
                  lower=[0, 0, 16, -0.5], upper=[2, 1, 30, 0.5])
    assert np.allclose(p, true, atol=1e-4)
    # child AoA: where the curve crosses 0.5
    aoa = child_aoa(list(range(16, 31)), list(sigmoid4(x, *true)))
    expected = 22.0 - math.log(0.9 / (0.5 - 0.05) - 1) / 0.6
    assert aoa == pytest.approx(expected, abs=1e-3)


def test_aoa_curve_fitness_orders_words_like_children(eval_dir):
    cdi = [w for w in load_cdi(eval_dir / "aoa/child_american_english_proportions.csv")
           if child_aoa(w.ages, w.proportions) is not None][:40]
    assert len(cdi) == 40
    steps = [1e6 * k for k in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    # a synthetic run in which a word is learnt (surprisal falls) later the later children learn it
    by_step: dict[float, dict[str, float]] = {s: {} for s in steps}
    for w in cdi:
        mid = 6.0 + (child_aoa(w.ages, w.proportions) - 16) / 14 * 1.8    # log10 words seen
        for s in steps:
            by_step[s][w.word] = 4.0 + 14.0 / (1 + math.exp(3.0 * (math.log10(s + 1) - mid)))
    res = aoa_curve_fitness(by_step, cdi)
    assert res["status"] == "ok" and res["n_words"] >= 30
    assert res["curve_fitness"] > 0.9
    assert model_aoa(steps[:2], [10.0, 5.0]) is None                     # < 3 steps
    few = aoa_curve_fitness({1e6: {}, 2e6: {}}, cdi)
    assert few["status"] == "not available" and "score" not in few


def test_aoa_word_surprisal_is_taken_after_bos(tiny):
    model, tok = tiny
    got = aoa_word_surprisals(model, tok, ["dog", "choo choo"])
    for word, value in got.items():
        ids = [tok.bos_token_id] + tok(word)["input_ids"]
        assert value == pytest.approx(-math.fsum(token_logprobs(model, ids)), abs=TOL)


def test_cdi_words_are_cleaned(eval_dir):
    words = {w.word: w for w in load_cdi(eval_dir / "aoa/child_american_english_proportions.csv")}
    assert "chicken" in words and "chicken (animal)" not in words
    assert "buttocks" in words and words["buttocks"].definition == "buttocks/bottom*"
    assert len(words["dog"].ages) == 15 and isinstance(words["dog"], CdiWord)
