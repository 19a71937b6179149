"""Forward+backward time of Triton mLSTM kernel variants side by side, eager and compiled (session 2,
H100, rows in ../mixer_tiles_h100.jsonl with "variant"). The variants are copies of
src/blalm/model/ops/mlstm/triton_parallel.py beside this script:

    git show 18d7a4a:src/blalm/model/ops/mlstm/triton_parallel.py > k_old.py    # session 1's kernel
    git show 78f31b1:src/blalm/model/ops/mlstm/triton_parallel.py > k_diag.py   # exp2 + masks on diagonal tiles only
    # k_exp2.py: k_diag.py with one masked loop again (= 3b5fb6e with the former tiles 64,64,4,2)
    PYTHONPATH=src python docs/results/scripts/mixer_variants.py k_old k_diag k_exp2
"""
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import torch

from blalm.bench.mixer import MixerShape, make_inputs, max_errors, time_fwd, time_fwd_bwd

shape = MixerShape()
inputs = make_inputs(shape, "cuda", torch.bfloat16)
for name in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    fn = module.mlstm_parallel_triton
    for compiled in (False, True):
        run = torch.compile(fn) if compiled else fn
        row = {"variant": name, "compiled": compiled,
               "fwd_bwd_ms": round(statistics.median(time_fwd_bwd(run, inputs, 5, 30)), 4),
               "fwd_ms": round(statistics.median(time_fwd(run, inputs, 5, 30)), 4)}
        if not compiled:
            row["err"] = max_errors(fn, shape, "cuda")
        print(json.dumps(row), flush=True)
        torch._dynamo.reset()
