"""Training: a small accelerate loop shared by SPD and APO (accumulation, checkpoints, resume, curves)."""
