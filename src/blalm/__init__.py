"""blalm: sample-efficient language modelling under the BabyLM rules (the BLaLM paper's system)."""

__version__ = "0.1.0"
