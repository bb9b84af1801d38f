"""Procedural radiograph-like chest images with graded, visible finding signatures.

Why procedural: the pipeline must run offline on 2 CPU cores, yet the method's effect
(students beating teachers on findings) is only measurable when the pixels carry the
labels. Every finding gets a signature that a ~1 M-parameter student can see at 64 px,
and whose size or density grows with its severity in [0, 1]:

- pleural_effusion: a dense basal opacity with a meniscus rising to the lateral wall;
- consolidation: one lobe filled homogeneously, sharp along its fissure;
- pneumonia: several fuzzy, mottled patches scattered over both lungs (multifocal);
- pneumothorax: a black avascular band along the lateral wall and apex of one lung,
  bounded by a bright pleural line (the collapsed lung edge);
- edema: a symmetric perihilar "butterfly" haze in both lungs;
- cardiomegaly: a wider heart shadow; atelectasis: a plate-like basal band with a raised
  hemidiaphragm; support_devices: an endotracheal tube and a central line.

Images are drawn in continuous coordinates (x, y in [-1, 1], y downwards, patient's right
on the image left as on a PA film) with soft edges, so any ``size`` renders the same scene.
All randomness comes from the generator passed in: same seed, same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# Findings the renderer draws; the others of CHEXPERT_14 have no image signature.
RENDERED: tuple[str, ...] = (
    "pleural_effusion",
    "consolidation",
    "pneumonia",
    "pneumothorax",
    "edema",
    "cardiomegaly",
    "atelectasis",
    "support_devices",
)

SOFT_TISSUE = 0.62  # grey level that fluid / dense tissue blends towards
AIR = 0.03  # free pleural air: darker than any aerated lung


@dataclass
class Patient:
    """Anatomy and finding locations fixed for one patient across its studies."""

    thorax_w: float
    apex_y: float
    base_y: float
    lung_lateral: float
    lung_medial: float
    dome: float
    heart_w: float
    heart_cx: float
    heart_cy: float
    lung_grey: float
    rib_phase: float
    rib_slope: float
    texture: np.ndarray  # (k, 4) random cosines: amplitude, fx, fy, phase
    effusion_side: int  # -1 patient right (image left), +1 left, 0 both
    consolidation_side: int
    consolidation_zone: tuple[float, float]  # lung-height fraction covered by the lobe
    pneumonia_spots: np.ndarray  # (6, 3): side, v (height fraction), u (width fraction)
    pneumothorax_side: int
    atelectasis_side: int
    devices: tuple[bool, bool]  # endotracheal tube, central line

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Patient":
        side = lambda: int(rng.choice([-1, 1]))  # noqa: E731
        zone = [(0.0, 0.42), (0.38, 0.7), (0.55, 1.0)][int(rng.integers(3))]
        spots = np.column_stack(
            [rng.choice([-1.0, 1.0], 6), rng.uniform(0.2, 0.85, 6), rng.uniform(0.2, 0.8, 6)]
        )
        return cls(
            thorax_w=rng.uniform(0.84, 0.93),
            apex_y=rng.uniform(-0.8, -0.7),
            base_y=rng.uniform(0.5, 0.6),
            lung_lateral=rng.uniform(0.74, 0.82),
            lung_medial=rng.uniform(0.08, 0.12),
            dome=rng.uniform(0.1, 0.17),
            heart_w=rng.uniform(0.36, 0.41),
            heart_cx=rng.uniform(0.07, 0.12),
            heart_cy=rng.uniform(0.27, 0.32),
            lung_grey=rng.uniform(0.15, 0.2),
            rib_phase=rng.uniform(0, 1),
            rib_slope=rng.uniform(0.25, 0.4),
            texture=np.column_stack(
                [rng.uniform(0.005, 0.02, 6), rng.uniform(2, 7, 6), rng.uniform(2, 7, 6), rng.uniform(0, 2 * np.pi, 6)]
            ),
            effusion_side=int(rng.choice([-1, 1, 0], p=[0.4, 0.4, 0.2])),
            consolidation_side=side(),
            consolidation_zone=zone,
            pneumonia_spots=spots,
            pneumothorax_side=side(),
            atelectasis_side=side(),
            devices=(bool(rng.random() < 0.7), bool(rng.random() < 0.6)),
        )


@dataclass
class _Canvas:
    x: np.ndarray
    y: np.ndarray
    eps: float  # soft-edge width: about one pixel in coordinate units
    img: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.img = np.zeros_like(self.x)

    def blend(self, mask: np.ndarray, target: float | np.ndarray, amount: float = 1.0) -> None:
        self.img += np.clip(mask * amount, 0, 1) * (target - self.img)


def _sig(d: np.ndarray, eps: float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(d / (2 * eps)))


def _lung_geometry(p: Patient, c: _Canvas, sides_raise: dict[int, float]):
    """Per side: mask, lateral edge, dome, vertical fraction v, horizontal fraction u."""
    out = {}
    ax = np.abs(c.x)
    for s in (-1, 1):
        apex = p.apex_y + (0.02 if s == 1 else 0.0)
        base = p.base_y + (0.04 if s == 1 else 0.0) - sides_raise.get(s, 0.0)
        v = np.clip((c.y - apex) / (base - apex), 0, 1.2)
        width = p.lung_lateral - p.lung_medial
        lateral = p.lung_medial + width * (0.6 + 0.4 * np.sqrt(np.clip(v, 0, 1)))
        u = np.clip((ax - p.lung_medial) / (lateral - p.lung_medial), 0, 1)
        uf = (ax - p.lung_medial) / width
        top = apex + 0.5 * np.clip(uf - 0.25, 0, None) ** 2  # rounded apex and shoulders
        dome = base - p.dome * (1 - (2 * u - 1) ** 2) - 0.05 * (1 - u)
        on_side = _sig(s * c.x, c.eps)
        mask = on_side * _sig(ax - p.lung_medial, c.eps) * _sig(lateral - ax, c.eps) * _sig(c.y - top, c.eps) * _sig(dome - c.y, c.eps)
        out[s] = dict(mask=mask, lateral=lateral, dome=dome, v=v, u=u, apex=apex, base=base)
    return out


def render(p: Patient, sev: dict[str, float], size: int, rng: np.random.Generator, noise: float = 0.018) -> np.ndarray:
    """Render one study as a float image in [0, 1]; ``sev`` maps finding -> severity, ``noise`` is the film's grain (sd)."""
    s_ = lambda f: float(np.clip(sev.get(f, 0.0) or 0.0, 0.0, 1.0))  # noqa: E731
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    # small per-study positioning jitter: the patient never stands twice the same way
    dx, dy = rng.normal(0, 0.015, 2)
    y, x = np.meshgrid(coords + dy, coords + dx, indexing="ij")
    c = _Canvas(x=x, y=y, eps=1.0 / size)
    ax = np.abs(x)

    # body: soft tissue ellipse with shoulders, air outside
    body = _sig(1 - ((x / (p.thorax_w + 0.08)) ** 2 + ((y - 0.2) / 1.25) ** 2), 0.05)
    c.img[:] = 0.02
    c.blend(body, 0.5 - 0.12 * (x / p.thorax_w) ** 2)
    raise_ = {p.atelectasis_side: 0.12 * s_("atelectasis")}
    lungs = _lung_geometry(p, c, raise_)
    lung_mask = lungs[-1]["mask"] + lungs[1]["mask"]

    # aerated lung with hilar vascular markings fading laterally and low-frequency texture
    tex = sum(a * np.cos(fx * np.pi * x + fy * np.pi * y + ph) for a, fx, fy, ph in p.texture)
    hila = sum(np.exp(-(((x - s * 0.25) / 0.22) ** 2 + ((y + 0.05) / 0.35) ** 2)) for s in (-1, 1))
    lung_tex = p.lung_grey + tex + 0.1 * hila
    c.blend(lung_mask, lung_tex)

    # edema: symmetric perihilar butterfly haze
    e = s_("edema")
    if e > 0:
        wing = sum(
            np.exp(-(((x - s * 0.3) / (0.2 + 0.15 * e)) ** 2 + ((y + 0.02) / (0.3 + 0.1 * e)) ** 2)) for s in (-1, 1)
        )
        c.blend(lung_mask * wing, SOFT_TISSUE, 0.3 + 0.6 * e)  # faint haze is learned last: keep it clear; levels differ by density

    # pneumonia: 2-6 fuzzy mottled patches, more and denser as severity grows
    pn = s_("pneumonia")
    if pn > 0:
        n = 1 + int(round(5.5 * pn))  # small 3, moderate 4, large 6 patches: the count tells the level
        patches = np.zeros_like(x)
        for side, v0, u0 in p.pneumonia_spots[:n]:
            g = lungs[int(side)]
            cy = g["apex"] + v0 * (g["base"] - g["apex"])
            cx = side * (p.lung_medial + u0 * (p.lung_lateral - p.lung_medial))
            r = 0.08 + 0.08 * pn
            d2 = ((x - cx) ** 2 + (y - cy) ** 2) / r**2
            patches = np.maximum(patches, _sig(1 - d2, 0.25))
        mottle = 0.8 + 0.1 * np.cos(np.pi * (17 * x + 9 * y)) + 0.1 * np.cos(np.pi * (-7 * x + 15 * y) + 2.0)
        c.blend(lung_mask * patches * mottle, SOFT_TISSUE, 0.6 + 0.35 * pn)

    # consolidation: a lobe filled homogeneously, sharp at the fissure
    co = s_("consolidation")
    if co > 0:
        g = lungs[p.consolidation_side]
        z0, z1 = p.consolidation_zone
        extent = 0.2 + 0.8 * co  # a third, two thirds or all of the lobe
        top, bottom = z0, z0 + (z1 - z0) * extent
        if z0 > 0.3:  # lower lobes grow upwards from the base
            top, bottom = z1 - (z1 - z0) * extent, z1 + 0.1
        lobe = _sig(g["v"] - top, 0.01) * _sig(bottom - g["v"], 0.05)
        c.blend(g["mask"] * lobe, SOFT_TISSUE + 0.06, 0.7 + 0.3 * co)

    # atelectasis: plate-like basal band (the hemidiaphragm was raised above)
    at = s_("atelectasis")
    if at > 0:
        g = lungs[p.atelectasis_side]
        band = np.exp(-(((g["v"] - 0.78) / (0.025 + 0.03 * at)) ** 2)) * _sig(g["u"] - 0.15, 0.05)
        c.blend(g["mask"] * band, SOFT_TISSUE, 0.6 + 0.35 * at)

    # pleural effusion: dense base with a meniscus climbing the lateral wall
    ef = s_("pleural_effusion")
    if ef > 0:
        for s in (-1, 1) if p.effusion_side == 0 else (p.effusion_side,):
            g = lungs[s]
            height = 0.12 + 0.55 * ef  # fraction of lung height from the base
            level = g["base"] - height * (g["base"] - g["apex"]) * (0.75 + 0.35 * g["u"] ** 2)
            fluid = _sig(y - level, 0.025) * _sig(s * x, c.eps) * _sig(g["lateral"] + 0.02 - ax, c.eps)
            fluid *= _sig(ax - p.lung_medial, c.eps) * _sig(g["base"] + 0.1 - y, c.eps)
            c.blend(fluid, SOFT_TISSUE + 0.04, 0.95)

    # pneumothorax: black avascular band along the lateral wall and apex, bright pleural line
    pt = s_("pneumothorax")
    if pt > 0:
        g = lungs[p.pneumothorax_side]
        s = p.pneumothorax_side
        width = (0.18 + 0.55 * pt) * (g["lateral"] - p.lung_medial)  # >= ~5 px at 64 px from the small level up; levels differ by ~5 px
        reach = 0.6 + 0.35 * pt  # how far down the band goes (lung-height fraction)
        taper = np.clip((reach - g["v"]) / 0.25, 0, 1)
        edge = g["lateral"] - width * taper
        apex_drop = g["apex"] + (0.08 + 0.15 * pt)
        region = _sig(s * x, c.eps) * _sig(g["lateral"] - ax, c.eps) * _sig(g["dome"] - y, c.eps) * _sig(y - g["apex"], c.eps)
        air = region * np.maximum(_sig(ax - edge, c.eps), _sig(apex_drop - y, c.eps))
        air *= (g["v"] < reach + 0.05)
        line = np.exp(-(((ax - edge) / (1.1 * c.eps)) ** 2)) * (taper > 0.05) * (y > apex_drop) * region
        c.blend(air, AIR, 1.0)
        c.blend(line * (1 - air), 0.75, 0.9)

    # heart and mediastinum over everything behind them
    cm = s_("cardiomegaly")
    hw = p.heart_w * (1 + 0.55 * cm)
    heart = _sig(1 - (((x - p.heart_cx - 0.1 * cm) / hw) ** 2 + ((y - p.heart_cy) / (0.27 + 0.05 * cm)) ** 2), 0.05)
    mediastinum = _sig(p.lung_medial + 0.02 - ax, c.eps) * _sig(0.3 - y, c.eps)
    c.blend(np.maximum(heart, mediastinum), 0.6)
    trachea = np.exp(-((x / 0.035) ** 2)) * _sig(-0.25 - y, 0.02)
    c.blend(trachea, 0.3, 0.6)
    # below the domes: abdomen (soft tissue) - lung masks already stop at the domes

    # bones: spine, posterior ribs over the thorax, clavicles
    ribs = np.clip(np.cos(2 * np.pi * ((y - p.rib_slope * (ax - 0.2) ** 2 + 0.15 * ax) / 0.18 + p.rib_phase)), 0, 1) ** 6
    c.img += ribs * body * (0.02 + 0.05 * lung_mask) * _sig(0.62 - y, 0.05)
    clav = np.exp(-(((y + 0.72 - 0.18 * (ax - 0.35) ** 2 - 0.1 * ax) / 0.035) ** 2)) * _sig(0.7 - ax, 0.05)
    c.img += 0.12 * clav

    # support devices: endotracheal tube down the trachea, central line from the left
    if s_("support_devices") > 0:
        ett, cvc = p.devices
        if not (ett or cvc):
            ett = True
        if ett:
            tube = np.exp(-(((x - 0.01) / (1.6 * c.eps)) ** 2)) * _sig(-0.3 - y, c.eps)
            c.blend(tube, 1.0)
        for lx, ly in ((-0.55, -0.55), (0.55, -0.55), (0.5, 0.45)):  # ECG lead buttons
            c.blend(_sig(0.045 - np.hypot(x - lx, y - ly), c.eps), 0.98)
        if cvc:
            path_y = -0.62 + 0.55 * (x - 0.12) ** 2 / 0.45
            wire = np.exp(-(((y - path_y) / (1.0 * c.eps)) ** 2)) * _sig(x - 0.04, c.eps) * _sig(0.75 - x, c.eps)
            c.blend(wire, 0.92)

    img = c.img + rng.normal(0, noise, x.shape)
    gamma = rng.uniform(0.9, 1.1)
    return np.clip(img, 0, 1) ** gamma


def to_pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L")


def render_study_image(severities: dict[str, float], size: int = 64, seed: int = 0) -> Image.Image:
    """A grayscale radiograph-like image with the given finding severities.

    ``seed`` fixes the patient (anatomy and where each finding sits) and the noise, so two
    calls with the same seed and different severities differ only by the findings: what
    tests, the contact sheet and the serving demo need.
    """
    unknown = set(severities) - set(RENDERED)
    if unknown:
        raise ValueError(f"no image signature for {sorted(unknown)}; rendered findings: {', '.join(RENDERED)}")
    patient = Patient.sample(np.random.default_rng([seed, 0]))
    return to_pil(render(patient, severities, size, np.random.default_rng([seed, 1])))
