"""Teachers: ask a roster of multimodal LLMs (or calibrated simulations of them) about every
study, cache each answer, and write the trajectory table.

Backends register by name in :data:`BACKENDS`: ``simulated`` (calibrated drifting profiles,
offline), ``openai`` (any OpenAI-compatible chat completions endpoint), ``hf`` (a local
transformers vision-language model through the student's processor path).
"""

from apodistill.teachers.backends import BACKENDS, Backend, Request, Result, RunContext

# Importing a backend module registers it.
from apodistill.teachers import hf, openai_compat, simulated  # noqa: E402,F401  isort: skip

__all__ = ["BACKENDS", "Backend", "Request", "Result", "RunContext"]
