"""The embedded default benchmark: longitudinal synthetic patients, rendered and reported.

Each patient gets an anatomy and fixed finding locations, then a series of studies
whose finding severities follow a small Markov chain: an absent finding may appear
(worsening), a present one improves, stays or worsens by clearly visible steps, so that
consecutive studies give MS-CXR-T-like pairs with balanced improving / stable / worsening
classes. Everything is drawn from generators seeded by ``(base.seed, patient, study)``,
so tables and PNG bytes are identical for a seed, whatever the order of work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from apodistill.data.render import Patient, render, to_pil
from apodistill.data.reports import place_words, write_report
from apodistill.data.sources import SOURCES, SourceTables, finish_tables, pairs_from_studies
from apodistill.data.split import assign_splits, stratified_subset
from apodistill.findings import CHEXPERT_14, MS_CXR_T_5

# Acute findings evolve quickly; cardiomegaly is chronic; devices come and go.
ACUTE = ("pleural_effusion", "consolidation", "pneumonia", "pneumothorax", "edema", "atelectasis")
# Probability that a finding is present at the first study / appears between studies.
START_P = 0.3
ONSET_P = 0.16
# A present finding sits at one of three severity levels (small / moderate / large, the words
# reports and reasoning use), with a little jitter. Why levels and not a continuum: whether a
# finding grew is then a question a reader (and a 64 px student) can answer by naming its size
# on each film, and every change between studies is a whole level (0.3), far above the
# "stable" threshold, so a pair's class never hangs on an invisible difference.
LEVELS = (0.3, 0.6, 0.9)
JITTER = 0.04
MOVES = (0.42, 0.33, 0.25)  # improving / stable / worsening for a present acute finding
CHANGE_THRESHOLD = 0.15  # |delta severity| below this is "stable"
NOISE_SD = (0.012, 0.04)  # per-film noise: some films are grainier, and findings on them harder to see


def level_of(severity: float) -> int:
    """0 absent, 1 small, 2 moderate, 3 large."""
    return 0 if severity <= 0 else 1 + int(np.argmin([abs(severity - v) for v in LEVELS]))


def _at(level: int, rng: np.random.Generator) -> float:
    return 0.0 if level == 0 else float(np.clip(LEVELS[level - 1] + rng.uniform(-JITTER, JITTER), 0.2, 1.0))


def _evolve_acute(s: float, rng: np.random.Generator) -> float:
    k = level_of(s)
    if k == 0:
        return _at(int(rng.integers(1, 3)), rng) if rng.random() < ONSET_P else 0.0
    move = rng.choice(["improving", "stable", "worsening"], p=MOVES)
    if move == "worsening" and k == 3:
        move = "stable"
    return _at(k + {"improving": -1, "stable": 0, "worsening": 1}[move], rng)


def simulate_series(n_studies: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """Severities of every rendered finding for one patient's consecutive studies."""
    first = {f: _at(int(rng.integers(1, 4)), rng) if rng.random() < START_P else 0.0 for f in ACUTE}
    first["cardiomegaly"] = _at(int(rng.integers(1, 4)), rng) if rng.random() < START_P else 0.0
    first["support_devices"] = 1.0 if rng.random() < START_P else 0.0
    series = [first]
    for _ in range(n_studies - 1):
        prev = series[-1]
        nxt = {f: _evolve_acute(prev[f], rng) for f in ACUTE}
        c = prev["cardiomegaly"]
        nxt["cardiomegaly"] = _at(level_of(c), rng) if c else 0.0
        nxt["support_devices"] = 1.0 - prev["support_devices"] if rng.random() < 0.25 else prev["support_devices"]
        series.append(nxt)
    return series


def labels_from(sev: dict[str, float], hedged: dict[str, bool]) -> dict[str, float]:
    """The 14 CheXpert labels: rendered findings from severity; see docs/data.md for the rest."""
    lab = {f: np.nan for f in CHEXPERT_14}  # lung_lesion, pleural_other, fracture: never drawn nor mentioned
    for f, s in sev.items():
        lab[f] = (-1.0 if hedged.get(f) else 1.0) if s > 0 else 0.0
    opac = [lab[f] for f in ("consolidation", "pneumonia", "edema", "atelectasis")]
    lab["lung_opacity"] = 1.0 if 1.0 in opac else (-1.0 if -1.0 in opac else 0.0)  # CheXpert's parent class
    lab["enlarged_cardiomediastinum"] = lab["cardiomegaly"]  # parent of cardiomegaly
    pathology = [lab[f] for f in sev if f != "support_devices"]
    lab["no_finding"] = 1.0 if all(v == 0 for v in pathology) else 0.0
    return lab


