"""params.yaml is typed: bad keys fail naming the key path, before any output is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from apodistill.cli import app
from apodistill.config import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def committed() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_committed_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.apo.beta > 0
    assert set(p.teachers.names()) >= {"gpt5", "moonshot"}


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d["apo"].__setitem__("bogus_key", 1), "apo.bogus_key"),
        (lambda d: d["spd"]["optim"].__setitem__("steps", "many"), "spd.optim.steps"),
        (lambda d: d["apo"].__setitem__("beta", 0.0), "apo.beta"),
        (lambda d: d["apo"].__setitem__("beta", -0.5), "apo.beta"),
        (lambda d: d["teachers"]["weights"].pop("gpt5"), "teachers"),
        (lambda d: d["teachers"]["weights"].__setitem__("gpt6", 1.0), "teachers"),
    ],
)
def test_bad_params_name_the_key(mutate, key):
    d = committed()
    mutate(d)
    with pytest.raises(ParamsError) as err:
        parse_params(d, "params.yaml")
    assert f"  {key}" in str(err.value)


def test_weight_mismatch_message_names_teacher():
    d = committed()
    d["teachers"]["weights"]["gpt6"] = 1.0
    with pytest.raises(ParamsError, match=r"teachers\.weights.*gpt6"):
        parse_params(d)


def test_unknown_finding_rejected():
    d = committed()
    d["base"]["findings"] = ["edema", "dragons"]
    with pytest.raises(ParamsError, match="base.findings"):
        parse_params(d)


runner = CliRunner()


def test_cli_check_ok():
    r = runner.invoke(app, ["params", "check", str(ROOT / "params.yaml")])
    assert r.exit_code == 0, r.output
    assert "ok" in r.output


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d["apo"].__setitem__("typo_beta", 0.2), "apo.typo_beta"),
        (lambda d: d["apo"].__setitem__("beta", -1), "apo.beta"),
        (lambda d: d["teachers"]["weights"].pop("sonnet4"), "teachers.weights"),
    ],
)
def test_cli_check_bad(tmp_path, mutate, key):
    d = committed()
    mutate(d)
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(d))
    r = runner.invoke(app, ["params", "check", str(f)])
    assert r.exit_code != 0
    assert key in r.output


def test_cli_missing_file(tmp_path):
    r = runner.invoke(app, ["params", "check", str(tmp_path / "nope.yaml")])
    assert r.exit_code != 0 and "not found" in r.output
