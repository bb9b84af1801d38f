"""``openai`` backend against a local OpenAI-compatible server that injects faults.

Every request must end ok, refused or error with a recorded reason; the PHI guard must stop
credentialed images before any request; the API key must never be written anywhere.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml
from teachers_helpers import gc_held, make_benchmark

from apodistill.config import load_params
from params_helpers import DEFAULT, teachers_config
from apodistill.teachers.backends import TeacherSetupError
from fake_openai_server import FakeOpenAIServer, identity_of
from apodistill.teachers.guard import PhiGuardError
from apodistill.teachers.openai_compat import OpenAIBackend, image_data_url, parse_completion, retry_after_s
from apodistill.teachers.runner import run_teachers

TEMPLATES = "templates/teachers"
KEY_ENV = "APODISTILL_TEST_TEACHER_KEY"

# identity -> behaviour of each attempt; the last entry repeats
SCENARIOS = {
    "ok": ["ok"],
    "429_then_ok": ["429", "ok"],
    "500_500_then_ok": ["500", "503", "ok"],
    "timeout_then_ok": ["timeout", "ok"],
    "malformed_then_ok": ["malformed", "ok"],
    "refuse": ["refuse"],
    "refusal_field": ["refusal_field"],
    "always_500": ["500"],
    "always_malformed": ["malformed"],
    "always_timeout": ["timeout"],
    "400": ["400"],
}
EXPECTED = {  # scenario -> (status, reason prefix, attempts)
    "ok": ("ok", None, 1),
    "429_then_ok": ("ok", None, 2),
    "500_500_then_ok": ("ok", None, 3),
    "timeout_then_ok": ("ok", None, 2),
    "malformed_then_ok": ("ok", None, 2),
    "refuse": ("refused", "refusal", 1),
    "refusal_field": ("refused", "refusal", 1),
    "always_500": ("error", "http_500: gave up after 4 attempts", 4),
    "always_malformed": ("error", "malformed_json: gave up after 4 attempts", 4),
    "always_timeout": ("error", "timeout: gave up after 4 attempts", 4),
    "400": ("error", "http_400", 1),
}


def _identities(bench: Path) -> dict[str, str]:
    studies = pd.read_parquet(bench / "studies.parquet")
    return {identity_of([image_data_url(str(bench / p))]): s for s, p in zip(studies.study_id, studies.image_path)}


def _roster(url: str, **kw) -> list[dict]:
    # Hedging is off here: test_teachers_hangs tests it.
    spec = {"name": "remote", "backend": "openai", "model": "gpt-5", "base_url": url, "api_key_env": KEY_ENV,
            "concurrency": 6, "rpm": 60000, "timeout_s": 30.0, "max_retries": 3, "backoff_s": 0.02,
            "hedge_factor": None, **kw}
    return [spec]


@pytest.fixture
def key(monkeypatch):
    secret = "sk-test-Zq81xPLk0s3cr3tValue"
    monkeypatch.setenv(KEY_ENV, secret)
    return secret


TIMEOUTS = ("timeout_then_ok", "always_timeout")


def _faults(tmp_path: Path, scenarios: list[str], n_patients: int, timeout_s: float):
    """Run the roster against a server that gives each study the scenario its identity draws.

    Only the timeout scenarios need a short deadline, and a short deadline is a race that a
    loaded CI machine can lose on any request (a stall past it times out an attempt the
    server never read): CI once saw 4 attempts and 3 requests for an always_500 study with a
    0.5 s deadline. So they run apart, and the other scenarios run under a 30 s deadline
    that no stall reaches.
    """
    bench = make_benchmark(tmp_path / "b", n_patients=n_patients, studies_per_patient=2)
    ids = _identities(bench)
    scenario_of = {ident: scenarios[i % len(scenarios)] for i, ident in enumerate(sorted(ids))}

    def plan(ident: str, attempt: int) -> str:
        steps = SCENARIOS[scenario_of[ident]]
        return steps[min(attempt, len(steps) - 1)]

    with gc_held(), FakeOpenAIServer(plan=plan, timeout_sleep_s=4 * timeout_s, retry_after="0.3") as server:
        cfg = teachers_config(roster=_roster(server.url, timeout_s=timeout_s), weights="auto", tasks=["single"])
        out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
    table = out.table.assign(scenario=out.table.study_id.map({s: scenario_of[i] for i, s in ids.items()}))
    assert len(table) == 2 * n_patients and table.record_id.is_unique
    assert table.loc[table.status != "ok", "reason"].notna().all()
    with sqlite3.connect(tmp_path / "c.sqlite") as con:
        attempts = dict(con.execute("SELECT study_id, attempts FROM answers"))
    identity = {s: i for i, s in ids.items()}
    for row in table.itertuples():
        status, reason, n = EXPECTED[row.scenario]
        assert row.status == status, (row.scenario, row.status, row.reason)
        if reason:
            assert row.reason.startswith(reason), (row.scenario, row.reason)
        seen = [e["behaviour"] for e in server.log if e["identity"] == identity[row.study_id]]
        assert attempts[row.study_id] == n, (row.scenario, row.reason, seen)
        assert len(seen) == n, (row.scenario, row.reason, seen)  # nothing sent more often than needed
    ok = table[table.status == "ok"]
    assert (ok.prompt_tokens == 300).all() and (ok.completion_tokens == 60).all()
    assert ok.text.str.contains("<answer>").all()
    return out, table, server, scenario_of


def test_every_fault_ends_ok_or_with_a_recorded_reason(tmp_path, key):
    names = [s for s in SCENARIOS if s not in TIMEOUTS]
    out, t, server, scenario_of = _faults(tmp_path, names, n_patients=18, timeout_s=30.0)  # 36 studies, 4 per scenario
    assert set(t.status) == {"ok", "refused", "error"}
    # Retry-After honoured: the retry of a 429 came no sooner than 0.3 s later
    for ident, s in scenario_of.items():
        if s == "429_then_ok":
            times = [e["t"] for e in server.log if e["identity"] == ident]
            assert times[1] - times[0] >= 0.3
    assert out.stats["remote.error"] == 12 and out.stats["remote.refused"] == 8
    assert out.stats["remote.error_reason.http_500"] == 4 and out.stats["remote.error_reason.malformed_json"] == 4


def test_a_timeout_is_retried_and_recorded(tmp_path, key):
    out, t, server, _ = _faults(tmp_path, list(TIMEOUTS), n_patients=4, timeout_s=1.5)  # 8 studies, 4 per scenario
    assert sorted(t.status.value_counts().items()) == [("error", 4), ("ok", 4)]
    assert out.stats["remote.error_reason.timeout"] == 4


def test_concurrency_limit_holds(tmp_path, key):
    bench = make_benchmark(tmp_path / "b", n_patients=12)  # 24 requests
    with FakeOpenAIServer(latency_s=0.05) as server:
        cfg = teachers_config(roster=_roster(server.url, concurrency=3), weights="auto", tasks=["single"])
        out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
    assert (out.table.status == "ok").all()
    assert server.max_in_flight == 3  # used, never exceeded


def test_phi_guard_refuses_before_any_request(tmp_path, key):
    bench = make_benchmark(tmp_path / "b", n_patients=3)
    with FakeOpenAIServer() as server:
        cfg = teachers_config(roster=_roster(server.url), weights="auto", tasks=["single"])
        for source in ("mimic_cxr", "ms_cxr_t"):
            with pytest.raises(PhiGuardError) as err:
                run_teachers(cfg, DEFAULT.base, source, bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
            msg = str(err.value)
            assert "remote" in msg and "PhysioNet" in msg and "phi_approved: true" in msg
        assert server.log == []  # zero requests reached the server
        assert not (tmp_path / "c.sqlite").exists()
        approved = teachers_config(roster=_roster(server.url, phi_approved=True), weights="auto", tasks=["single"])
        out = run_teachers(approved, DEFAULT.base, "mimic_cxr", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
        assert (out.table.status == "ok").all() and len(server.log) == 6


def test_pipeline_phi_guard_exits_3_and_writes_nothing(tmp_path, key, capsys):
    import importlib.util

    bench = make_benchmark(tmp_path / "b", n_patients=3)
    params = yaml.safe_load(Path("params.yaml").read_text())
    with FakeOpenAIServer() as server:
        params["fetch"]["source"] = "mimic_cxr"
        params["teachers"]["roster"] = _roster(server.url)
        params["teachers"]["weights"] = "auto"
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        load_params(tmp_path / "params.yaml")
        spec = importlib.util.spec_from_file_location("stage_teachers", "pipeline/teachers.py")
        stage = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stage)
        rc = stage.main(["--params", str(tmp_path / "params.yaml"), "--benchmark", str(bench), "--templates", TEMPLATES,
                         "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "out"),
                         "--stats", str(tmp_path / "s.json"), "--no-progress", "--no-mlflow"])
        assert rc == 3 and server.log == []
    assert "phi_approved" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.json").exists()


def test_key_is_sent_but_never_written(tmp_path, key, capfd, caplog, monkeypatch):
    import importlib.util
    import logging

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("APODISTILL_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    monkeypatch.chdir(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    bench = make_benchmark(tmp_path / "b", n_patients=4)
    behaviours = iter(["400_echo", "500"] + ["ok"] * 100)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    with FakeOpenAIServer(plan=lambda i, a: next(behaviours)) as server:
        params["teachers"]["roster"] = _roster(server.url, concurrency=1)
        params["teachers"]["weights"] = "auto"
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        spec = importlib.util.spec_from_file_location("stage_teachers", repo / "pipeline/teachers.py")
        stage = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stage)
        rc = stage.main(["--params", "params.yaml", "--benchmark", "b", "--templates", str(repo / TEMPLATES),
                         "--cache", "cache/t.sqlite", "--out", "out", "--stats", "reports/t.json"])
    assert rc == 0
    assert {e["authorization"] for e in server.log} == {f"Bearer {key}"}
    table = pd.read_parquet(tmp_path / "out/trajectories.parquet")
    assert "http_400" in set(table.reason.dropna().str[:8])  # the echoing 400 was recorded ...
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaked == []  # ... scrubbed: no file (cache, table, stats, provenance, mlflow) holds the key
    out = capfd.readouterr()
    assert key not in out.out + out.err and key not in caplog.text
    assert "***" in table.reason.str.cat(sep=" ")
    assert key not in repr(OpenAIBackend(teachers_config(roster=_roster("http://x"), weights="auto").roster[0], None))


def test_missing_key_variable_fails_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    bench = make_benchmark(tmp_path / "b", n_patients=2)
    with FakeOpenAIServer() as server:
        cfg = teachers_config(roster=_roster(server.url), weights="auto", tasks=["single"])
        with pytest.raises(TeacherSetupError, match=KEY_ENV):
            run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
        assert server.log == []


def test_rate_limit_spaces_requests(tmp_path, key):
    bench = make_benchmark(tmp_path / "b", n_patients=6)  # 12 requests
    with FakeOpenAIServer() as server:
        cfg = teachers_config(roster=_roster(server.url, rpm=600, concurrency=2), weights="auto", tasks=["single"])
        run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
    times = sorted(e["t"] for e in server.log)
    assert len(times) == 12
    # a burst of 2, then one every 0.1 s: the last starts at least 1 s after the first
    assert times[-1] - times[0] >= 1.0 * 0.95


def test_pairs_send_prior_and_current_images(tmp_path, key):
    bench = make_benchmark(tmp_path / "b", n_patients=3, studies_per_patient=3)
    with FakeOpenAIServer() as server:
        cfg = teachers_config(roster=_roster(server.url), weights="auto", tasks=["pair"])
        out = run_teachers(cfg, DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
    pairs = pd.read_parquet(bench / "pairs.parquet")
    want = {identity_of([image_data_url(str(bench / a)), image_data_url(str(bench / b))])
            for a, b in zip(pairs.prior_image_path, pairs.current_image_path)}
    assert {e["identity"] for e in server.log} == want
    assert (out.table.status == "ok").all() and out.table.prior_study_id.notna().all()


def test_protocol_helpers():
    assert retry_after_s("2") == 2.0 and retry_after_s("0.25") == 0.25 and retry_after_s(None) is None
    assert 0 <= retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_s("soon") is None
    body = '{"choices":[{"message":{"content":"As an AI, I cannot provide a diagnosis."},"finish_reason":"stop"}]}'
    assert parse_completion(body)[1:3] == ("refused", "refusal")
    body = '{"choices":[{"message":{"content":"x"},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":5}}'
    assert parse_completion(body)[1:4] == ("refused", "content_filter", 5)
    with pytest.raises(ValueError):
        parse_completion("{not json")
    cfg = teachers_config(roster=_roster("http://x", backoff_s=1.0, max_backoff_s=4.0), weights="auto")
    b = OpenAIBackend.__new__(OpenAIBackend)
    b.spec = cfg.roster[0]
    waits = [b.backoff(a, None) for a in range(6)]
    assert 0.5 <= waits[0] <= 1.0 and all(2.0 <= w <= 4.0 for w in waits[2:])
    assert b.backoff(0, 9.0) == 9.0  # Retry-After wins when longer
