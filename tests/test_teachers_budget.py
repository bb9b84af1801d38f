"""Per-teacher cost accounting and `teachers.budget_usd`: the stop lands at the budget (give or
take one request per worker), is recorded, and a rerun with a higher budget asks only for
what is missing."""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml
from teachers_helpers import make_benchmark

from fake_openai_server import FakeOpenAIServer
from apodistill.config import ParamsError
from params_helpers import DEFAULT, teachers_config
from apodistill.teachers.runner import run_teachers

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = str(REPO / "templates" / "teachers")
KEY_ENV = "APODISTILL_TEST_BUDGET_KEY"
PRICE_IN, PRICE_OUT = 10.0, 30.0  # USD per 1M tokens
PER_REQUEST = (300 * PRICE_IN + 60 * PRICE_OUT) / 1e6  # the fake server's usage: 300 prompt + 60 completion tokens


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-budget-test")


def _roster(url: str, concurrency: int = 4) -> list[dict]:
    return [{"name": "paid", "backend": "openai", "model": "gpt-5", "base_url": url, "api_key_env": KEY_ENV,
             "concurrency": concurrency, "rpm": 60000, "timeout_s": 10, "usd_per_1m_input": PRICE_IN,
             "usd_per_1m_output": PRICE_OUT, "hedge_factor": None}]  # a loop stall must not hedge (duplicate) a request


def _cfg(roster, budget):
    return teachers_config(roster=roster, tasks=["single"], budget_usd=budget)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_budget_stops_at_the_budget_and_a_rerun_asks_only_for_the_rest(tmp_path, concurrency):
    bench = make_benchmark(tmp_path / "b", n_patients=20, studies_per_patient=2)  # 40 requests
    budget = 0.05  # 10.4 requests' worth
    with FakeOpenAIServer(latency_s=0.05) as server:
        out = run_teachers(_cfg(_roster(server.url, concurrency), budget), DEFAULT.base, "synthetic", bench, TEMPLATES,
                           tmp_path / "c.sqlite", progress=False)
        asked = len(server.log)
        need = math.ceil(budget / PER_REQUEST)  # requests it takes to reach the budget
        assert need <= asked <= need + concurrency - 1  # +- one request per worker
        assert out.stopped and out.budget["not_asked"] == 40 - asked and out.not_asked == {"paid": 40 - asked}
        assert out.stats["budget.stopped"] == 1 and out.stats["paid.not_asked"] == 40 - asked
        assert out.stats["paid.cost_usd"] == pytest.approx(asked * PER_REQUEST)
        assert out.budget["spent_usd"] == pytest.approx(asked * PER_REQUEST) and out.budget["spent_usd"] >= budget
        assert len(out.table) == asked and (out.table.status == "ok").all()
        print(f"\nconcurrency {concurrency}: budget ${budget} = {budget / PER_REQUEST:.1f} requests; stopped after {asked} "
              f"(${out.budget['spent_usd']:.4f}), {40 - asked} not asked")

        again = run_teachers(_cfg(_roster(server.url, concurrency), 1.0), DEFAULT.base, "synthetic", bench, TEMPLATES,
                             tmp_path / "c.sqlite", progress=False)
        per_study = Counter(e["identity"] for e in server.log)
    assert len(server.log) == 40 and set(per_study.values()) == {1}  # the rest only, nothing asked twice
    assert not again.stopped and len(again.table) == 40 and again.requested == {"paid": 40 - asked}
    assert again.budget["spent_before_usd"] == pytest.approx(asked * PER_REQUEST)
    assert again.stats["paid.cost_usd"] == pytest.approx(40 * PER_REQUEST)
    assert again.stats["paid.cost_usd_run"] == pytest.approx((40 - asked) * PER_REQUEST)


def test_simulated_teachers_are_free_unless_priced(tmp_path):
    bench = make_benchmark(tmp_path / "b", n_patients=10, studies_per_patient=2)  # 20 requests
    free = {"name": "gpt5", "backend": "simulated", "model": "gpt-5", "profile": "gpt5", "concurrency": 4}
    out = run_teachers(_cfg([free], 0.0), DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "a.sqlite", progress=False)
    assert not out.stopped and len(out.table) == 20 and out.stats["gpt5.cost_usd"] == 0.0
    assert out.stats["gpt5.tokens"] > 0

    priced = {**free, "usd_per_1m_input": 1000.0, "usd_per_1m_output": 1000.0}
    out = run_teachers(_cfg([priced], 1.0), DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "b.sqlite", progress=False)
    per = out.stats["gpt5.cost_usd"] / len(out.table)
    assert out.stopped and math.ceil(1.0 / per) - 1 <= len(out.table) <= math.ceil(1.0 / per) + 4
    rest = run_teachers(_cfg([priced], 100.0), DEFAULT.base, "synthetic", bench, TEMPLATES, tmp_path / "b.sqlite", progress=False)
    assert not rest.stopped and len(rest.table) == 20 and rest.requested == {"gpt5": 20 - len(out.table)}


def test_a_budget_needs_prices_on_paid_teachers():
    roster = [{"name": "paid", "backend": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"}]
    with pytest.raises(ParamsError, match=r"teachers\.budget_usd: .*needs usd_per_1m_input and usd_per_1m_output.*\['paid'\]"):
        _cfg(roster, 5.0)


def test_stage_records_the_stop_exits_4_and_logs_cost_to_mlflow(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("APODISTILL_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    bench = make_benchmark(tmp_path / "b", n_patients=10, studies_per_patient=1)  # 10 requests
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    spec = importlib.util.spec_from_file_location("stage_teachers", REPO / "pipeline" / "teachers.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    with FakeOpenAIServer() as server:
        params["teachers"].update(roster=_roster(server.url, 1), weights="auto", budget_usd=3 * PER_REQUEST)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        rc = stage.main(["--params", str(tmp_path / "params.yaml"), "--benchmark", str(bench), "--templates", TEMPLATES,
                         "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "out"),
                         "--stats", str(tmp_path / "teachers.json"), "--no-progress"])
    assert rc == 4 and len(server.log) == 3
    assert "teachers.budget_usd=" in capsys.readouterr().err
    stats = json.loads((tmp_path / "teachers.json").read_text())
    assert stats["budget.stopped"] == 1 and stats["budget.not_asked"] == 7
    assert stats["paid.cost_usd"] == pytest.approx(3 * PER_REQUEST) and stats["paid.tokens"] == 3 * 360
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["budget"]["stopped"] is True and prov["not_asked"] == {"paid": 7}
    import mlflow

    run = mlflow.search_runs(experiment_names=[params["base"]["mlflow_experiment"]], output_format="list")[0]
    assert run.data.metrics["paid.cost_usd"] == pytest.approx(3 * PER_REQUEST)
    assert run.data.metrics["budget.stopped"] == 1 and run.data.metrics["paid.prompt_tokens"] == 900
