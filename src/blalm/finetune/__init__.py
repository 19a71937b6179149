"""The fine-tuning stage (BabyLM 2025 (Super)GLUE protocol): ``blalm finetune MODEL --tasks ... --out DIR``.

- ``tasks``    the task table (fields, number of labels, batch size, epochs, metrics) and reading the
               ``glue_filtered`` files;
- ``head``     the classification model: the pretrained decoder (blalm or Hugging Face base model)
               plus a head on the last real token;
- ``layout``   the folder OUT: a task's settings, steps and finished result, the children's logs;
- ``metrics``  accuracy, binary F1 and MCC (pure functions);
- ``run``      ``finetune(cfg, out_dir)``: the loop, per-epoch validation and best-epoch selection,
               checkpoints, resume, results.json;
- ``parallel`` ``--jobs N``: the tasks in N child processes side by side (groups of about equal
               steps, a log each in OUT/logs/), before ``run``'s pass reads them back;
- ``cli``      the ``finetune`` verb.
"""
