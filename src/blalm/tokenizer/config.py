"""The tokenizer stage's typed config (``configs/tokenizer/*.toml``), loaded by ``blalm.config.load_config``."""

from __future__ import annotations

from dataclasses import dataclass

from blalm.config import check
from blalm.tokenizer.train import DEFAULT_MIN_FREQUENCY, DEFAULT_VOCAB_SIZE, MIN_VOCAB_SIZE


@dataclass
class TokenizerConfig:
    vocab_size: int = DEFAULT_VOCAB_SIZE          # incl. the 256 byte symbols and 3 special tokens (the paper: 15K)
    min_frequency: int = DEFAULT_MIN_FREQUENCY    # merge only pairs seen at least this often in train.txt
    progress: bool = True         # the trainer's progress bars

    def validate(self) -> None:
        check(self.vocab_size >= MIN_VOCAB_SIZE,
              f"vocab_size {self.vocab_size} is too small: byte-level BPE needs at least {MIN_VOCAB_SIZE} "
              f"(256 bytes + 3 special tokens); the paper uses 15000")
        check(self.min_frequency >= 1, f"min_frequency must be >= 1 (1 allows merges of pairs seen once), "
                                       f"got {self.min_frequency}")
