"""Real-data readers on fixture trees that copy the real layouts, names and columns."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from params_helpers import DEFAULT, section
from apodistill.data import SOURCES, DataError, build
from apodistill.data.mimic import extract_sections
from apodistill.data.sources import PAIR_COLUMNS, STUDY_COLUMNS
from apodistill.findings import parse_trajectory

FIX = Path(__file__).parent / "fixtures"
MIMIC, MSCXRT, CXRMAX = FIX / "mimic_cxr", FIX / "ms_cxr_t", FIX / "cxr_max"
CORRUPT_STUDY = "59000001"


def params(source: str, **fetch) -> SimpleNamespace:
    fetch = {"max_bad_fraction": 0.5, "max_dropped_fraction": 0.5, **fetch}
    return SimpleNamespace(base=DEFAULT.base, fetch=section("fetch", source=source, **fetch))


def tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return tuple(pd.read_parquet(out / f"{n}.parquet") for n in ("studies", "pairs", "image_quarantine"))


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic")
    return build(params("mimic_cxr", root=str(MIMIC)), out), *tables(out)


def test_mimic_reads_exactly_the_frontal_studies(mimic):
    summary, studies, pairs, quarantine = mimic
    assert list(studies.columns) == STUDY_COLUMNS
    assert sorted(studies["study_id"]) == ["50414267", "53189527", "56000001", "56000002", "57375967", "58000000", "59000002"]
    # the lateral-only study is dropped by the reader, the truncated JPEG by the image check
    reasons = dict(zip(quarantine["study_id"], quarantine["reason"]))
    assert set(reasons) == {"53911762", CORRUPT_STUDY}
    assert "LATERAL" in reasons["53911762"] and "truncated" in reasons[CORRUPT_STUDY]
    assert summary["bad_images"] == 1 and summary["images_checked"] == 8
    by = studies.set_index("study_id")
    # two frontal images: PA preferred over AP
    assert by.at["56000001", "view"] == "PA" and by.at["56000001", "image_path"].endswith("ee315a0d-2c54f70b-7d914e68-f52b03ca-91d8e7f6.jpg")
    assert by.at["53189527", "view"] == "AP"
    assert Path(by.at["50414267", "image_path"]).is_absolute()
    assert by.at["50414267", "image_path"].endswith("files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg")


def test_mimic_official_split_labels_and_reports(mimic):
    _, studies, pairs, _ = mimic
    by = studies.set_index("study_id")
    assert by.loc[["50414267", "53189527", "57375967", "58000000"], "split"].eq("train").all()
    assert by.at["59000002", "split"] == "val" and by.at["56000002", "split"] == "test"
    assert by.at["57375967", "label_pneumonia"] == -1.0  # uncertain kept with uncertain_labels=ignore
    assert by.at["50414267", "label_pleural_effusion"] == 1.0 and by.at["50414267", "label_pneumothorax"] == 0.0
    assert pd.isna(by.at["50414267", "label_pneumonia"])  # blank in the CSV: not mentioned
    assert by.loc["58000000", [c for c in by if c.startswith("label_")]].isna().all()  # no label row
    assert by.at["58000000", "report"] == ""  # no report file
    assert by.at["50414267", "report"] == "FINDINGS: Moderate right pleural effusion. No pneumothorax.\nIMPRESSION: Right pleural effusion."
    assert by.at["53189527", "report"] == "IMPRESSION: Small right pleural effusion, decreased."
    # consecutive kept studies per patient; the corrupt study's pair is gone
    assert sorted(pairs["pair_id"]) == ["50414267__53189527", "56000001__56000002", "57375967__58000000"]
    assert list(pairs.columns) == PAIR_COLUMNS and pairs[[c for c in pairs if c.startswith("progression_")]].isna().all().all()
    assert by.at["59000002", "study_index"] == 0 and by.at["53189527", "study_index"] == 1


@pytest.mark.parametrize("mode,expected", [("positive", 1.0), ("negative", 0.0), ("ignore", -1.0)])
def test_uncertain_label_policy(tmp_path, mode, expected):
    build(params("mimic_cxr", root=str(MIMIC), uncertain_labels=mode), tmp_path)
    studies = pd.read_parquet(tmp_path / "studies.parquet").set_index("study_id")
    assert studies.at["57375967", "label_pneumonia"] == expected
    assert studies.at["57375967", "label_consolidation"] == expected


def test_negbio_and_view_params(tmp_path):
    build(params("mimic_cxr", root=str(MIMIC), label_source="negbio", views=["AP"]), tmp_path)
    studies = pd.read_parquet(tmp_path / "studies.parquet").set_index("study_id")
    assert sorted(studies.index) == ["53189527", "56000001", "57375967"]  # AP only
    assert studies.at["56000001", "view"] == "AP"
    assert studies.at["57375967", "label_pneumonia"] == 1.0  # negbio fixture says positive


def test_ms_cxr_t_pairs_join_mimic_images(tmp_path):
    summary = build(params("ms_cxr_t", root=str(MIMIC), annotations=str(MSCXRT)), tmp_path)
    studies, pairs, quarantine = tables(tmp_path)
    assert sorted(pairs["current_study_id"]) == ["53189527", "56000002", "58000000"]
    p = pairs.set_index("current_study_id")
    assert p.at["53189527", "progression_pleural_effusion"] == "improving"
    assert pd.isna(p.at["53189527", "progression_edema"])
    assert p.at["58000000", "progression_edema"] == "worsening" and p.at["58000000", "progression_consolidation"] == "stable"
    assert p.at["56000002", "prior_image_path"].endswith("ee315a0d-2c54f70b-7d914e68-f52b03ca-91d8e7f6.jpg")
    assert p.at["56000002", "label_quality_consolidation"] == "one_expert"
    # the pair whose prior is truncated and the row whose images MIMIC does not list are quarantined
    assert set(quarantine["study_id"]) == {CORRUPT_STUDY, "57000002"}
    assert quarantine.set_index("study_id").at["57000002", "reason"].startswith("unjoined row: image(s) p13/p13000000/s57000001/")
    assert summary["bad_images"] == 1 and summary["dropped.unjoined_rows"] == 1 and summary["dropped.rows_read"] == 5
    assert set(studies["study_id"]) == set(pairs["prior_study_id"]) | set(pairs["current_study_id"]) | {"59000002"}
    assert studies.set_index("study_id").at["56000001", "view"] == "PA"  # the image the pair uses
    assert (pairs["split"] == pairs["current_study_id"].map(studies.set_index("study_id")["split"])).all()


def test_cxr_max_trajectories_in_the_teacher_schema(tmp_path):
    build(params("cxr_max", root=str(MIMIC), annotations=str(CXRMAX)), tmp_path)
    studies, pairs, quarantine = tables(tmp_path)
    traj = pd.read_parquet(tmp_path / "trajectories.parquet")
    assert list(traj.columns) == [
        "record_id", "teacher", "model", "backend", "task", "study_id", "prior_study_id", "split", "stream_index",
        "prompt_mode", "template", "text", "status", "reason", "latency_s", "prompt_tokens", "completion_tokens",
    ]  # fmt: skip
    assert sorted(studies["study_id"]) == ["50414267", "56000002"]
    assert len(traj) == 5 and traj["record_id"].is_unique
    assert sorted(traj["teacher"].unique()) == ["gpt5", "grok4", "qwen_vl_max"]
    ok = traj[traj["status"] == "ok"]
    for text in ok["text"]:
        parse_trajectory(text, DEFAULT.base.findings)
    err = traj[traj["status"] == "error"]
    assert len(err) == 1 and err["teacher"].iloc[0] == "grok4" and err["text"].iloc[0] == ""
    gpt_eff = ok[(ok["teacher"] == "gpt5") & (ok["study_id"] == "50414267")]["text"].iloc[0]
    labels = parse_trajectory(gpt_eff, DEFAULT.base.findings).labels
    assert labels["pleural_effusion"] == "yes" and labels["pneumothorax"] == "no"  # "No pneumothorax is seen."
    assert (ok["template"] == "cxr_max:record_labels").sum() == 1  # the record with labels
    assert quarantine["reason"].str.contains("no image reference").sum() == 1
    assert (traj["split"] == traj["study_id"].map(studies.set_index("study_id")["split"])).all()


def test_cxr_max_without_mimic_tree_uses_the_records(tmp_path):
    release = tmp_path / "CXR-MAX"
    shutil.copytree(CXRMAX, release)
    (release / "files").symlink_to(MIMIC / "files", target_is_directory=True)
    build(params("cxr_max", annotations=str(release)), tmp_path / "out")
    studies = pd.read_parquet(tmp_path / "out" / "studies.parquet").set_index("study_id")
    assert sorted(studies.index) == ["50414267", "56000002"]
    assert studies.at["50414267", "label_pleural_effusion"] == 1.0  # from the record's labels
    assert pd.isna(studies.at["56000002", "label_pleural_effusion"])


@pytest.mark.parametrize(
    "source,fetch",
    [
        ("synthetic", {"n_patients": 30, "image_size": 32}),
        ("mimic_cxr", {"root": str(MIMIC)}),
        ("ms_cxr_t", {"root": str(MIMIC), "annotations": str(MSCXRT)}),
        ("cxr_max", {"root": str(MIMIC), "annotations": str(CXRMAX)}),
    ],
)
def test_no_patient_in_two_splits_for_every_source(tmp_path, source, fetch):
    assert {"synthetic", "mimic_cxr", "ms_cxr_t", "cxr_max"} <= set(SOURCES.names())  # every real source is covered here
    build(params(source, **fetch), tmp_path)
    studies, pairs, _ = tables(tmp_path)
    assert studies.groupby("patient_id")["split"].nunique().max() == 1
    assert set(studies["split"]) <= {"train", "val", "test"}
    split_of = studies.drop_duplicates("patient_id").set_index("patient_id")["split"]
    assert (pairs["split"] == pairs["patient_id"].map(split_of)).all()


def test_fraction_subsets_real_sources_by_patient(tmp_path):
    summary = build(params("mimic_cxr", root=str(MIMIC), fraction=0.5), tmp_path)
    studies = pd.read_parquet(tmp_path / "studies.parquet")
    assert 1 <= studies["patient_id"].nunique() < 4
    assert summary["patients"] == studies["patient_id"].nunique()


@pytest.mark.parametrize(
    "source,fetch,needle",
    [
        ("mimic_cxr", {"root": "/nonexistent/mimic-cxr-jpg"}, "mimic-cxr-2.0.0-metadata.csv.gz"),
        ("mimic_cxr", {}, "fetch.root is not set"),
        ("ms_cxr_t", {"root": str(MIMIC), "annotations": "/nonexistent/ms-cxr-t"}, "MS_CXR_T_temporal_image_classification"),
        ("cxr_max", {"annotations": "/nonexistent/cxr-max"}, "CXR-MAX"),
    ],
)
def test_absent_root_names_the_path_and_what_belongs_there(tmp_path, source, fetch, needle):
    with pytest.raises(DataError) as err:
        build(params(source, **fetch), tmp_path)
    assert needle in str(err.value)
    if "root" in fetch and fetch["root"].startswith("/nonexistent"):
        assert fetch["root"] in str(err.value)
    assert not (tmp_path / "studies.parquet").exists()


def test_report_sections_are_extracted():
    text = "WET READ: xx\n\nEXAMINATION: CHEST\n\nFINDINGS:\n  Heart size\n normal.\n\nIMPRESSION:\nNo acute process.\n"
    assert extract_sections(text) == "FINDINGS: Heart size normal.\nIMPRESSION: No acute process."
    assert extract_sections("FINAL REPORT\n no sections here") == ""


def test_metadata_column_case_does_not_matter(tmp_path):
    tree = tmp_path / "mimic"
    shutil.copytree(MIMIC, tree)
    meta = pd.read_csv(tree / "mimic-cxr-2.0.0-metadata.csv.gz")
    meta.rename(columns=str.lower).to_csv(tree / "mimic-cxr-2.0.0-metadata.csv.gz", index=False, compression="gzip")
    summary = build(params("mimic_cxr", root=str(tree)), tmp_path / "out")
    assert summary["studies"] == 7


def test_metadata_without_view_position_is_named(tmp_path):
    tree = tmp_path / "mimic"
    shutil.copytree(MIMIC, tree)
    meta = pd.read_csv(tree / "mimic-cxr-2.0.0-metadata.csv.gz").drop(columns="ViewPosition")
    meta.to_csv(tree / "mimic-cxr-2.0.0-metadata.csv.gz", index=False, compression="gzip")
    with pytest.raises(DataError, match="ViewPosition"):
        build(params("mimic_cxr", root=str(tree)), tmp_path / "out")


def test_cxr_max_trajectories_of_a_bad_image_are_dropped(tmp_path):
    import json

    release = tmp_path / "CXR-MAX"
    shutil.copytree(CXRMAX, release)
    bad = "files/p11/p11000011/s59000001/bb0e3d7a-9f21c4d8-4a6e1b35-c2f8d097-6e5a4b3c.jpg"
    (release / "Sonnet-4.jsonl").write_text(json.dumps({"image": bad, "model": "Sonnet-4", "response": "Normal lungs."}) + "\n")
    build(params("cxr_max", root=str(MIMIC), annotations=str(release)), tmp_path / "out")
    traj = pd.read_parquet(tmp_path / "out" / "trajectories.parquet")
    studies = pd.read_parquet(tmp_path / "out" / "studies.parquet")
    assert CORRUPT_STUDY not in set(traj["study_id"]) and "sonnet4" not in set(traj["teacher"])
    assert (traj["stream_index"] == traj["study_id"].map(studies.set_index("study_id")["stream_index"])).all()
