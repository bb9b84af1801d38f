"""PhysioNet download against a local HTTP server on 127.0.0.1 serving the fixture tree."""

from __future__ import annotations

import base64
import hashlib
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from params_helpers import DEFAULT, section
from apodistill.data import DataError, build
from apodistill.data.download import fetch_file, read_sums

MIMIC = Path(__file__).parent / "fixtures" / "mimic_cxr"
USER, PASSWORD = "reader", "s3cret-pw"


class _Handler(SimpleHTTPRequestHandler):
    """Basic auth plus single-range GET, like PhysioNet's file server; counts bytes served."""

    served: list[tuple[str, int, int]]

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = data[start:]
        self.served.append((self.path, start, len(body)))  # before the body: the client may check at once
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server(tmp_path):
    """A copy of the fixture release with SHA256SUMS.txt (the corrupt JPEG's sum is of its bytes as served)."""
    release = tmp_path / "release"
    shutil.copytree(MIMIC, release, ignore=shutil.ignore_patterns("mimic-cxr-reports", "_make_fixtures.py"))
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(release).as_posix()}" for p in sorted(release.rglob("*")) if p.is_file()]
    (release / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    handler = type("H", (_Handler,), {"served": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(release)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/", release, handler.served
    httpd.shutdown()


def params(root: Path, url: str, **fetch) -> SimpleNamespace:
    return SimpleNamespace(
        base=DEFAULT.base,
        fetch=section("fetch", source="mimic_cxr", root=str(root), download=True, download_url=url, max_bad_fraction=0.5,
                      max_dropped_fraction=1.0, **fetch),  # reports: a separate release, not downloaded
    )


def test_download_then_read_and_never_store_credentials(server, tmp_path, monkeypatch):
    url, release, served = server
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", PASSWORD)
    root = tmp_path / "mimic"
    summary = build(params(root, url), tmp_path / "out")
    assert summary["studies"] == 7 and summary["bad_images"] == 1
    # only frontal images were fetched: the two lateral JPEGs stay on the server
    got = {p.relative_to(root).as_posix() for p in root.rglob("*.jpg")}
    assert len(got) == 9 and not any("174413ec" in g or "68b5c4b1" in g for g in got)
    for p in [*root.rglob("*"), *(tmp_path / "out").rglob("*")]:
        if p.is_file():
            assert PASSWORD.encode() not in p.read_bytes() and USER.encode() not in p.read_bytes(), p
    # a second run fetches nothing: every file is already there and verified
    n = len(served)
    build(params(root, url), tmp_path / "out2")
    assert len(served) == n + 1  # SHA256SUMS.txt only


def test_partial_file_is_resumed_with_a_range_request(server, tmp_path, monkeypatch):
    url, release, served = server
    rel = "mimic-cxr-2.0.0-metadata.csv.gz"
    data = (release / rel).read_bytes()
    dest = tmp_path / rel
    (tmp_path / (rel + ".part")).write_bytes(data[:100])
    headers = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    sums = read_sums(url, headers)
    assert fetch_file(url, rel, dest, sums[rel], headers)
    assert dest.read_bytes() == data and not (tmp_path / (rel + ".part")).exists()
    assert served[-1] == ("/" + rel, 100, len(data) - 100)


def test_checksum_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    url, release, _ = server
    headers = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    rel = "mimic-cxr-2.0.0-split.csv.gz"
    with pytest.raises(DataError, match="does not match SHA256SUMS"):
        fetch_file(url, rel, tmp_path / rel, "0" * 64, headers)
    assert not (tmp_path / rel).exists() and not (tmp_path / (rel + ".part")).exists()


def test_missing_or_wrong_credentials_are_named(server, tmp_path, monkeypatch):
    url, _, _ = server
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    monkeypatch.delenv("PHYSIONET_PASSWORD", raising=False)
    with pytest.raises(DataError, match="PHYSIONET_USERNAME"):
        build(params(tmp_path / "m", url), tmp_path / "out")
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", "wrong")
    with pytest.raises(DataError, match="refused"):
        build(params(tmp_path / "m", url), tmp_path / "out")


def test_fraction_downloads_only_the_kept_patients(server, tmp_path, monkeypatch):
    url, _, _ = server
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", PASSWORD)
    root = tmp_path / "mimic"
    build(params(root, url, fraction=0.5), tmp_path / "out")
    studies = pd.read_parquet(tmp_path / "out" / "studies.parquet")
    downloaded = {p.parts[-3] for p in root.rglob("*.jpg")}  # pXXXXXXXX folders
    assert downloaded == {f"p{pid}" for pid in studies["patient_id"]}
    assert len(downloaded) < 4
