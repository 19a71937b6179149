"""The training stage (paper §5): ``blalm train CONFIG --out RUN_DIR``.

Modules, in the order data flows through them:

- ``config``      ``TrainConfig`` and ``load_train_config`` (the model config merged in);
- ``data``        the tokenized corpus (cached ``uint16`` token streams), fixed blocks, the
                  per-epoch permutation;
- ``optim``       the Muon/AdamW parameter split, the optimizers and the learning-rate schedule;
- ``milestones``  the BabyLM checkpoint milestones (words seen) and checkpoint names;
- ``checkpoint``  atomic checkpoints (safetensors + JSON, no pickle) and the ``latest`` pointer;
- ``metrics``     ``metrics.jsonl`` (+ TensorBoard when it is installed);
- ``trainer``     ``train(cfg, run_dir)``: the loop, resume, DDP, validation;
- ``cli``         the ``train`` verb.
"""
