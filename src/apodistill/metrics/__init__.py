"""Evaluation metrics: per-finding accuracy, paired bootstrap intervals, an offline CheXpert-style
report labeler with clinical F1, and report-generation metrics (BLEU, ROUGE-L, METEOR, CIDEr).

Every function is pure (data in, flat ``{key: float}`` dict out) so the ``evaluate`` stage can
write them straight into ``reports/metrics.json``.
See docs/metrics.md for the conventions (what counts as wrong, how uncertain is treated).
"""

from apodistill.metrics.bootstrap import paired_bootstrap
from apodistill.metrics.classification import (
    accuracy_per_finding,
    confusion,
    correctness,
    precision_recall_f1,
)
from apodistill.metrics.labeler import chexpert_f1, chexpert_f1_from_labels, label_report, label_reports
from apodistill.metrics.reports import MeteorScorer, report_metrics, tokenize
from apodistill.metrics.zeroshot import answers_to_scores, auc_per_finding, read_chexpert, read_openi

__all__ = [
    "MeteorScorer",
    "accuracy_per_finding",
    "answers_to_scores",
    "auc_per_finding",
    "chexpert_f1",
    "chexpert_f1_from_labels",
    "confusion",
    "correctness",
    "label_report",
    "label_reports",
    "paired_bootstrap",
    "precision_recall_f1",
    "read_chexpert",
    "read_openi",
    "report_metrics",
    "tokenize",
]
