"""Image checks: every image must decode fully, with a plausible size and mode.

Why decode and not just open: a truncated JPEG opens fine and fails only when its pixels
are read, i.e. in the middle of training. JPEGs are decoded in draft mode (1/8 scale),
which still reads the whole stream, so a full MIMIC-CXR check stays affordable.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

MIN_SIDE = 32  # smaller is a thumbnail or a broken export, not a radiograph
MAX_SIDE = 8192  # MIMIC-CXR-JPG images are at most ~4,300 px a side
MODES = ("L", "I;16", "I", "RGB", "LA")  # grayscale radiographs; RGB exports are converted later


def resolve_image(benchmark_dir: str | Path, image_path: str | Path) -> Path:
    """Where an ``image_path`` of a benchmark table lives on disk.

    Synthetic tables store paths relative to the benchmark folder (so the folder can move
    with ``dvc pull``); real sources store absolute paths into the user's download.
    """
    p = Path(image_path)
    return p if p.is_absolute() else Path(benchmark_dir) / p


def check_image(path: Path) -> str | None:
    """None when the image is usable, else a short reason."""
    if not path.is_file():
        return "missing file"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
            if im.format == "JPEG":
                im.draft("L", (max(1, w // 8), max(1, h // 8)))
            im.load()
    except UnidentifiedImageError:
        return "not an image (unidentified format)"
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports truncation / bad data as these
        return f"does not decode: {err}"
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        return f"implausible size {w}x{h} (expected {MIN_SIDE}..{MAX_SIDE} px a side)"
    if mode not in MODES:
        return f"unexpected mode {mode} (expected one of {', '.join(MODES)})"
    return None


def check_images(benchmark_dir: Path, image_paths: list[str]) -> dict[str, str]:
    """image_path -> reason, for every path that fails :func:`check_image`."""
    bad: dict[str, str] = {}
    for p in tqdm(image_paths, desc="check images", unit="img", mininterval=2):
        reason = check_image(resolve_image(benchmark_dir, p))
        if reason is not None:
            bad[p] = reason
    return bad
