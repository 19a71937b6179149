"""Host-side cost of full BLiMP's batches (docs/results/eval_speed.md, session 16): encode the 119,750
sentences with the strict-small tokenizer, group them as the GPU's 16,384-token budget would, and time
the padding and scored-position lists that `_plain_sums` builds per batch. From the repository root:
    python docs/results/scripts/eval_host_prep.py     # needs out/ss/tokenizer (.carry/ss.tar.xz)
"""
import sys, time, json, glob
import numpy as np
sys.path.insert(0, "src")
from transformers import PreTrainedTokenizerFast
from blalm.eval.scoring import encode_candidates, _padded_rows
tok = PreTrainedTokenizerFast(tokenizer_file="out/ss/tokenizer/tokenizer.json", bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>")
sents = []
for f in sorted(glob.glob("../shared/data/eval/full_eval/blimp_filtered/*.jsonl")):
    for line in open(f):
        d = json.loads(line); sents += [d["sentence_good"], d["sentence_bad"]]
enc = encode_candidates(tok, sents, sents, prepend_bos=True)
enc.sort(key=lambda e: len(e.ids))
batches, cur, budget = [], [], 16384
for e in enc:
    if cur and (len(cur) + 1) * len(e.ids) > budget:
        batches.append(cur); cur = []
    cur.append(e)
batches.append(cur)
print(len(enc), "sentences", len(batches), "batches", "contiguous", all(e.scored == tuple(range(e.scored[0], len(e.ids))) for e in enc))
def old(rows):
    n_rows, width = len(rows), max(len(r.ids) for r in rows) - 1
    ids, mask = _padded_rows([r.ids for r in rows], n_rows, width + 1)
    sel = np.array([(j, p - 1, r.ids[p]) for j, r in enumerate(rows) for p in r.scored], dtype=np.int64)
    return ids, mask, sel
t = time.perf_counter()
for b in batches: old(b)
print("old host prep", round(time.perf_counter() - t, 3), "s")
