"""Every stage's dvc.yaml deps cover the code it runs and the repository files it opens,
derived from the code rather than remembered, so an edit DVC should see is never "up to date".

For each stage: its script ``pipeline/<stage>.py``, every module of ``src/apodistill`` the
script imports transitively (``import`` statements anywhere in a module, as a lazy import
inside a function runs too; a package's ``__init__.py`` runs on import of any of its
modules), and every git-tracked file under a path the command passes (templates, suites,
launcher configs). ``apodistill.config`` is followed through its module-level imports only:
the imports inside its validators look names up in registries (is ``fetch.source`` known?)
and decide whether a stage may start, never what it writes.
"""

from __future__ import annotations

import ast
import shlex
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "apodistill"
VALIDATION_ONLY = "apodistill.config"  # followed through module-level imports only (see above)


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imported(path: Path, module_level_only: bool) -> set[str]:
    """Modules of the package an AST imports (``from a import b``: a, and a.b when it is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    here = module_name(path) if path.is_relative_to(SRC) else ""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = here.split(".")
                anchor = parts if is_pkg else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m)}


@lru_cache(maxsize=None)
def closure(script: Path) -> frozenset[Path]:
    """Every file of src/apodistill that running ``script`` may import."""
    seen: set[Path] = set()
    todo = [(m, False) for m in _imported(script, False)]
    while todo:
        name, _ = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            path = module_file(".".join(parts[:i]))
            if path is None or path in seen:
                continue
            seen.add(path)
            mod = module_name(path)
            only_top = mod == VALIDATION_ONLY or mod.startswith(VALIDATION_ONLY + ".")
            todo += [(m, False) for m in _imported(path, only_top)]
    return frozenset(seen)


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).is_file()]


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def needed(stage: dict, files: list[str]) -> dict[str, str]:
    """What a stage must depend on: {repository path: why}."""
    words = shlex.split(stage["cmd"])
    script = next(w for w in words if w.startswith("pipeline/") and w.endswith(".py"))
    need = {script: "the stage script"}
    for path in closure(ROOT / script):
        need[path.relative_to(ROOT).as_posix()] = f"imported by {script}"
    outs = {next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics", "plots") for o in stage.get(key, [])}
    for flag, value in zip(words, words[1:]):
        if not flag.startswith("--") or value in ("params.yaml",) or value in outs:
            continue
        folder = value.split("${")[0].rsplit("/", 1)[0] if "${" in value else value  # a templated file: any in its folder
        for f in files:
            if f == folder or f.startswith(folder.rstrip("/") + "/"):
                need[f] = f"opened through {flag} {value}"
    return need


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def missing_deps(stage: dict, files: list[str]) -> list[str]:
    deps = [next(iter(d)) if isinstance(d, dict) else d for d in stage.get("deps", [])]
    return [f"{p} ({why})" for p, why in sorted(needed(stage, files).items()) if not covered(p, deps)]


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_its_code_and_files(name):
    missing = missing_deps(stages()[name], tracked())
    assert not missing, f"dvc.yaml stage {name!r} runs code or reads files it does not list in deps:\n  " + "\n  ".join(missing)


def test_the_check_sees_a_lazy_import_and_a_removed_dep():
    """The derivation itself: a lazy import inside a function counts, and dropping one dep fails."""
    spd = stages()["spd"]
    assert ROOT / "src/apodistill/losses.py" in closure(ROOT / "pipeline/spd.py")  # imported inside train_spd's step only
    assert ROOT / "src/apodistill/teachers/runner.py" not in closure(ROOT / "pipeline/spd.py")  # a validator's lookup only
    pruned = {**spd, "deps": [d for d in spd["deps"] if d != "src/apodistill/losses.py"]}
    assert missing_deps(pruned, tracked()) == ["src/apodistill/losses.py (imported by pipeline/spd.py)"]


def _reads(script: Path) -> list[str]:
    tree = ast.parse(script.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "READS")
    return list(ast.literal_eval(node.value))


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_logs_the_params_dvc_tracks(name):
    """A script's READS (the config it records in provenance and MLflow) is its dvc.yaml params list."""
    stage = stages()[name]
    script = next(w for w in shlex.split(stage["cmd"]) if w.startswith("pipeline/") and w.endswith(".py"))
    assert sorted(_reads(ROOT / script)) == sorted(stage.get("params", []))
