"""Queued and --temp experiments run in a copy that holds only git's files and DVC's cache.

An output declared `cache: false` is therefore there only if git tracks it; an untracked one
(a checkpoint folder, a sidecar nobody commits) is missing in the copy, DVC calls its stage
changed, and every stage below it reruns: SPD retrained for `-S apo.beta=...`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _uncached_outputs() -> dict[str, str]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                if isinstance(entry, dict):
                    (path, opts), = entry.items()
                    if (opts or {}).get("cache", True) is False:
                        out[path] = name
    return out


def test_every_uncached_output_is_tracked_by_git():
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())
    uncached = _uncached_outputs()
    assert "reports/headline.json" in uncached and len(uncached) > 10
    missing = {p: s for p, s in uncached.items() if p not in tracked and not any(t.startswith(p.rstrip("/") + "/") for t in tracked)}
    assert not missing, f"cache: false outputs git does not track (a temp workspace lacks them and reruns the stage): {missing}"
