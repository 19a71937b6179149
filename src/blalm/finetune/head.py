"""The classification model: a pretrained blalm decoder plus a head on the LAST real token.

``SequenceClassifier(backbone, num_labels)`` runs the decoder on right-padded input, takes the
final (normed) hidden state of each row's last real token (position ``attention_mask.sum(1) - 1``)
and applies dropout and a linear layer (``hidden -> num_labels``). For a causal decoder that is
the only position that has seen the whole input.

Note: the official BabyLM 2025 fine-tuning script pools the FIRST token's hidden state for causal
models too (evaluation-pipeline-2025 issue #38), which for a decoder sees only the first token; we
read the last real token instead, so our GLUE numbers are not comparable to that bug's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def last_token_states(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """``hidden (B, S, H)`` -> ``(B, H)``: each row's state at its last real token (right padding)."""
    last = attention_mask.long().sum(dim=1) - 1
    if bool((last < 0).any()):
        raise ValueError("every row needs at least one real token")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class SequenceClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)

    def pooled(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The head's input: the last real token's final hidden state (after the final norm)."""
        captured: list[Tensor] = []
        handle = self.backbone.norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.backbone(input_ids, attention_mask=attention_mask)
        finally:
            handle.remove()
        return last_token_states(captured[-1], attention_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits ``(B, num_labels)``."""
        return self.head(self.dropout(self.pooled(input_ids, attention_mask)).float())


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` of a list of token-id lists."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask
