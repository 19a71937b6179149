"""Regional compilation: each decoder block of a model compiled in place with dynamic shapes.

Shared by the fine-tuning (``blalm finetune --compile``) and the scoring (``blalm eval --compile``):
the blocks of one class share their compiled code, and one dynamic graph serves many batch sizes and
widths, so compile time does not grow with depth or with the number of shapes a task's lengths make.
"""

from __future__ import annotations

from torch import nn

RECOMPILE_LIMIT = 64   # compiled graphs kept per layer class (widths x training/no_grad x batch-size specials)


def decoder_layers(backbone: nn.Module) -> nn.ModuleList | None:
    """The backbone's list of decoder blocks: the blalm decoder's ``layers``, a Hugging Face base
    model's ``layers`` (Llama, Qwen, ...) or ``h`` (GPT-2); None when there is no obvious list."""
    for name in ("layers", "h"):
        layers = getattr(backbone, name, None)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers
    return None


def compile_backbone(backbone: nn.Module, backend: str | object = "inductor", mode: str = "default") -> int:
    """Compile each decoder block of ``backbone`` in place with ``torch.compile(dynamic=True)``;
    return how many were compiled (0: no block list, the backbone stays eager). ``mode``: torch's
    compile mode (``"default"``, or ``"reduce-overhead"``: each block's kernels replayed as a CUDA
    graph, one recorded per input shape — on a GPU only; the CPU runs the compiled code as is).

    Regional compilation: the blocks of one class share their compiled code (dynamo guards on the
    module's class and attributes, not its identity), and dynamic shapes let one graph serve many
    batch sizes and widths. The embedding, the final norm (whose hook stops the blalm decoder
    before its vocabulary projection) and the head stay eager. ``nn.Module.compile`` keeps the
    parameter names, so checkpoints are those of the eager model. Raises dynamo's
    ``recompile_limit`` to :data:`RECOMPILE_LIMIT` (a process-wide setting): the chunkwise mLSTM
    loops over its chunks in Python, so each chunk count (and training vs ``no_grad``) is a graph
    of its own."""
    import torch._dynamo

    layers = decoder_layers(backbone)
    if layers is None:
        return 0
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for layer in layers:
        layer.compile(dynamic=True, backend=backend, mode=mode)
    return len(layers)
