"""PHI guard: credentialed images never leave the machine for an unapproved endpoint.

The PhysioNet licence of MIMIC-CXR and MS-CXR-T forbids sharing the data with third
parties, including online LLM services that may retain it; only services contracted not to
retain data are allowed. The check runs before any request of any teacher is made.
"""

from __future__ import annotations

from apodistill.config.teachers import TeachersConfig

# cxr_max trajectories come with MIMIC-CXR images, so they are credentialed too.
CREDENTIALED_SOURCES = ("mimic_cxr", "ms_cxr_t", "cxr_max")


class PhiGuardError(RuntimeError):
    """A credentialed source would be sent to an endpoint not approved for it."""


def check_phi(source: str, teachers: TeachersConfig, sends_off_machine: dict[str, bool]) -> None:
    """Raise :class:`PhiGuardError` naming each unapproved teacher and how to approve one.

    ``sends_off_machine`` maps teacher name -> whether its backend sends images over the
    network (openai: yes, even to localhost, since the server may forward them; simulated
    and hf: no).
    """
    if source not in CREDENTIALED_SOURCES:
        return
    blocked = [t for t in teachers.roster if sends_off_machine.get(t.name, True) and not t.phi_approved]
    if not blocked:
        return
    names = ", ".join(f"{t.name} ({t.backend} {t.base_url or ''})".replace(" )", ")") for t in blocked)
    raise PhiGuardError(
        f"refusing to send {source} images to teachers not approved for protected health data: {names}. "
        f"The PhysioNet licence forbids sharing {source} with services that may retain it. "
        "Approve an endpoint only if it is contracted not to retain data (e.g. a zero-retention "
        "enterprise agreement or your own server) by setting `phi_approved: true` on its roster entry "
        "in params.yaml (teachers.roster), or use a local backend (hf) or the simulated roster."
    )
