"""Entity-tracking accuracy by number of operations against item length (sample_efficiency.md,
round 4: is the 128-token training context what limits the column?).

Reads each run's ``entity_per_group.json`` (every checkpoint's ``entity_tracking.per_group``
accuracies, copied from its ``results.json``) and measures the fast-suite items (the first 100 of
each ``{split}_{numops}_ops`` group, as the fast suite takes them) with a tokenizer:

    python docs/results/scripts/entity_by_ops.py docs/results/recipe_round4_h200 out/ss/tokenizer \\
        ../shared/data/eval/full_eval/entity_tracking
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

PER_GROUP = 100


def lengths(folder: Path, tokenizer: Tokenizer) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            group = f"{path.stem}_{obj['numops']}_ops"
            if len(out.setdefault(group, [])) < PER_GROUP:
                out[group].append(len(tokenizer.encode(obj["input_prefix"] + obj["options"][0]).ids))
    return out


def main(raw: Path, tokenizer_dir: Path, items: Path) -> None:
    lens = lengths(items, Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")))
    runs: dict[str, dict[str, list[float]]] = {}
    for path in sorted(raw.glob("*/entity_per_group.json")):
        name = path.parent.name.rsplit("_seed", 1)[0]
        for groups in json.loads(path.read_text()).values():
            for group, acc in groups.items():
                runs.setdefault(name, {}).setdefault(group, []).append(acc)
    ops = sorted({int(g.rsplit("_", 2)[-2]) for g in lens})
    of = lambda n: [g for g in lens if g.endswith(f"_{n}_ops")]  # noqa: E731
    print("| ops | " + " | ".join(map(str, ops)) + " |")
    print("|---|" + "---:|" * len(ops))
    print("| median tokens (share > 128) | " + " | ".join(
        f"{np.median([x for g in of(n) for x in lens[g]]):.0f} ({np.mean([x > 128 for g in of(n) for x in lens[g]]):.2f})"
        for n in ops) + " |")
    for name, acc in runs.items():
        print(f"| {name} | " + " | ".join(f"{np.mean([np.mean(acc[g]) for g in of(n)]):.1f}" for n in ops) + " |")


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:4]))
