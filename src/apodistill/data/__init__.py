"""Data layer: benchmark sources (registered by name), image checks, data card.

``build(params, out_dir)`` runs ``params.fetch.source`` and writes ``studies.parquet``,
``pairs.parquet``, ``image_quarantine.parquet`` (see docs/data.md for the contract).
"""

from apodistill.data import cxr_max, mimic, ms_cxr_t, synthetic  # noqa: F401  (register the sources)
from apodistill.data.build import build
from apodistill.data.images import resolve_image
from apodistill.data.render import RENDERED, render_study_image
from apodistill.data.sources import SOURCES, DataError

__all__ = ["build", "resolve_image", "render_study_image", "RENDERED", "SOURCES", "DataError"]
