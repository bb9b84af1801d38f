"""Refresh the committed GX file context from the hand-maintained suite files:

    python -m apodistill.validation validation

Rewrites <dir>/gx (data source, suites, validation definitions, checkpoints) from
<dir>/expectations/*.yaml. Stage runs never write there: they work on a copy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from apodistill.validation.suite import load_suite_spec, sync_context


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "validation")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    suites = sorted((root / "expectations").glob("*.yaml"))
    if not suites:
        print(f"error: no suite files in {root / 'expectations'}", file=sys.stderr)
        return 1
    for path in suites:
        sync_context(root, load_suite_spec(path))
        print(f"synced {path} -> {root / 'gx'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
