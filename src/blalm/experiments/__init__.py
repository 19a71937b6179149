"""The paper's experiments as sweeps: ``blalm sweep EXPERIMENT --out DIR`` (see ``config`` and ``sweep``)."""
