"""``SubmitConfig``: what one ``blalm submit`` run does (built by the CLI with ``from_dict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from blalm.config import check


@dataclass
class SubmitConfig:
    track: Literal["", "strict-small", "strict"] = ""   # "" = the run's track
    name: str = ""                        # results/<name>/ and the model's name; "" = the run folder's name
    main: str = "final"                   # final (the last checkpoint), best (RUN_DIR/eval/summary.json) or a checkpoint name
    data_dir: str = ""                    # evaluation data folder (fast_eval/, full_eval/, aoa/); "" = the default
    glue_data: str = ""                   # GLUE files ({task}.train/.valid.jsonl); "" = <data_dir>/full_eval/glue_filtered
    glue_results: str = ""                # an existing 'blalm finetune' --out folder to reuse; "" = RUN_DIR/glue
    finetune: list[str] = field(default_factory=list)   # KEY=VALUE settings of blalm finetune (e.g. max_train=64)
    glue_jobs: int = 0                    # fine-tuning processes side by side (blalm finetune --jobs); 0 = auto:
    #                                       3 when the fine-tuning runs on CUDA, 1 on the CPU
    aoa_words: str = ""                   # the official AoA word file (cdi_childes.json); "" = looked for in data_dir
    batch_size: int = 1024                # most sequences per forward pass when scoring (as blalm eval)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"   # GPU scoring; fp32 = the official pipeline's numerics
    progress: bool = True

    def validate(self) -> None:
        check(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        check(self.glue_jobs >= 0, f"glue_jobs (--glue-jobs) must be >= 0 (0 = auto), got {self.glue_jobs}")
        check(bool(self.main), "main: give final, best or a checkpoint name")
        if self.name:
            check("/" not in self.name and self.name not in (".", "..") and Path(self.name).stem == self.name,
                  f"name {self.name!r}: the official pipeline keys results by the model's file stem; give a "
                  f"name without '/' or a '.suffix' (e.g. {Path(self.name).stem.replace('/', '_') or 'my-model'!r})")
        for item in self.finetune:
            check("=" in item, f"finetune setting {item!r}: expected KEY=VALUE (e.g. max_train=64)")
            check(item.partition("=")[0].strip() != "jobs",
                  f"finetune setting {item!r}: the fine-tuning processes are set by --glue-jobs N (glue_jobs); "
                  f"give that instead")
