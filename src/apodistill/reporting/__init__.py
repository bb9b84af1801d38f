"""The evaluation report: tables of every system, charts, confusion matrices, disagreement
examples with their images, as self-contained HTML and Markdown, plus `dvc plots` data.

See docs/evaluation.md. :func:`write_report` is what the `evaluate` stage calls;
:mod:`apodistill.reporting.screenshot` checks that the HTML renders in headless Chromium.
"""

from apodistill.reporting.render import ReportInputs, write_report
from apodistill.reporting.tables import NOT_RUN, STUDENT_ARMS, Published, System, Table, load_published, systems_in_order

__all__ = [
    "NOT_RUN",
    "STUDENT_ARMS",
    "Published",
    "ReportInputs",
    "System",
    "Table",
    "load_published",
    "systems_in_order",
    "write_report",
]
