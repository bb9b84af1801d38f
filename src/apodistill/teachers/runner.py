"""The teachers stage core: every teacher answers every study (and pair) it has not answered yet.

Order of work, chosen so that nothing paid for is lost and nothing protected leaks:
1. PHI guard over the whole roster and every image to be sent, judged from the benchmark's own
   record (not params), before any backend is built, the cache opened or a request made;
2. requests built from the benchmark tables and prompt templates, keyed for the cache;
3. only the keys missing from the cache are sent; each answer is committed as it arrives;
4. the trajectory table is read back from the cache in request order, so a resumed run and
   an uninterrupted one produce the same table.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from apodistill.config.base import BaseConfig
from apodistill.config.teachers import TeachersConfig
from apodistill.findings import TrajectoryParseError, parse_trajectory
from apodistill.teachers.backends import BACKENDS, Backend, Budget, Request, Result, RunContext, cost_usd, is_free
from apodistill.teachers.cache import TeacherCache, record_key
from apodistill.teachers.guard import check_phi
from apodistill.teachers.prompts import build_requests, load_templates, prevalence
from apodistill.teachers.stats import teacher_stats

TRAJECTORY_COLUMNS = (
    "record_id", "teacher", "model", "backend", "task", "study_id", "prior_study_id", "split",
    "stream_index", "prompt_mode", "template", "text", "status", "reason", "latency_s",
    "prompt_tokens", "completion_tokens",
)


@dataclass
class TeachersOutput:
    table: pd.DataFrame  # the trajectory table (common contract)
    stats: dict[str, float]  # flat per-teacher metrics
    requested: dict[str, int]  # requests sent in this run, per teacher
    skipped: dict[str, int] = field(default_factory=dict)  # quarantined images left out
    not_asked: dict[str, int] = field(default_factory=dict)  # held back by teachers.budget_usd, per teacher
    budget: dict[str, Any] = field(default_factory=dict)  # limit_usd, spent_usd, stopped

    @property
    def stopped(self) -> bool:
        """The budget was spent before every request was asked (a rerun with more resumes)."""
        return bool(self.budget.get("stopped"))

    def stable_budget(self) -> dict[str, Any]:
        """The budget facts that describe the output (provenance.json); what earlier runs had
        spent depends on the cache's history, not on the inputs, and is left out."""
        return {k: v for k, v in self.budget.items() if k != "spent_before_usd"}

    def stop_message(self) -> str:
        """What the stage says when the budget stopped it (exit 4)."""
        b = self.budget
        return (f"teachers.budget_usd={b['limit_usd']} reached (spent ${b['spent_usd']:.4f}); {b['not_asked']} requests "
                f"not asked ({ {k: v for k, v in self.not_asked.items() if v} }). Answers so far are cached: raise "
                "teachers.budget_usd and rerun to ask only for the rest.")


@dataclass
class Benchmark:
    folder: Path
    studies: pd.DataFrame
    pairs: pd.DataFrame | None
    quarantined: set[str]


def load_benchmark(folder: str | Path, tasks: list[str]) -> Benchmark:
    """Read the fetch stage's tables; pairs only when the pair task is asked for."""
    folder = Path(folder)
    studies = pd.read_parquet(folder / "studies.parquet")
    pairs = None
    if "pair" in tasks:
        path = folder / "pairs.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"teachers.tasks includes 'pair' but {path} does not exist")
        pairs = pd.read_parquet(path)
    q = folder / "image_quarantine.parquet"
    quarantined = set(pd.read_parquet(q)["image_path"].astype(str)) if q.is_file() else set()
    return Benchmark(folder, studies, pairs, quarantined)


def _table_for(bench: Benchmark, task: str) -> tuple[pd.DataFrame, int]:
    """Rows of the task with quarantined images left out (and how many were)."""
    if task == "single":
        t = bench.studies
        bad = t["image_path"].astype(str).isin(bench.quarantined)
    else:
        t = bench.pairs
        if t.empty:  # one study per patient: no pairs to ask about
            return t, 0
        bad = t["prior_image_path"].astype(str).isin(bench.quarantined) | t["current_image_path"].astype(str).isin(bench.quarantined)
    return t[~bad].reset_index(drop=True), int(bad.sum())


def _images_to_send(bench: Benchmark, tasks: list[str]) -> list[str]:
    """Every image path a request of ``tasks`` would carry, as the tables hold it: the guard
    resolves relative paths against the benchmark folder itself (joining them here first put a
    relative folder in front twice, so a path leaving the folder looked inside it)."""
    paths: list[str] = []
    for task in tasks:
        table, _ = _table_for(bench, task)
        cols = ("image_path",) if task == "single" else ("prior_image_path", "current_image_path")
        paths += [p for c in cols if c in table for p in table[c].astype(str)]
    return paths


