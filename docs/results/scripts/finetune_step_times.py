"""Step times of the GLUE fine-tuning step (docs/results/glue_h100.md): eager vs --compile on a random-init
270M BLaLM, GLUE-like lengths, batch 32, bf16. One-off; on a CUDA machine from the repository root:
    python docs/results/scripts/finetune_step_times.py triton
"""
import sys, time, random
import torch, torch.nn.functional as F
sys.path.insert(0, "src")
from blalm.model.config import ModelConfig
from blalm.model.cli import load_model_config
from blalm.model.decoder import build_model
from blalm.finetune.head import SequenceClassifier, compile_backbone, pad_batch, width_multiple
from blalm.finetune.run import to_device, predict_logits
from blalm.run.device import precision_context
from torch._dynamo.utils import counters
from pathlib import Path
dev = torch.device("cuda")
cfg = load_model_config(Path("configs/model/blalm_270m.toml"), [f"mlstm_kernel=\"{sys.argv[1] if len(sys.argv) > 1 else 'chunkwise'}\""])
rng = random.Random(0)
def batch_lengths():   # GLUE-like: mostly short, a tail of long inputs
    return [min(512, max(8, int(rng.lognormvariate(4.3, 0.6)))) for _ in range(32)]
batches = [[[rng.randrange(3, 15000) for _ in range(n)] for n in batch_lengths()] for _ in range(60)]
labels = [torch.tensor([rng.randrange(3) for _ in range(32)]) for _ in batches]
valid = [[rng.randrange(3, 15000) for _ in range(min(512, max(8, int(rng.lognormvariate(4.3, 0.6)))))] for _ in range(2000)]

def run(compiled, steps):
    torch.manual_seed(0)
    clf = SequenceClassifier(build_model(cfg, device=dev), 3, 0.0).to(dev)
    mult = 1
    if compiled:
        compile_backbone(clf.backbone); mult = width_multiple(clf.backbone)
    opt = torch.optim.AdamW(clf.parameters(), lr=3e-5, fused=True)
    times, losses = [], []
    for i in range(steps):
        t = time.time()
        b = batches[i % len(batches)]
        ids, mask = pad_batch(b, 0, mult)
        with precision_context(dev, "bf16"):
            loss = F.cross_entropy(clf(to_device(ids, dev), to_device(mask, dev)).float(), to_device(labels[i % len(batches)], dev))
        loss.backward(); torch.nn.utils.clip_grad_norm_(list(clf.parameters()), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if i < 12 or i == steps - 1:
            torch.cuda.synchronize(); times.append((i, round(time.time() - t, 2), ids.shape[1]))
    torch.cuda.synchronize(); t = time.time()
    for i in range(steps, steps + 40):
        b = batches[i % len(batches)]
        ids, mask = pad_batch(b, 0, mult)
        with precision_context(dev, "bf16"):
            loss = F.cross_entropy(clf(to_device(ids, dev), to_device(mask, dev)).float(), to_device(labels[i % len(batches)], dev))
        loss.backward(); torch.nn.utils.clip_grad_norm_(list(clf.parameters()), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize(); steady = 40 / (time.time() - t)
    res = {}
    for eb in (32, 128):
        t = time.time(); lg = predict_logits(clf, valid, 0, eb, dev, "bf16", mult); torch.cuda.synchronize()
        t2 = time.time(); lg = predict_logits(clf, valid, 0, eb, dev, "bf16", mult); torch.cuda.synchronize()
        res[eb] = (round(t2 - t, 2), round(time.time() - t2, 2))
    print(f"compiled={compiled} first steps (i, s, width): {times}", flush=True)
    print(f"compiled={compiled} steady {steady:.2f} steps/s; eval 2000 seqs (first, second) s by batch: {res}; "
          f"max mem {torch.cuda.max_memory_allocated()/2**30:.1f} GiB; graphs {dict(counters['stats'])}", flush=True)
    return [float(l) for l in losses[:12]], lg

le, lge = run(False, 20)
lc, lgc = run(True, 20)
print("loss eager", [round(x, 4) for x in le]); print("loss compiled", [round(x, 4) for x in lc])
print("eval argmax agreement", (lge.argmax(-1) == lgc.argmax(-1)).float().mean().item(), "max |dlogit|", (lge - lgc).abs().max().item())
