"""Refuse images far outside what the student was trained on, with a reason.

A student answers any image in its well-formed format: a colour gradient or a 1x1
transparent pixel came back "pneumothorax: yes". So before generating, each image is
measured with a few cheap statistics (one 64x64 grayscale resize, microseconds of numpy)
and compared with the same statistics of the training images, stored with the model at
register time (:func:`build_profile` over the benchmark's train split):

- ``side``: the shorter side in px (hard floor: 32 px, as the fetch stage's image check);
- ``opacity``: mean alpha (a transparent PNG carries no image);
- ``chroma``: mean (max - min) of R, G, B in [0, 1]: radiographs are gray (0);
- ``contrast``: std of the gray levels in [0, 1]: a blank image has none;
- ``roughness``: mean absolute difference of neighbouring pixels / contrast: noise is rough
  (~1.1 for white noise), radiographs are smooth;
- ``layout``: correlation of the image's 16x16 z-scored thumbnail with the mean training
  thumbnail: a chest radiograph has dark lungs either side of a bright mediastinum above a
  bright diaphragm; gradients, photos and smooth ("photo-like", 1/f) noise do not.

Limits are the training values' 0.5% / 99.5% quantiles widened generously (a factor for scale
statistics, the training spread again below the lowest training layout, absolute floors for chroma), so "far
outside" means clearly not a radiograph of the kind trained on, not an unusual one. This is
a guard against misuse, not a radiograph detector: an image built to match the statistics
passes, and real radiographs unlike the training set (a lateral view) may not.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

MIN_SIDE = 32  # as apodistill.data.images.MIN_SIDE: smaller is a thumbnail or a broken export
THUMB = 16
MIN_IMAGES = 20  # fewer training images give no usable 0.5% / 99.5% quantiles
PROFILE_VERSION = 1


class InputRejected(ValueError):
    """The image is far outside the training distribution; the message says which statistic and why."""


def _rgba(image) -> tuple[np.ndarray, np.ndarray]:
    """(gray 64x64 in [0, 1], RGB 64x64 in [0, 1]); alpha-composited on black."""
    from PIL import Image

    im = image
    if im.mode in ("I;16", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        im = Image.fromarray(((arr - lo) / (hi - lo or 1.0) * 255).astype(np.uint8), mode="L")
    rgba = im.convert("RGBA").resize((64, 64), Image.BILINEAR)
    a = np.asarray(rgba, dtype=np.float64) / 255.0
    rgb = a[..., :3] * a[..., 3:4]
    gray = rgb @ np.array([0.299, 0.587, 0.114])
    return gray, rgb


def image_features(image) -> dict[str, float]:
    """The statistics of the module docstring for one PIL image."""
    w, h = image.size
    feats: dict[str, float] = {"side": float(min(w, h))}
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    feats["opacity"] = float(np.asarray(image.convert("RGBA"), dtype=np.float64)[..., 3].mean() / 255.0) if has_alpha else 1.0
    gray, rgb = _rgba(image)
    feats["chroma"] = float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean())
    contrast = float(gray.std())
    feats["contrast"] = contrast
    diffs = np.concatenate([np.abs(np.diff(gray, axis=0)).ravel(), np.abs(np.diff(gray, axis=1)).ravel()])
    feats["roughness"] = float(diffs.mean() / contrast) if contrast > 1e-6 else 0.0
    feats["_thumb"] = _thumb(gray)  # type: ignore[assignment]
    return feats


def _thumb(gray: np.ndarray) -> np.ndarray:
    t = gray.reshape(THUMB, gray.shape[0] // THUMB, THUMB, gray.shape[1] // THUMB).mean(axis=(1, 3))
    sd = t.std()
    return (t - t.mean()) / sd if sd > 1e-9 else np.zeros_like(t)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def build_profile(images: Iterable[Any]) -> dict[str, Any]:
    """The limits :func:`check_image` applies, from training images (PIL images or paths)."""
    from PIL import Image

    feats = []
    for im in images:
        if not isinstance(im, Image.Image):
            with Image.open(im) as f:
                im = f.copy()
        feats.append(image_features(im))
    if len(feats) < MIN_IMAGES:
        raise ValueError(f"an input profile needs at least {MIN_IMAGES} training images, got {len(feats)}")
    mean_thumb = np.mean([f["_thumb"] for f in feats], axis=0)
    mean_thumb = (mean_thumb - mean_thumb.mean()) / (mean_thumb.std() or 1.0)
    layout = np.array([_corr(f["_thumb"], mean_thumb) for f in feats])

    def q(name: str, arr=None) -> tuple[float, float]:
        v = np.array([f[name] for f in feats]) if arr is None else arr
        return float(np.quantile(v, 0.005)), float(np.quantile(v, 0.995))

    c_lo, c_hi = q("contrast")
    r_lo, r_hi = q("roughness")
    ch_lo, ch_hi = q("chroma")
    l_lo, l_hi = q("layout", layout)
    limits = {
        "chroma": {"max": round(max(ch_hi * 3, 0.08), 5)},
        "contrast": {"min": round(c_lo / 3, 5)},
        "roughness": {"max": round(r_hi * 2.5, 5)},
        "layout": {"min": round(max(l_lo - 1.0 * (l_hi - l_lo), 0.1), 5)},
    }
    training = {"contrast": [c_lo, c_hi], "roughness": [r_lo, r_hi], "chroma": [ch_lo, ch_hi], "layout": [l_lo, l_hi]}
    return {"version": PROFILE_VERSION, "images": len(feats), "limits": limits,
            "training_quantiles_0.5_99.5": {k: [round(a, 4), round(b, 4)] for k, (a, b) in training.items()},
            "mean_thumbnail": [[round(float(x), 4) for x in row] for row in mean_thumb]}


_ORDER = ("roughness", "chroma", "contrast", "layout")
_WHAT = {
    "chroma": "colourfulness {v:.3f} (training radiographs are gray: at most {lim:.3f})",
    "contrast": "contrast {v:.4f} (blank or nearly uniform; training images have at least {lim:.4f})",
    "roughness": "pixel-to-pixel roughness {v:.2f} (noise-like; training images at most {lim:.2f})",
    "layout": "resemblance to the training chest radiographs' layout {v:.2f} (at least {lim:.2f} expected)",
}


def check_image(image, profile: dict[str, Any] | None) -> str | None:
    """None when the image may be answered, else the reason it is refused.

    Without a profile (a model registered before profiles existed) only the size and
    transparency checks apply.
    """
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        return f"image is {w}x{h} px; a chest radiograph is at least {MIN_SIDE} px a side"
    feats = image_features(image)
    if feats["opacity"] < 0.9:
        return f"image is {1 - feats['opacity']:.0%} transparent; send an opaque radiograph"
    if not profile:
        return None
    thumb = np.asarray(profile["mean_thumbnail"], dtype=np.float64)
    values = {**feats, "layout": _corr(feats["_thumb"], thumb)}
    for name in _ORDER:  # the most telling reason first: noise is also low-contrast after the resize
        lim, v = profile["limits"][name], values[name]
        if "max" in lim and v > lim["max"]:
            return "image is far outside what the student was trained on: " + _WHAT[name].format(v=v, lim=lim["max"])
        if "min" in lim and v < lim["min"]:
            return "image is far outside what the student was trained on: " + _WHAT[name].format(v=v, lim=lim["min"])
    return None


def profile_from_benchmark(benchmark_dir: str, split: str = "train", max_images: int = 2000, seed: int = 0) -> dict[str, Any] | None:
    """:func:`build_profile` over (a seeded sample of) a benchmark split's study images; None
    when the split has fewer than :data:`MIN_IMAGES` (then only size and transparency are checked)."""
    import pandas as pd

    from apodistill.data.images import resolve_image

    studies = pd.read_parquet(f"{benchmark_dir}/studies.parquet", columns=["image_path", "split"])
    paths = studies.loc[studies["split"] == split, "image_path"]
    if len(paths) < MIN_IMAGES:
        return None
    if len(paths) > max_images:
        paths = paths.sample(max_images, random_state=seed)
    return build_profile(resolve_image(benchmark_dir, p) for p in paths)