def _key_requests(reqs: list[Request], backend: Backend, templates: dict[str, str], cache: TeacherCache) -> tuple[list[Request], list[Request]]:
    """Fill in cache keys; split off requests whose image cannot be read (recorded as errors)."""
    keyed, unreadable = [], []
    spec = backend.spec
    for req in reqs:
        digests, missing = [], []
        for p in req.image_paths:
            if os.path.isfile(p):
                digests.append(cache.image_digest(p))
            else:
                digests.append(f"missing:{p}")
                missing.append(p)
        key = record_key(req, spec.model, spec.backend, templates[req.template], digests, backend.answer_params(req))
        (unreadable if missing else keyed).append(replace(req, key=key))
    cache.commit()
    return keyed, unreadable


def _parse(result: Result, req: Request, findings: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    if result.status != "ok":
        return None, None
    try:
        p = parse_trajectory(result.text, findings, req.task)
    except TrajectoryParseError as err:
        return None, err.reason
    return {"think": p.think, "labels": p.labels}, None


def run_teachers(
    teachers: TeachersConfig,
    base: BaseConfig,
    source: str,
    benchmark_dir: str | Path,
    templates_dir: str | Path,
    cache_path: str | Path,
    progress: bool = True,
) -> TeachersOutput:
    """Ask every roster teacher about every study and pair it has not answered yet.

    ``source`` is params' ``fetch.source``; the PHI guard judges the benchmark's own record and
    image paths (:mod:`apodistill.teachers.guard`), so this value can add a refusal, never lift one.
    """
    templates = load_templates(templates_dir)
    bench = load_benchmark(benchmark_dir, teachers.tasks)
    check_phi(bench.folder, _images_to_send(bench, teachers.tasks), teachers,
              {t.name: BACKENDS.get(t.backend).sends_images_off_machine for t in teachers.roster}, declared_source=source)
    findings = list(base.findings)
    budget = Budget(teachers.budget_usd)
    ctx = RunContext(seed=base.seed, findings=tuple(findings), prevalence=prevalence(bench.studies, findings), progress=progress,
                     budget=budget)
    cache = TeacherCache(cache_path)
    backends = {spec.name: BACKENDS.get(spec.backend)(spec, ctx) for spec in teachers.roster}
    for spec in teachers.roster:
        backends[spec.name].history = cache.latencies(spec.name, spec.model)
    all_reqs: list[Request] = []
    todo: dict[str, list[Request]] = {}
    unreadable: dict[str, list[Request]] = {}
    skipped: dict[str, int] = {}
    for spec in teachers.roster:
        b = backends[spec.name]
        for task in teachers.tasks:
            table, n_bad = _table_for(bench, task)
            skipped[task] = n_bad
            reqs = build_requests(spec.name, spec.prompt_mode, task, table, bench.folder, templates, findings, b.drift_at())
            if teachers.conditioned_splits:
                # The paper's training data: teachers explain the study's known labels on these
                # splits; the other splits stay as configured (blind), for a fair comparison.
                cond = build_requests(spec.name, "label_conditioned", task, table, bench.folder, templates, findings, b.drift_at())
                reqs = [c if c.split in teachers.conditioned_splits else r for r, c in zip(reqs, cond)]
            keyed, bad = _key_requests(reqs, b, templates, cache)
            all_reqs += keyed + bad
            todo.setdefault(spec.name, []).extend(keyed)
            unreadable.setdefault(spec.name, []).extend(bad)
    keys = [r.key for r in all_reqs]
    if len(set(keys)) != len(keys):
        dup = pd.Series(keys).value_counts()
        raise ValueError(f"{int((dup > 1).sum())} requests share a cache key: study ids repeat in the benchmark tables")
    stored = cache.stored_keys(keys, include_errors=not teachers.retry_errors)
    specs = {spec.name: spec for spec in teachers.roster}
    # what this benchmark's stored answers already cost (all earlier runs): the budget counts them
    budget.charge(sum(cost_usd(specs[r["teacher"]], r["prompt_tokens"], r["completion_tokens"])
                      for r in cache.rows(keys).values() if r["teacher"] in specs))
    spent_before = budget.spent_usd
    sinks = {}
    try:
        coros = []
        for i, spec in enumerate(teachers.roster):
            missing = [r for r in todo[spec.name] if r.key not in stored]
            bad = [r for r in unreadable[spec.name] if r.key not in stored]
            sink = _Sink(cache, spec, findings, budget, tqdm(total=len(missing) + len(bad), desc=spec.name, unit="req",
                                                                 position=i, disable=not progress, dynamic_ncols=True))
            sinks[spec.name] = sink
            for r in bad:
                sink(r, Result("", "error", "image_unreadable: " + ", ".join(p for p in r.image_paths if not Path(p).is_file())))
            coros.append(_run_one(backends[spec.name], missing, sink, cache, budget))
        asyncio.run(_gather(coros))
        table, parsed, truths, unasked = _assemble(cache, all_reqs, budget.stopped)
    finally:
        for b in backends.values():
            b.close()
        cache.close()
    requested = {name: sink.asked for name, sink in sinks.items()}
    not_asked = {name: sum(1 for r in unasked if r.teacher == name) for name in specs}
    stats = teacher_stats(table, parsed, truths, requested, findings,
                          prices={n: (s.usd_per_1m_input or 0.0, s.usd_per_1m_output or 0.0) for n, s in specs.items()})
    for name, sink in sinks.items():
        stats[f"{name}.cost_usd_run"] = round(sink.cost_usd, 6)
        stats[f"{name}.not_asked"] = not_asked[name]
    state = {"limit_usd": budget.limit_usd, "spent_usd": round(budget.spent_usd, 6),
             "spent_before_usd": round(spent_before, 6), "stopped": budget.stopped, "not_asked": len(unasked)}
    stats.update({"budget.spent_usd": state["spent_usd"], "budget.stopped": int(budget.stopped), "budget.not_asked": len(unasked)})
    if budget.limit_usd is not None:
        stats["budget.limit_usd"] = budget.limit_usd
    stats.update({f"skipped_quarantined.{k}": v for k, v in skipped.items()})
    stats["rows"] = len(table)
    return TeachersOutput(table, stats, requested, skipped, not_asked, state)


async def _gather(coros) -> None:
    await asyncio.gather(*coros)


async def _run_one(backend: Backend, reqs: list[Request], sink, cache: TeacherCache, budget: Budget) -> None:
    if budget.limit_usd is None or backend.honours_budget or is_free(backend.spec):
        if reqs:
            await backend.run(reqs, sink)
    else:  # the budget is checked between batches of `concurrency` (at most one request per worker over)
        step = backend.spec.concurrency
        for i in range(0, len(reqs), step):
            if not budget.allows_new():
                break
            await backend.run(reqs[i : i + step], sink)
    cache.commit()
    sink.bar.close()


class _Sink:
    """Stores each answer as it arrives, charges its cost to the budget, moves the progress bar."""

    def __init__(self, cache: TeacherCache, spec, findings: list[str], budget: Budget, bar):
        self.cache, self.spec, self.findings, self.budget, self.bar = cache, spec, findings, budget, bar
        self.every = BACKENDS.get(spec.backend).commit_every
        self.counts = {"error": 0, "refused": 0}
        self.asked = 0
        self.cost_usd = 0.0

    def __call__(self, req: Request, result: Result) -> None:
        parsed, parse_error = _parse(result, req, self.findings)
        self.asked += 1
        self.cache.put(req, self.spec.model, self.spec.backend, result, parsed, parse_error, commit=self.asked % self.every == 0)
        cost = cost_usd(self.spec, result.prompt_tokens, result.completion_tokens)
        self.cost_usd += cost
        self.budget.charge(cost)
        if result.status in self.counts:
            self.counts[result.status] += 1
            self.bar.set_postfix(self.counts, refresh=False)
        self.bar.update(1)



def _assemble(cache: TeacherCache, reqs: list[Request], budget_stopped: bool = False
              ) -> tuple[pd.DataFrame, pd.Series, pd.Series, list[Request]]:
    """The trajectory table in request order and the requests left unasked. A key absent from
    the cache is a bug, not a skip, unless the budget stopped the run (then it is unasked)."""
    rows = cache.rows(r.key for r in reqs)
    lost = [r for r in reqs if r.key not in rows]
    if lost and not budget_stopped:
        by = pd.Series([r.teacher for r in lost]).value_counts().to_dict()
        raise RuntimeError(f"{len(lost)} requests have no stored answer after the run (per teacher: {by})")
    out, parsed, truths = [], [], []
    for r in reqs:
        if r.key not in rows:
            continue
        c = rows[r.key]
        out.append({
            "record_id": r.key, "teacher": r.teacher, "model": c["model"], "backend": c["backend"],
            "task": r.task, "study_id": r.study_id, "prior_study_id": r.prior_study_id, "split": r.split,
            "stream_index": r.stream_index, "prompt_mode": r.prompt_mode, "template": r.template,
            "text": c["text"], "status": c["status"], "reason": c["reason"], "latency_s": c["latency_s"],
            "prompt_tokens": c["prompt_tokens"], "completion_tokens": c["completion_tokens"],
        })
        parsed.append(json.loads(c["parsed"])["labels"] if c["parsed"] else None)
        truths.append(r.truth)
    table = pd.DataFrame(out, columns=list(TRAJECTORY_COLUMNS))
    table = table.astype({"stream_index": "int64", "prompt_tokens": "int64", "completion_tokens": "int64", "latency_s": "float64"})
    return table, pd.Series(parsed, dtype=object), pd.Series(truths, dtype=object), lost
