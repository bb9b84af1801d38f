"""PHI guard: credentialed images never leave the machine for an unapproved endpoint.

The PhysioNet licence of MIMIC-CXR and MS-CXR-T forbids sharing the data with third
parties, including online LLM services that may retain it; only services contracted not to
retain data are allowed. The check runs before any request of any teacher is made.

It trusts the data, not params.yaml: ``fetch.source`` may have been set back to
``synthetic`` after a MIMIC benchmark was built (and DVC would not rebuild it before the
teachers stage), so the guard reads the benchmark's own record (``source.json``, written by
the fetch stage with the images) and looks at every image path that would be sent:

- the record is missing or unreadable: the licence is unknown, treated as credentialed;
- the record says the source is credentialed (mimic_cxr, ms_cxr_t, cxr_max, any unknown one);
- an image lies outside the folders the record covers (the tables were edited or swapped);
- an image is laid out like MIMIC-CXR (``files/pXX/pXXXXXXXX/sXXXXXXXX/...``);
- params name a credentialed source (the old check, kept).

Any of these, and a teacher that sends images off the machine without ``phi_approved: true``,
stops the stage before its first request, naming the teachers and the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from apodistill.config.teachers import TeachersConfig
from apodistill.data.sources import CREDENTIALED_SOURCES, SOURCE_RECORD, read_source_record

_MIMIC_LAYOUT = re.compile(r"(^|/)files/p\d{2}/p\d{5,10}/s\d{5,10}/[^/]+$")
_EXAMPLES = 2


class PhiGuardError(RuntimeError):
    """A credentialed source would be sent to an endpoint not approved for it."""


@dataclass
class DataVerdict:
    """Whether images are (or must be treated as) credentialed, and every reason why."""

    reasons: list[str] = field(default_factory=list)
    source: str = "unknown"
    licence: str = "unknown"

    @property
    def credentialed(self) -> bool:
        return bool(self.reasons)


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def assess_images(benchmark_dir: str | Path, image_paths: Iterable[str], declared_source: str | None = None) -> DataVerdict:
    """Judge the images a stage is about to send from the benchmark's record and their paths."""
    folder = Path(benchmark_dir).resolve()
    record = read_source_record(folder)
    verdict = DataVerdict()
    if record is None:
        verdict.reasons.append(f"{folder / SOURCE_RECORD} is missing or unreadable, so the images' licence is unknown "
                               "(rerun the fetch stage to write it)")
        roots: list[Path] = [folder]
    else:
        verdict.source, verdict.licence = str(record.get("source", "unknown")), str(record.get("licence", "unknown"))
        if record.get("credentialed", True) is not False:
            verdict.reasons.append(f"{folder / SOURCE_RECORD} says source {verdict.source!r}, licence: {verdict.licence}")
        roots = [folder if r == "." else Path(r).resolve() for r in record.get("image_roots", ["."])]
    if declared_source in CREDENTIALED_SOURCES:
        verdict.reasons.append(f"params.yaml fetch.source is {declared_source!r}")
    outside, mimic_like = [], []
    for p in dict.fromkeys(image_paths):
        path = Path(p) if Path(p).is_absolute() else folder / p
        if record is not None and not _inside(path.resolve(), roots):
            outside.append(str(p))
        if _MIMIC_LAYOUT.search(Path(p).as_posix()):
            mimic_like.append(str(p))
    if outside:
        verdict.reasons.append(f"{len(outside)} image(s) lie outside the folders {SOURCE_RECORD} covers "
                               f"({', '.join(map(str, roots))}), e.g. {', '.join(outside[:_EXAMPLES])}")
    if mimic_like:
        verdict.reasons.append(f"{len(mimic_like)} image(s) are laid out like MIMIC-CXR (files/pXX/pXXXXXXXX/sXXXXXXXX/), "
                               f"e.g. {', '.join(mimic_like[:_EXAMPLES])}")
    return verdict


def check_phi(benchmark_dir: str | Path, image_paths: Iterable[str], teachers: TeachersConfig,
              sends_off_machine: dict[str, bool], declared_source: str | None = None) -> None:
    """Raise :class:`PhiGuardError` naming each unapproved teacher, the data and how to approve one.

    ``sends_off_machine`` maps teacher name -> whether its backend sends images over the
    network (openai: yes, even to localhost, since the server may forward them; simulated
    and hf: no). ``declared_source`` is params' ``fetch.source``: it can only add a reason,
    never remove one.
    """
    blocked = [t for t in teachers.roster if sends_off_machine.get(t.name, True) and not t.phi_approved]
    if not blocked:
        return
    verdict = assess_images(benchmark_dir, image_paths, declared_source)
    if not verdict.credentialed:
        return
    names = ", ".join(f"{t.name} ({t.backend} {t.base_url or ''})".replace(" )", ")") for t in blocked)
    data = f"{verdict.source} images from {Path(benchmark_dir)}"
    raise PhiGuardError(
        f"refusing to send {data} to teachers not approved for protected health data: {names}. "
        f"Why the data counts as credentialed: {'; '.join(verdict.reasons)}. "
        "The PhysioNet licence forbids sharing MIMIC-CXR data with services that may retain it. "
        "Approve an endpoint only if it is contracted not to retain data (e.g. a zero-retention "
        "enterprise agreement or your own server) by setting `phi_approved: true` on its roster entry "
        "in params.yaml (teachers.roster), or use a local backend (hf) or the simulated roster."
    )