def _patient_rows(i: int, cfg, seed: int) -> tuple[Patient, list[dict]]:
    rng = np.random.default_rng([seed, i])
    patient = Patient.sample(rng)
    series = simulate_series(cfg.studies_per_patient, rng)
    places = place_words(
        {
            "pleural_effusion": patient.effusion_side,
            "consolidation": patient.consolidation_side,
            "pneumothorax": patient.pneumothorax_side,
            "atelectasis": patient.atelectasis_side,
        },
        patient.consolidation_zone,
    )
    pid = f"P{i:05d}"
    day = float(rng.uniform(0, 720))
    anatomy = patient_features(patient, places)
    rows = []
    for k, sev in enumerate(series):
        srng = np.random.default_rng([seed, i, k, 7])
        hedged = {f: bool(0 < s < 0.4 and srng.random() < cfg.hedge_fraction) for f, s in sev.items()}
        noise = float(srng.uniform(*NOISE_SD))
        prior = series[k - 1] if k else None
        report = write_report(sev, hedged, places, prior, srng)
        sid = f"{pid}-S{k}"
        row = {
            "patient_id": pid,
            "study_id": sid,
            "image_path": f"images/{pid}/{sid}.png",
            "view": "PA",
            "report": report,
            "study_index": k,
            "_day": day,
            **{f"label_{f}": v for f, v in labels_from(sev, hedged).items()},
            **{f"severity_{f}": float(sev.get(f, 0.0)) for f in CHEXPERT_14},
            **anatomy,
            "image_noise": noise,
        }
        rows.append(row)
        day += float(rng.uniform(3, 60))
    return patient, rows


@SOURCES.register("synthetic")
def build_synthetic(params, out_dir: Path) -> SourceTables:
    """Simulate, split, subset, then render only the kept patients' images into ``out_dir/images``."""
    cfg, seed = params.fetch, params.base.seed
    patients, rows = {}, []
    for i in range(cfg.n_patients):
        patient, prow = _patient_rows(i, cfg, seed)
        patients[prow[0]["patient_id"]] = (i, patient)
        rows.extend(prow)
    studies = pd.DataFrame(rows)
    strat = sorted(set(MS_CXR_T_5) | set(params.base.findings))
    splits = assign_splits(studies, strat, cfg.val_fraction, cfg.test_fraction, seed)
    studies.insert(2, "split", studies["patient_id"].map(splits))
    keep = stratified_subset(studies, strat, cfg.fraction, seed)
    studies = studies[studies["patient_id"].isin(keep)]
    studies = studies.sort_values(["_day", "patient_id", "study_index"]).drop(columns="_day")

    shutil.rmtree(out_dir / "images", ignore_errors=True)  # no stale images from an earlier run
    for row in tqdm(studies.itertuples(), total=len(studies), desc="render", unit="img", mininterval=2):
        i, patient = patients[row.patient_id]
        sev = {f: getattr(row, f"severity_{f}") for f in ("pleural_effusion", "consolidation", "pneumonia", "pneumothorax", "edema", "cardiomegaly", "atelectasis", "support_devices")}
        img = render(patient, sev, cfg.image_size, np.random.default_rng([seed, i, row.study_index, 11]), noise=row.image_noise)
        path = out_dir / row.image_path
        path.parent.mkdir(parents=True, exist_ok=True)
        to_pil(img).save(path, format="PNG")
    studies = finish_tables(studies)
    return SourceTables(studies=studies, pairs=with_pair_features(pairs_from_studies(studies, CHANGE_THRESHOLD), studies))


# What the simulated teachers and the faithfulness metrics may know about an image beyond its
# labels (synthetic only): where each finding sits, how noisy the film is, every severity.
SIDED = ("pleural_effusion", "consolidation", "pneumothorax", "atelectasis")


def patient_features(patient: Patient, places: dict[str, dict[str, str]]) -> dict[str, str]:
    """Side of each sided finding (left / right / bilateral, the patient's side) and the consolidated zone."""
    out = {f"side_{f}": places[f]["side"] for f in SIDED}
    out.update({"side_pneumonia": "bilateral", "side_edema": "bilateral"})
    out["zone_consolidation"] = places["consolidation"]["zone"]
    return out


def with_pair_features(pairs: pd.DataFrame, studies: pd.DataFrame) -> pd.DataFrame:
    """Prior and current severities (and the current film's noise) beside each pair."""
    sev = [c for c in studies.columns if c.startswith("severity_")]
    by_id = studies.set_index("study_id")
    out = pairs.copy()
    for when, col in (("prior", "prior_study_id"), ("current", "current_study_id")):
        part = by_id.loc[out[col], sev + ["image_noise"]].reset_index(drop=True)
        part.columns = [f"{when}_{c}" for c in part.columns]
        out = pd.concat([out.reset_index(drop=True), part], axis=1)
    sides = [c for c in studies.columns if c.startswith(("side_", "zone_"))]
    return pd.concat([out, by_id.loc[out["current_study_id"], sides].reset_index(drop=True)], axis=1)


def reference_population(n_patients: int = 1500, studies_per_patient: int = 3, seed: int = 20260601) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Studies and pairs drawn from the generator without rendering (no images, no splits).

    The simulated teachers calibrate their error rates on this fixed population, so an
    answer depends only on its own study, never on which other studies are in the run.
    """
    from types import SimpleNamespace

    cfg = SimpleNamespace(studies_per_patient=studies_per_patient, hedge_fraction=0.15)
    rows = [r for i in range(n_patients) for r in _patient_rows(i, cfg, seed)[1]]
    studies = pd.DataFrame(rows).drop(columns="_day")
    studies["split"] = "train"
    studies = finish_tables(studies)
    pairs = with_pair_features(pairs_from_studies(studies, CHANGE_THRESHOLD), studies)
    return studies, pairs
