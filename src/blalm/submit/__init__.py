"""The submission stage: ``blalm submit RUN_DIR --out DIR``, a BabyLM 2025 submission in one command.

* ``layout``  — the official revision names, milestone mapping, results layout and data paths.
* ``plan``    — what one run's submission consists of (track, name, main, milestone checkpoints).
* ``scoring`` — one zero-shot task on one model: predictions, blalm's score, the collated metric.
* ``repo``    — the model repository (plain git, one branch per revision, reproducible commits).
* ``pieces``  — the resumable pieces: a revision's branch, its scores, AoA, GLUE.
* ``collate`` — ``submission.json`` (as ``collate_preds.py`` writes it) and AoA's ``surprisal.json``.
* ``card``    — the model card and the folder's README.
* ``build``   — ``build_submission``: all of it, with a progress bar and a summary.
* ``cli``     — ``blalm submit``.
"""
