"""Optional MIMIC-CXR-JPG download from PhysioNet: resumable, SHA256-checked, credentials from the environment.

Why only what is needed: the full release is ~570 GB. The tables come first, then the
reader's own selection (frontal views, ``fetch.fraction`` of the patients) decides which
JPEGs to fetch, so ``fraction: 0.1`` downloads a tenth. Every file is checked against the
release's ``SHA256SUMS.txt``; a partial file (``.part``) is resumed with an HTTP Range
request. The PhysioNet user name and password are read from ``PHYSIONET_USERNAME`` and
``PHYSIONET_PASSWORD`` and are never written to disk, logs or provenance.
"""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from apodistill.data.sources import DataError

TABLES = ("metadata", "split", "chexpert", "negbio")
USER_ENV, PASSWORD_ENV = "PHYSIONET_USERNAME", "PHYSIONET_PASSWORD"
CHUNK = 1 << 20


def _auth_header() -> dict[str, str]:
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if not user or not password:
        raise DataError(
            f"fetch.download is true but {USER_ENV} / {PASSWORD_ENV} are not set: export your PhysioNet credentials "
            "(credentialed access to MIMIC-CXR-JPG is required); they are read from the environment only"
        )
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _open(url: str, headers: dict[str, str], offset: int = 0):
    req = urllib.request.Request(url, headers={**headers, **({"Range": f"bytes={offset}-"} if offset else {})})
    try:
        return urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise DataError(f"PhysioNet refused {url} ({err.code}): check {USER_ENV} / {PASSWORD_ENV} and that your account has access") from None
        raise DataError(f"download of {url} failed: HTTP {err.code}") from None
    except urllib.error.URLError as err:
        raise DataError(f"download of {url} failed: {err.reason}") from None


def read_sums(base_url: str, headers: dict[str, str]) -> dict[str, str]:
    """relative path -> sha256, from the release's SHA256SUMS.txt."""
    with _open(base_url.rstrip("/") + "/SHA256SUMS.txt", headers) as resp:
        lines = resp.read().decode().splitlines()
    sums = {}
    for line in lines:
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            sums[parts[1].strip().lstrip("*").removeprefix("./")] = parts[0].lower()
    if not sums:
        raise DataError(f"{base_url}SHA256SUMS.txt is empty or unreadable")
    return sums


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch_file(base_url: str, rel: str, dest: Path, expected: str, headers: dict[str, str]) -> bool:
    """Download ``rel`` to ``dest`` unless a verified copy is there; True when bytes were fetched."""
    if dest.is_file() and sha256(dest) == expected:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    with _open(base_url.rstrip("/") + "/" + rel, headers, offset) as resp:
        if offset and resp.status != 206:  # server ignored the Range request: start over
            offset = 0
        with part.open("ab" if offset else "wb") as fh:
            for block in iter(lambda: resp.read(CHUNK), b""):
                fh.write(block)
    got = sha256(part)
    if got != expected:
        part.unlink()
        raise DataError(f"{rel}: SHA256 {got} does not match SHA256SUMS.txt ({expected}); the partial file was removed, rerun to retry")
    part.replace(dest)
    return True


def download_mimic(root: Path, cfg, seed: int, findings: list[str]) -> dict[str, int]:
    """Fetch the tables, then the JPEGs the reader would keep; return counts for the log."""
    headers = _auth_header()
    root.mkdir(parents=True, exist_ok=True)
    sums = read_sums(cfg.download_url, headers)
    fetched = 0
    for kind in TABLES:
        rel = f"mimic-cxr-2.0.0-{kind}.csv.gz"
        if rel in sums:
            fetched += fetch_file(cfg.download_url, rel, root / rel, sums[rel], headers)
    wanted = needed_images(root, cfg, seed, findings)
    missing = [r for r in wanted if r not in sums]
    if missing:
        raise DataError(f"{len(missing)} selected images are not in {cfg.download_url}SHA256SUMS.txt (first: {missing[0]}); is download_url the MIMIC-CXR-JPG release?")
    for rel in tqdm(wanted, desc="download", unit="img", mininterval=2):
        fetched += fetch_file(cfg.download_url, rel, root / rel, sums[rel], headers)
    return {"selected_images": len(wanted), "fetched_files": fetched}


def needed_images(root: Path, cfg, seed: int, findings: list[str]) -> list[str]:
    """Relative paths of the frontal images of the patients ``fetch.fraction`` keeps (the reader's own subset)."""
    import pandas as pd

    from apodistill.data.mimic import find_table, image_path, read_labels, read_metadata
    from apodistill.data.mimic import SPLIT_NAMES
    from apodistill.data.split import stratified_subset

    meta = read_metadata(root)
    meta = meta[meta["ViewPosition"].fillna("").str.upper().isin([v.upper() for v in cfg.views])]
    split_file = find_table(root, "split", required=False)
    studies = meta[["subject_id", "study_id"]].drop_duplicates()
    if split_file is not None:
        split = pd.read_csv(split_file)[["study_id", "split"]].drop_duplicates("study_id")
        studies = studies.merge(split, on="study_id", how="left")
        studies["split"] = studies["split"].map(SPLIT_NAMES).fillna("train")
    else:
        studies["split"] = "train"
    if find_table(root, cfg.label_source, required=False):
        studies = studies.merge(read_labels(root, cfg.label_source, cfg.uncertain_labels).drop(columns="subject_id"), on="study_id", how="left")
    studies["patient_id"] = studies["subject_id"].astype(str)
    keep = stratified_subset(studies, findings, cfg.fraction, seed)
    meta = meta[meta["subject_id"].astype(str).isin(keep)]
    return sorted(str(image_path(Path("."), r.subject_id, r.study_id, r.dicom_id)) for r in meta.itertuples())
