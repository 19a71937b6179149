"""The fine-tuning stage (BabyLM 2025 (Super)GLUE protocol): ``blalm finetune MODEL --tasks ... --out DIR``.

- ``tasks``    the task table (fields, number of labels, batch size, epochs, metrics) and reading the
               ``glue_filtered`` files;
- ``head``     the classification model: the pretrained decoder (blalm or Hugging Face base model)
               plus a head on the last real token;
- ``metrics``  accuracy, binary F1 and MCC (pure functions);
- ``run``      ``finetune(cfg, out_dir)``: the loop, per-epoch validation and best-epoch selection,
               checkpoints, resume, results.json;
- ``cli``      the ``finetune`` verb.
"""
