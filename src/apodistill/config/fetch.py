"""``fetch:`` section: which benchmark to build and how.  Owned by the data module."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from apodistill.config._base import Section


class FetchConfig(Section):
    source: str = Field(description="Registered data source: synthetic | mimic_cxr | ms_cxr_t | cxr_max.")
    root: str | None = Field(
        description="Real sources: the local MIMIC-CXR-JPG folder (files/, mimic-cxr-2.0.0-*.csv.gz); optional for cxr_max."
    )
    n_patients: int = Field(gt=0, description="Synthetic: number of patients.")
    studies_per_patient: int = Field(gt=0, description="Synthetic: longitudinal studies per patient (pairs come from consecutive ones).")
    image_size: int = Field(ge=32, description="Synthetic: rendered image side in pixels.")
    fraction: float = Field(gt=0, le=1, description="Patient-level, label-stratified subset to keep (the paper uses 0.1 of MIMIC-CXR).")
    val_fraction: float = Field(ge=0, lt=1, description="Synthetic: share of patients in val.")
    test_fraction: float = Field(gt=0, lt=1, description="Synthetic: share of patients in test.")
    max_bad_fraction: float = Field(ge=0, le=1, description="Fail the stage when more images than this are unreadable.")
    max_dropped_fraction: float = Field(
        ge=0,
        le=1,
        description="Real sources: fail the stage when more than this share of the kept studies has no report file, or of the "
        "annotation rows is unreadable or does not join MIMIC-CXR-JPG (each kind checked on its own). 1.0 builds without reports.",
    )
    hedge_fraction: float = Field(
        ge=0,
        le=1,
        description="Synthetic: share of faint (severity < 0.4) findings reported with uncertainty ('possible ...') and labelled -1.",
    )
    uncertain_labels: Literal["positive", "negative", "ignore"] = Field(
        description="MIMIC-CXR CheXpert -1 labels: count as positive (1), negative (0), or leave them uncertain (-1)."
    )
    label_source: Literal["chexpert", "negbio"] = Field(
        description="MIMIC-CXR-JPG labeler file: mimic-cxr-2.0.0-chexpert.csv.gz or -negbio.csv.gz."
    )
    views: list[str] = Field(
        min_length=1,
        description="MIMIC-CXR ViewPosition values kept, in order of preference (one image per study).",
    )
    reports_root: str | None = Field(
        description="Folder of the MIMIC-CXR reports (mimic-cxr-reports: files/pXX/pXXXXXXXX/sXXXXXXXX.txt); null: <root>/mimic-cxr-reports, "
        "<root>, then <root>/../mimic-cxr-reports (no report found in any of them is an error naming them).",
    )
    annotations: str | None = Field(
        description="ms_cxr_t: MS-CXR-T folder or its temporal image classification CSV; cxr_max: the CXR-MAX folder or file.",
    )
    download: bool = Field(
        description="mimic_cxr: download missing files from PhysioNet into `root` (credentials from PHYSIONET_USERNAME / PHYSIONET_PASSWORD).",
    )
    download_url: str = Field(
        description="Release folder the download reads (its SHA256SUMS.txt is checked).",
    )

    @field_validator("source")
    @classmethod
    def _registered(cls, source: str) -> str:
        from apodistill.data import SOURCES  # imported here: importing the data package registers every source

        return SOURCES.check(source)

    @field_validator("test_fraction")
    @classmethod
    def _train_left(cls, test: float, info: ValidationInfo) -> float:
        val = info.data.get("val_fraction")
        if val is not None and val + test >= 1:
            raise ValueError(f"val_fraction + test_fraction = {val + test:g} leaves no patients for train; the sum must be < 1")
        return test
