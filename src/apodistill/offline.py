"""Pages that render without network: the JS and CSS that `dvc plots show` and the Great
Expectations Data Docs load from CDNs, vendored from the npm registry at set-up.

    python -m apodistill.offline fetch .vendor                  # npm pack the pinned packages (set-up)
    python -m apodistill.offline dvc-template .vendor OUT.html  # `dvc plots show` template, scripts inlined
    python -m apodistill.offline localize DOCS_DIR .vendor      # rewrite a folder's pages to local copies

`dvc plots show` fills an HTML template (config `plots.html_template`); ours has no
``{scripts}`` placeholder, so DVC's CDN script tags are dropped and the same Vega versions
are inlined instead: the page is one self-contained file. The Data Docs pages keep their
markup; each CDN URL in :data:`ASSETS` is rewritten to a copy under ``DOCS_DIR/_vendor/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# The versions DVC 3.67's renderer and GX 1.24's Data Docs ask for.
VEGA = (("vega@5.20.2", "build/vega.min.js"), ("vega-lite@5.2.0", "build/vega-lite.min.js"),
        ("vega-embed@6.18.2", "build/vega-embed.min.js"))
# CDN URL -> (npm package@version, file in the package). Extra files a file needs beside it
# (Font Awesome's webfonts, referenced as ../webfonts/ from its CSS) are in EXTRA.
ASSETS: dict[str, tuple[str, str]] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": ("bootstrap@4.3.1", "dist/css/bootstrap.min.css"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": ("bootstrap@4.3.1", "dist/js/bootstrap.min.js"),
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery@3.7.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": ("popper.js@1.12.9", "dist/umd/popper.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        ("bootstrap-datepicker@1.9.0", "dist/css/bootstrap-datepicker.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        ("bootstrap-datepicker@1.9.0", "dist/js/bootstrap-datepicker.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": ("@fortawesome/fontawesome-free@6.6.0", "css/all.min.css"),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        ("@forevolve/bootstrap-dark@1.1.0", "dist/css/bootstrap-prefers-dark.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": ("bootstrap-table@1.19.1", "dist/bootstrap-table.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": ("bootstrap-table@1.19.1", "dist/bootstrap-table.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        ("bootstrap-table@1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    # GX links the filter-control CSS of 1.19.0 beside the 1.19.1 table; 1.19.1's file is the same stylesheet.
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        ("bootstrap-table@1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.css"),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        ("bootstrap-table@1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css"),
    "https://cdn.jsdelivr.net/npm/vega@5": VEGA[0],
    "https://cdn.jsdelivr.net/npm/vega-lite@5": VEGA[1],
    "https://cdn.jsdelivr.net/npm/vega-embed@6": VEGA[2],
}
EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("@fortawesome/fontawesome-free@6.6.0", "css/all.min.css"): ("webfonts",),
}
# CDN URL (query string ignored) -> a file the Data Docs site already holds.
IN_SITE = {"https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png": "static/images/logo-long.png"}
VENDOR_DIR = "_vendor"
_URL = re.compile(r"""(?P<attr>\b(?:src|href)\s*=\s*)(?P<q>["'])(?P<url>https?://[^"']+)(?P=q)""")


def _wanted() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for spec, path in [*ASSETS.values(), *VEGA]:
        out.setdefault(spec, set()).add(path)
        out[spec].update(EXTRA.get((spec, path), ()))
    return out


def _tarball_name(spec: str) -> str:
    """npm pack's file name: ``@scope/name@1.2.3`` -> ``scope-name-1.2.3.tgz``."""
    name, _, version = spec.rpartition("@")
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch(dest: str | Path, npm: str = "npm") -> Path:
    """Download the pinned packages with ``npm pack`` (the npm registry; no install, no
    dependencies) and keep only the files the pages use, as ``DEST/<package>@<version>/<path>``."""
    dest = Path(dest)
    if shutil.which(npm) is None:
        raise FileNotFoundError(f"{npm} not found: install Node.js and npm (Debian: apt-get install -y npm) to vendor the chart and Data Docs assets")
    with tempfile.TemporaryDirectory() as tmp:
        wanted = _wanted()
        proc = subprocess.run([npm, "pack", "--silent", "--pack-destination", tmp, *wanted], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"npm pack failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        for spec in wanted:
            tarball = Path(tmp) / _tarball_name(spec)
            if not tarball.is_file():
                raise RuntimeError(f"npm pack wrote no {tarball.name} for {spec}: {proc.stdout}")
            with tarfile.open(tarball) as tar:
                for member in tar.getmembers():
                    rel = member.name.split("/", 1)[1] if "/" in member.name else ""
                    if member.isfile() and any(rel == p or rel.startswith(p + "/") for p in wanted[spec]):
                        target = dest / spec / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(tar.extractfile(member).read())
    missing = [f"{s}/{p}" for s, paths in wanted.items() for p in paths if not (dest / s / p).exists()]
    if missing:
        raise RuntimeError(f"npm packages lack {missing}")
    return dest


def dvc_template(assets: str | Path, out: str | Path) -> Path:
    """A `dvc plots show` HTML template with Vega, Vega-Lite and Vega-Embed inlined."""
    assets = Path(assets)
    scripts = []
    for spec, path in VEGA:
        js = (assets / spec / path).read_text(encoding="utf8")
        if "</script" in js.lower():
            raise ValueError(f"{spec}/{path} contains </script> and cannot be inlined")
        scripts.append(f"<script>/* {spec} (npm), vendored by apodistill.offline */\n{js}\n</script>")
    page = ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n{refresh_tag}\n<title>DVC Plot</title>\n"
            + "\n".join(scripts)
            + "\n<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf8")
    return out


def localize(folder: str | Path, assets: str | Path) -> dict[str, int]:
    """Rewrite every page under ``folder`` to use copies of the CDN files in ``folder/_vendor/``.

    Returns ``{url: pages}`` of the URLs left as they were (not in :data:`ASSETS`: links to
    web sites, the GX logo).
    """
    folder, assets = Path(folder), Path(assets)
    vendor = folder / VENDOR_DIR
    left: dict[str, int] = {}
    for page in sorted(folder.rglob("*.html")):
        if vendor in page.parents:
            continue
        text = page.read_text(encoding="utf8")

        def swap(m: re.Match) -> str:
            url = m.group("url")
            own = IN_SITE.get(url.split("?", 1)[0])
            if own and (folder / own).is_file():
                return f"{m.group('attr')}{m.group('q')}{os.path.relpath(folder / own, page.parent).replace(os.sep, '/')}{m.group('q')}"
            if url not in ASSETS:
                if m.group("attr").lstrip().startswith("src") or url.endswith((".css", ".js")):
                    left[url] = left.get(url, 0) + 1
                return m.group(0)
            spec, path = ASSETS[url]
            for rel in (path, *EXTRA.get((spec, path), ())):
                src, dst = assets / spec / rel, vendor / spec / rel
                if not src.exists():
                    raise FileNotFoundError(f"{src} missing: run `python -m apodistill.offline fetch {assets}` (make setup does)")
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True)
                elif not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            local = os.path.relpath(vendor / spec / path, page.parent).replace(os.sep, "/")
            return f"{m.group('attr')}{m.group('q')}{local}{m.group('q')}"

        new = _URL.sub(swap, text)
        if new != text:
            page.write_text(new, encoding="utf8")
    return left


def localize_if_vendored(folder: str | Path, assets: str | Path | None) -> str:
    """:func:`localize` when the vendored assets are there; else leave the CDN links. Returns
    a line for the log saying which happened."""
    if assets is None or not Path(assets).is_dir():
        return (f"{folder}: pages keep their CDN links (no vendored assets at {assets}; `make setup` fetches them, "
                "then `dvc repro -f validate`): offline they render unstyled")
    left = localize(folder, assets)
    return f"{folder}: CDN assets replaced by local copies" + (f"; left as they were: {sorted(left)}" if left else "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "fetch":
        try:
            print(fetch(args[1]))
        except (FileNotFoundError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    if len(args) == 3 and args[0] == "dvc-template":
        print(dvc_template(args[1], args[2]))
        return 0
    if len(args) == 3 and args[0] == "localize":
        print(localize_if_vendored(args[1], args[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
