"""Report-generation metrics: BLEU-1..4, ROUGE-L, METEOR and CIDEr (pycocoevalcap's scorers).

One tokenisation for every system and every metric: :func:`tokenize` (lower-case, runs of
``[a-z0-9]`` kept, everything else a separator). pycocoevalcap's own PTBTokenizer is not used
because it starts a Java process per call; our rule is plain, deterministic and documented in
docs/metrics.md, so scores are comparable between systems but not digit-for-digit with papers.

METEOR runs the METEOR 1.5 jar shipped with pycocoevalcap in a Java process. Starting it
(JVM + paraphrase table) costs ~10 s, so one process is kept open and reused for every system
(:func:`shared_meteor`, or your own :class:`MeteorScorer`). Without a ``java`` executable METEOR
is NaN with a warning; the other metrics still run.
"""

from __future__ import annotations

import atexit
import re
import shutil
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Sequence


_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str | None) -> str:
    """``"Small L. effusion; no PTX."`` -> ``"small l effusion no ptx"`` (None -> "")."""
    return " ".join(_TOKEN.findall((text or "").lower()))


def _meteor_jar() -> Path:
    import pycocoevalcap.meteor.meteor as m

    return Path(m.__file__).parent / m.METEOR_JAR


class MeteorScorer:
    """A METEOR 1.5 process, opened once and reused; use as a context manager.

    Speaks the jar's ``-stdio`` protocol the way pycocoevalcap's wrapper does (one ``SCORE`` line
    per pair, then one ``EVAL`` line), so scores equal pycocoevalcap's. ``available`` is False
    when Java or the jar is missing; :meth:`score` then returns NaN.
    """

    def __init__(self, java: str | None = None, max_heap: str = "2G"):
        self.java = java or shutil.which("java")
        self.max_heap = max_heap
        self._proc: subprocess.Popen | None = None
        self.available = False

    def __enter__(self) -> "MeteorScorer":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        jar = _meteor_jar()
        if self.java is None:
            warnings.warn("no 'java' on PATH: METEOR is reported as NaN (install a Java runtime)", stacklevel=2)
            return
        if not jar.exists():
            warnings.warn(f"METEOR jar missing at {jar}: METEOR is reported as NaN", stacklevel=2)
            return
        # Serial GC: same scores, about half the resident memory (~0.6 GB instead of ~1 GB) on 2 cores.
        cmd = [self.java, "-XX:+UseSerialGC", f"-Xmx{self.max_heap}", "-jar", jar.name]
        cmd += ["-", "-", "-stdio", "-l", "en", "-norm"]
        self._proc = subprocess.Popen(
            cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.available = True

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        self.available = False

    def _ask(self, line: str) -> str:
        assert self._proc is not None
        self._proc.stdin.write((line + "\n").encode())
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline().decode().strip()
        if not answer:
            raise RuntimeError(f"the METEOR process ({self.java}) stopped answering; run it by hand to see why")
        return answer

    def score(self, refs: Sequence[str], hyps: Sequence[str]) -> float:
        """Corpus METEOR of already-tokenised strings (NaN when METEOR is unavailable)."""
        if not self.available:
            return float("nan")
        stats = []
        for ref, hyp in zip(refs, hyps):
            # '|||' separates fields in the protocol; our tokens are [a-z0-9]+ so it cannot occur.
            stats.append(self._ask(f"SCORE ||| {ref} ||| {hyp}"))
        self._proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        self._proc.stdin.flush()
        for _ in stats:  # per-segment scores, not needed
            self._proc.stdout.readline()
        return float(self._proc.stdout.readline().decode().strip())


@lru_cache(maxsize=1)
def shared_meteor() -> MeteorScorer:
    """One METEOR process per Python process, started on first use and closed at exit, so calling
    :func:`report_metrics` once per system pays the ~10 s JVM start once, not once per system."""
    scorer = MeteorScorer()
    scorer.open()
    atexit.register(scorer.close)
    return scorer


def report_metrics(
    refs: Sequence[str],
    hyps: Sequence[str],
    meteor: MeteorScorer | bool = True,
) -> dict[str, float]:
    """``bleu1..bleu4``, ``rouge_l``, ``meteor``, ``cider`` of hypotheses against one reference each.

    BLEU is corpus-level (pycocoevalcap, 'closest' reference length); ROUGE-L is the mean
    sentence-level F (beta 1.2); CIDEr is pycocoevalcap's CIDEr-D with document frequencies from
    these references, so it depends on the test set. ``meteor``: an open :class:`MeteorScorer`,
    True for the process-wide :func:`shared_meteor`, False to skip (NaN).
    An empty hypothesis scores 0, it is not dropped.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no reports to score")
    r_tok = [tokenize(r) for r in refs]
    h_tok = [tokenize(h) for h in hyps]
    gts = {i: [r] for i, r in enumerate(r_tok)}
    res = {i: [h] for i, h in enumerate(h_tok)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    out["rouge_l"] = float(rouge)
    if isinstance(meteor, MeteorScorer):
        out["meteor"] = meteor.score(r_tok, h_tok)
    elif meteor:
        out["meteor"] = shared_meteor().score(r_tok, h_tok)
    else:
        out["meteor"] = float("nan")
    out["cider"] = float(cider)
    return out
