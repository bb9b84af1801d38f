"""Regenerate tests/golden/metrics_fixed_strings.json (run by hand, never by pytest):

    .venv/bin/python tests/golden/make_golden.py

Report metrics are computed here with pycocoevalcap's own scorer classes, including its Meteor
wrapper class, on our shared tokenisation; the test then checks that
``apodistill.metrics.report_metrics`` (which talks to the METEOR jar itself) gives the same
numbers. The labeler part freezes today's labels so a rule change that moves them is noticed.
Needs Java for METEOR.
"""

from __future__ import annotations

import json
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from apodistill.metrics.labeler import chexpert_f1, label_reports
from apodistill.metrics.reports import tokenize

HERE = Path(__file__).parent

REFS = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Small left pleural effusion with adjacent atelectasis. No pneumothorax.",
    "Moderate cardiomegaly with mild pulmonary edema. Small bilateral pleural effusions.",
    "Right lower lobe consolidation concerning for pneumonia. No effusion.",
    "Endotracheal tube terminates 4 cm above the carina. Large right pneumothorax.",
    "No acute cardiopulmonary process.",
]
HYPS = [
    "Heart size is normal. Lungs are clear. No effusion or pneumothorax.",
    "Small left pleural effusion. Possible atelectasis. No pneumothorax.",
    "Cardiomegaly with pulmonary edema and bilateral effusions.",
    "Right lower lobe opacity, possible pneumonia. No pleural effusion.",
    "",
    "No acute cardiopulmonary process.",
]


def main() -> None:
    gts = {i: [tokenize(r)] for i, r in enumerate(REFS)}
    res = {i: [tokenize(h)] for i, h in enumerate(HYPS)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = Meteor()
    meteor, _ = meteor_scorer.compute_score(gts, res)
    report = {f"bleu{i + 1}": b for i, b in enumerate(bleu)}
    report["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    report["meteor"] = float(meteor)
    report["cider"] = float(Cider().compute_score(gts, res)[0])
    labels = {
        "refs": label_reports(REFS).to_dict(orient="list"),
        "hyps": label_reports(HYPS).to_dict(orient="list"),
    }
    out = {
        "refs": REFS,
        "hyps": HYPS,
        "report_metrics": report,
        "chexpert_f1": chexpert_f1(REFS, HYPS),
        "chexpert_f1_uncertain_positive": chexpert_f1(REFS, HYPS, uncertain="positive"),
        "labels": labels,
    }
    (HERE / "metrics_fixed_strings.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out["report_metrics"], indent=2))


if __name__ == "__main__":
    main()
