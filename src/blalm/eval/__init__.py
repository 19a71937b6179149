"""The evaluation stage: the BabyLM 2025 zero-shot suite, scored as the official pipeline scores it.

Reference: ``babylm/evaluation-pipeline-2025`` (read, not copied). Where each definition comes from
and where we deviate is written in the module that implements it:

* ``loading``  — ``load_for_eval(path) -> (model, tokenizer)``: HF folders (blalm formats later).
* ``data``     — readers for the official data layout (``read_files.py``, ``reading/run.py``).
* ``scoring``  — summed token log-probabilities, BOS handling, batching (``dataset.py``,
  ``compute_results.py``, ``reading/evaluation_functions.py``).
* ``metrics``  — pure numbers: accuracies with ties, macro averages, Spearman/Pearson, OLS R²,
  sigmoid fits.
* ``tasks``    — BLiMP, supplement, EWoK, entity tracking, WUG.
* ``reading``  — eye tracking and self-paced reading (ΔR² scores).
* ``aoa``      — age of acquisition (needs several checkpoints).
* ``suite``    — ``evaluate_model``: run the suite, the paper's average, ``results.json``.
* ``cli``      — ``blalm eval``.
"""
