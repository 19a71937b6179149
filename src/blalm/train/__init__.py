"""The training stage (paper §5): ``blalm train CONFIG --out RUN_DIR``.

Modules, in the order data flows through them:

- ``config``      ``TrainConfig`` and ``load_train_config`` (the model config merged in);
- ``data``        the tokenized corpus (cached ``uint16`` token streams), fixed blocks, the
                  per-epoch permutation;
- ``optim``       the Muon/AdamW parameter split and the optimizers;
- ``milestones``  the BabyLM checkpoint milestones (words seen) and checkpoint names;
- ``trainer``     ``train(cfg, run_dir)``: plan the run, the optimizer step, validation, DDP;
- ``cli``         the ``train`` verb.

The run folder itself (layout, lock, checkpoints, resume, metrics, device/precision/seeding, the
loop's plain steps shared with fine-tuning) is :mod:`blalm.run`.
"""
