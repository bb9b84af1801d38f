"""The promotion gate: alias ``champion`` moves to the ``challenger`` version only when the
challenger is better on the chosen metric by at least a margin.

The decision is a pure function of the two versions' evaluations (:func:`decide`), so it is
tested without a registry; :func:`promote` reads the registry, decides, and moves the alias.
Evaluations come from the version tags ``eval.<key>`` written at registration, or else from
the registering run's metrics (``<system>.<key>``). A version without either is never
promoted, not even with ``force``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from apodistill.serving.register import EVAL_TAG

CHAMPION = "champion"
AUTO_METRICS = ("pair_acc.mean", "acc.mean")  # MS-CXR-T protocol first, single studies otherwise
_EPS = 1e-12  # 0.71 - 0.70 is 0.00999...: a gain equal to the margin passes

# exit codes of `apodistill promote`
PROMOTED, REFUSED, USAGE, NO_EVALUATION = 0, 1, 2, 3


@dataclass
class Version:
    version: str
    system: str
    evaluation: dict[str, float] = field(default_factory=dict)

    def value(self, metric: str) -> float | None:
        """The metric as given (``acc.mean``) or with this version's system prefix (``apo.acc.mean``)."""
        if metric in self.evaluation:
            return self.evaluation[metric]
        prefix = self.system + "."
        return self.evaluation.get(metric[len(prefix):]) if metric.startswith(prefix) else None


@dataclass
class Decision:
    promote: bool
    code: int
    message: str
    metric: str | None = None
    challenger: float | None = None
    champion: float | None = None


def resolve_metric(metric: str | None, challenger: Version, champion: Version | None) -> str:
    """``metric`` as given; if None, the first of :data:`AUTO_METRICS` both versions have."""
    if metric:
        return metric
    for m in AUTO_METRICS:
        if challenger.value(m) is not None and (champion is None or champion.value(m) is not None):
            return m
    return AUTO_METRICS[-1]


def decide(challenger: Version, champion: Version | None, metric: str | None, margin: float,
           force: bool = False, reason: str | None = None) -> Decision:
    """Whether ``champion`` should move to the challenger (higher metric values are better)."""
    if not challenger.evaluation:
        return Decision(False, NO_EVALUATION, f"challenger version {challenger.version} has no evaluation "
                        "(no eval.* tags, no run metrics); run the evaluate and register stages. Not promoted, even with --force.")
    if force and not (reason and reason.strip()):
        return Decision(False, USAGE, "--force needs --reason \"...\" (it is recorded on the version)")
    if champion is not None and champion.version == challenger.version:
        return Decision(False, PROMOTED, f"version {challenger.version} is already {CHAMPION}; nothing to do")
    m = resolve_metric(metric, challenger, champion)
    new, old = challenger.value(m), champion.value(m) if champion else None
    nums = f"challenger v{challenger.version} {m} = {_f(new)}; champion {('v' + champion.version) if champion else '(none)'} {m} = {_f(old)}"
    if force:
        return Decision(True, PROMOTED, f"forced: {nums}; reason: {reason}", m, new, old)
    if new is None:
        have = ", ".join(sorted(challenger.evaluation)[:12])
        return Decision(False, REFUSED, f"refused: challenger has no {m!r} ({nums}); it has: {have}", m, new, old)
    if champion is None:
        return Decision(True, PROMOTED, f"promoted: no {CHAMPION} yet; {nums}", m, new, old)
    if old is None:
        return Decision(False, REFUSED, f"refused: {CHAMPION} v{champion.version} has no {m!r}, so they cannot be compared "
                        f"({nums}); choose a --metric both have, or --force --reason", m, new, old)
    gain = new - old
    if gain > 0 and gain >= margin - _EPS:
        return Decision(True, PROMOTED, f"promoted: {nums}; gain {gain:+.4f} >= margin {margin:.4f}", m, new, old)
    return Decision(False, REFUSED, f"refused: {nums}; gain {gain:+.4f} is below the margin {margin:.4f} "
                    "(or not positive); --force --reason \"...\" overrides", m, new, old)


def _f(v: float | None) -> str:
    return "missing" if v is None else f"{v:.4f}"


def read_version(client: Any, name: str, mv: Any) -> Version:
    """A registered version's evaluation: ``eval.*`` tags, else its run's ``<system>.*`` metrics."""
    tags = dict(mv.tags or {})
    system = tags.get("system", "apo")
    ev = {}
    for k, v in tags.items():
        if k.startswith(EVAL_TAG):
            try:
                ev[k[len(EVAL_TAG):]] = float(v)
            except ValueError:
                pass  # a hand-edited non-numeric tag is not an evaluation; the gate reports what is missing
    if not ev and mv.run_id:
        from mlflow.exceptions import MlflowException

        try:
            metrics = client.get_run(mv.run_id).data.metrics
        except MlflowException:
            metrics = {}
        prefix = system + "."
        ev = {k[len(prefix):]: float(v) for k, v in metrics.items() if k.startswith(prefix)}
    return Version(str(mv.version), system, ev)


def by_alias(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote(name: str, metric: str | None, margin: float, force: bool = False, reason: str | None = None,
            challenger_alias: str = "challenger") -> Decision:
    """Read both aliases, decide, and on success move ``champion`` and tag the version."""
    import mlflow

    client = mlflow.MlflowClient()
    ch = by_alias(client, name, challenger_alias)
    if ch is None:
        return Decision(False, USAGE, f"model {name!r} has no {challenger_alias!r} alias; run the register stage first")
    challenger = read_version(client, name, ch)
    cur = by_alias(client, name, CHAMPION)
    champion = read_version(client, name, cur) if cur is not None else None
    d = decide(challenger, champion, metric, margin, force, reason)
    if not d.promote:
        return d
    stamp = {
        "promoted.at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "promoted.metric": d.metric or "",
        "promoted.value": _f(d.challenger),
        "promoted.previous_champion": champion.version if champion else "none",
        "promoted.previous_value": _f(d.champion),
        "promoted.margin": repr(margin),
        "promoted.forced": "true" if force else "false",
    }
    if force:
        stamp["promoted.reason"] = reason or ""
    for k, v in stamp.items():
        client.set_model_version_tag(name, challenger.version, k, v)
    client.set_registered_model_alias(name, CHAMPION, challenger.version)
    return d
