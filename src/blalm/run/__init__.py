"""The run folder, a room of its own: what every stage that trains, scores or reports a run shares.

Train, finetune, eval, sweep, report and bench import these modules (never each other's internals):

- ``layout``      the folder's files (``CONFIG_FILE``, ``CHECKPOINTS``, ``METRICS_FILE``, ``LATEST_FILE``,
                  ``LOCK_FILE``, ...), ``is_run_dir``, ``check_run_dir``;
- ``checkpoint``  atomic checkpoints (safetensors + JSON, a SHA-256 of every file, verified on load,
                  never pickle), ``BackgroundSaver``, ``list_checkpoints``, ``verify_checkpoint``;
- ``resume``      ``choose_checkpoint`` (the newest that verifies; the others named and set aside),
                  ``check_same_settings``, ``config_differences``;
- ``metrics``     ``metrics.jsonl``: ``MetricsLogger``, ``read_metrics``, ``truncate_metrics``;
- ``device``      ``resolve_device``, ``resolve_precision`` / ``precision_context``, ``seed_everything``,
                  RNG states, ``Dist`` (torchrun processes);
- ``schedule``    the learning-rate schedule and the per-epoch order (functions of the step);
- ``parallel``    ``parallelize``: a model as a step drives it over torchrun's processes (DDP, or FSDP2
                  with full checkpoints: ``full_tensors`` / ``shard_like``), its gradient sync and clipping;
- ``session``     ``RunSession``: the plain steps of a training loop (start or resume, restore, one
                  step's bookkeeping, save), with ``after_step`` hooks.

One writer per run folder: :class:`blalm.lock.RunLock` on ``RUN_DIR/.lock``, held by
``session.hold_lock``. The fault points that tests and ``scripts/fault_injection.py`` kill at are in :mod:`blalm.faults`.
"""
