"""params.yaml is typed: bad keys fail naming the key path, before any output is written; the
values live in params.yaml only (the typed config holds none), and `params show` says so."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from typer.testing import CliRunner

from apodistill.cli import app
from apodistill.config import Params, ParamsError, load_params, parse_params, with_overrides

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


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
        (lambda d: d["teachers"]["weights"].pop("gpt5"), "teachers.weights"),
        (lambda d: d["teachers"]["weights"].__setitem__("gpt6", 1.0), "teachers.weights"),
        (lambda d: d["spd"].pop("max_length"), "spd.max_length"),  # no default in code to fall back on
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


def test_cli_check_ok():
    r = runner.invoke(app, ["params", "check", str(ROOT / "params.yaml")])
    assert r.exit_code == 0, r.output
    assert "ok" in r.output


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repository skeleton: dvc.yaml and the folders its commands name (launcher configs,
    expectation suites, teacher templates), so file checks have a repository to look in."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    for folder in ("pipeline/accelerate", "validation/expectations", "templates/teachers"):
        shutil.copytree(ROOT / folder, root / folder)
    return root


# Every value the docs restrict, one case each: (key named in the error, change, words of the message).
REJECTED = {
    "conditioned test": ("teachers.conditioned_splits", lambda d: d["teachers"].__setitem__("conditioned_splits", ["train", "test"]), "test"),
    "conditioned val": ("teachers.conditioned_splits", lambda d: d["teachers"].__setitem__("conditioned_splits", ["val"]), "val"),
    "unknown source": ("fetch.source", lambda d: d["fetch"].__setitem__("source", "imagenet"), "known: cxr_max, mimic_cxr, ms_cxr_t, synthetic"),
    "no launcher": ("base.accelerate", lambda d: d["base"].__setitem__("accelerate", "tpu"), "known: cpu, "),
    "no suite": ("validate.suite", lambda d: d["validate"].__setitem__("suite", "nosuch"), "known: trajectory_quality"),
    "bad split": ("evaluate.split", lambda d: d["evaluate"].__setitem__("split", "tset"), "'train', 'val' or 'test'"),
    "fractions": ("fetch.test_fraction", lambda d: d["fetch"].update(val_fraction=0.4, test_fraction=0.6), "< 1"),
    "unknown weight": ("teachers.weights", lambda d: d["teachers"]["weights"].__setitem__("gpt6", 1.0), "gpt6"),
    "unknown loss": ("apo.loss", lambda d: d["apo"].__setitem__("loss", "dpo"), "known: pairwise, plackett_luce"),
    "unknown method": ("self_distill.method", lambda d: d["self_distill"].__setitem__("method", "mean"), "known: dawid_skene, in_context, vote, weighted_vote"),
    "unknown backend": ("teachers.roster.0", lambda d: d["teachers"]["roster"][0].__setitem__("backend", "grpc"), "known: hf, openai, simulated"),
    "unknown detector": ("validate.detector", lambda d: d["validate"].__setitem__("detector", "kswin"), "known: adwin, page_hinkley"),
    "no template": ("teachers.tasks", lambda d: d["teachers"].__setitem__("tasks", ["single", "pair"]), "pair_blind.txt"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_cli_check_rejects_each_restricted_value(repo, tmp_path, monkeypatch, case):
    key, mutate, words = REJECTED[case]
    d = committed()
    mutate(d)
    if case == "no template":
        shutil.rmtree(repo / "templates" / "teachers")
        (repo / "templates" / "teachers").mkdir()
        for name in ("single_blind.txt", "single_label_conditioned.txt"):
            shutil.copy(ROOT / "templates" / "teachers" / name, repo / "templates" / "teachers" / name)
    f = repo / f"{case.replace(' ', '_')}.yaml"
    f.write_text(yaml.safe_dump(d))
    monkeypatch.chdir(tmp_path)  # files are found next to the params file, not in the working directory
    try:
        r = runner.invoke(app, ["params", "check", str(f)])
    finally:
        if case == "no template":
            shutil.rmtree(repo / "templates" / "teachers")
            shutil.copytree(ROOT / "templates" / "teachers", repo / "templates" / "teachers")
    assert r.exit_code == 1, r.output
    line = next((ln for ln in r.output.splitlines() if ln.startswith(f"  {key}")), None)
    assert line is not None, r.output
    assert words in line, line


def test_file_checks_find_the_repository_of_the_params_file(repo, tmp_path, monkeypatch):
    """A valid file in the skeleton passes from any working directory; a launcher config
    added to the repository becomes a valid name at once."""
    d = committed()
    f = repo / "ok.yaml"
    f.write_text(yaml.safe_dump(d))
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["params", "check", str(f)]).exit_code == 0
    d["base"]["accelerate"] = "four_cpu"
    f.write_text(yaml.safe_dump(d))
    assert "four_cpu" in runner.invoke(app, ["params", "check", str(f)]).output
    (repo / "pipeline" / "accelerate" / "four_cpu.yaml").write_text("num_processes: 2\n")
    r = runner.invoke(app, ["params", "check", str(f)])
    assert r.exit_code == 0, r.output


def test_cli_check_bad_yaml_and_missing_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("apo: [unclosed\n")
    assert "not valid YAML" in runner.invoke(app, ["params", "check", str(f)]).output
    r = runner.invoke(app, ["params", "check", str(tmp_path / "nope.yaml")])
    assert r.exit_code != 0 and "not found" in r.output


def _defaults(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        if field.default is not PydanticUndefined or field.default_factory is not None:
            out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _defaults(ann, f"{prefix}{name}.")
        for arg in getattr(ann, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out += _defaults(arg, f"{prefix}{name}[].")
    return out


def test_typed_config_holds_no_default_values():
    """One place for values: a default in code could disagree with params.yaml."""
    assert _defaults(Params) == []


def test_params_show_equals_params_yaml():
    """`params show` prints params.yaml's own values; the only additions are each roster
    entry's teachers.defaults, which params.yaml states once."""
    r = runner.invoke(app, ["params", "show", str(ROOT / "params.yaml")])
    assert r.exit_code == 0, r.output
    shown, written = json.loads(r.output), committed()
    expected = copy.deepcopy(written)
    expected["teachers"]["roster"] = [{**written["teachers"]["defaults"], **e} for e in written["teachers"]["roster"]]
    assert shown == json.loads(json.dumps(expected))  # JSON both sides: tuples and lists compare alike


