"""The shared stage shape: provenance split into stable (inside outputs) and volatile (sidecar,
MLflow) facts, and progress bars that do not flood a log file."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from apodistill.stage import Stage, stage_parser

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"git_revision", "dvc_experiment", "host", "argv", "time", "wall_seconds"}


def test_outputs_hold_stable_facts_and_the_sidecar_the_volatile_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # a git checkout, so the revision is known
    args = stage_parser("doc").parse_args(["--params", str(ROOT / "params.yaml"), "--provenance", str(tmp_path / "side.json"), "--no-mlflow"])
    st = Stage.begin("spd", args, ("base.seed", "spd.optim.lr"))
    assert st.config == {"base": {"seed": st.params.base.seed}, "spd": {"optim": {"lr": st.params.spd.optim.lr}}}
    first = st.save(tmp_path / "out", rows=3).read_bytes()
    st.note(cache_hit=True)
    st.finish({"spd.steps": 2, "spd.loss": float("nan")}, tmp_path / "m.json")

    record = json.loads(first)
    assert record["stage"] == "spd" and record["rows"] == 3 and record["seeds"] == {"python": st.params.base.seed, "numpy": st.params.base.seed}
    assert not VOLATILE & set(record)
    again = Stage.begin("spd", args, ("base.seed", "spd.optim.lr"))
    assert again.save(tmp_path / "out2", rows=3).read_bytes() == first  # a second run writes the same bytes
    side = json.loads((tmp_path / "side.json").read_text())
    assert VOLATILE <= set(side) and len(side["git_revision"]) >= 40 and side["cache_hit"] is True
    assert json.loads((tmp_path / "m.json").read_text())["spd.steps"] == 2


def test_stage_parser_documents_every_argument():
    ap = stage_parser("doc")
    assert all(a.help for a in ap._actions if not isinstance(a, argparse._HelpAction))


PROGRESS = """
import sys, time
from apodistill.stage import quiet_env
if sys.argv[1] == "stage":
    quiet_env()
from tqdm.auto import tqdm
for _ in tqdm(range(60), desc="steps"):
    time.sleep(0.02)
"""


def test_progress_bars_redraw_rarely_when_stderr_is_a_file():
    """Under `dvc repro > log` tqdm's stderr is no terminal: a stage redraws every 30 s at most
    (here: the first and last draw of a 1.2 s loop), where tqdm alone redraws ~10 times a second."""

    def redraws(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
        r = subprocess.run([sys.executable, "-c", PROGRESS, mode], capture_output=True, env=env, check=True)
        return r.stderr.count(b"\r")  # bytes: text mode would turn each \r into a newline

    plain, stage = redraws("plain"), redraws("stage")
    assert stage <= 3 < plain, (stage, plain)
