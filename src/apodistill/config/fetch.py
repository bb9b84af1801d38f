"""``fetch:`` section: which benchmark to build and how.  Owned by the data module."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apodistill.config._base import Section


class FetchConfig(Section):
    source: str = Field("synthetic", description="Registered data source: synthetic | mimic_cxr | ms_cxr_t | cxr_max.")
    root: str | None = Field(None, description="Local root folder of a credentialed download (real sources only).")
    n_patients: int = Field(600, gt=0, description="Synthetic: number of patients.")
    studies_per_patient: int = Field(3, gt=0, description="Synthetic: longitudinal studies per patient (pairs come from consecutive ones).")
    image_size: int = Field(64, ge=32, description="Synthetic: rendered image side in pixels.")
    fraction: float = Field(1.0, gt=0, le=1, description="Patient-level, label-stratified subset to keep (the paper uses 0.1 of MIMIC-CXR).")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Synthetic: share of patients in val.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Synthetic: share of patients in test.")
    max_bad_fraction: float = Field(0.01, ge=0, le=1, description="Fail the stage when more images than this are unreadable.")
    uncertain_labels: Literal["positive", "negative", "ignore"] = Field(
        "ignore", description="MIMIC-CXR CheXpert -1 labels: count as positive, negative, or leave out."
    )