def test_profiles_state_every_key():
    """Every profile is a complete params file (no key left to a default)."""
    keys = lambda d, p="": {p + k for k in d} | {x for k, v in d.items() if isinstance(v, dict) and k not in ("weights", "detector_params") for x in keys(v, p + k + ".")}  # noqa: E731
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        assert keys(yaml.safe_load(path.read_text())) == keys(committed()), path.name


def test_with_overrides_checks_again():
    p = load_params(ROOT / "params.yaml")
    q = with_overrides(p, {"apo.beta": 0.2, "fetch": {"n_patients": 30}})
    assert (q.apo.beta, q.fetch.n_patients, q.fetch.studies_per_patient) == (0.2, 30, p.fetch.studies_per_patient)
    assert p.apo.beta == committed()["apo"]["beta"]  # the original is unchanged
    t = with_overrides(p, {"teachers": {"roster": [{"name": "solo", "backend": "simulated", "model": "m", "profile": "gpt5"}], "weights": "auto"}})
    assert t.teachers.roster[0].rpm == committed()["teachers"]["defaults"]["rpm"]  # filled from teachers.defaults
    with pytest.raises(ParamsError, match="apo.beta"):
        with_overrides(p, {"apo.beta": -1})


def test_launcher_configs_leave_precision_to_params():
    """Precision is a param (optim.bf16), set in one place: no launcher config states its own."""
    for path in sorted((ROOT / "pipeline" / "accelerate").glob("*.yaml")):
        assert "mixed_precision" not in (yaml.safe_load(path.read_text()) or {}), path.name
