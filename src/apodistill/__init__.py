"""apodistill: learn-compare-critique distillation of drifting multimodal teachers."""

__version__ = "0.1.0"
