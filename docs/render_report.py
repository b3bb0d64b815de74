"""Render the HTML report of the demo's bad model in headless Chromium and save the
screenshot the README shows (docs/report.png).

    python docs/render_report.py [--chromium /usr/bin/chromium]

Needs Debian's `chromium` package (`apt-get install chromium`) and the demo extra.
Checks that the page shows the verdict and the confusion-matrix heatmap before saving.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from headless_chromium import default_chromium, screenshot

from gate import demo
from gate.cache import Caches
from gate.evaluation import evaluate
from gate.report import render_html

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chromium", default=default_chromium())
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = demo.build(work / "demo")
        verdict = evaluate(
            files.bad_model, files.heldout_spec, ROOT / "policies" / "default.yaml", provider="cpu",
            model_name="gate-data/demo/bad.onnx", caches=Caches.at(work / "cache"),
        )
        page = render_html(verdict)
        for expected in ("FAIL", "three: recall 0.167 &lt; 0.800 (5/30)", "data:image/png;base64,"):
            if expected not in page:
                sys.exit(f"the report lacks {expected!r}")
        html = work / "report.html"
        html.write_text(page, encoding="utf-8")
        screenshot(html.as_uri(), args.out, chromium=args.chromium, width=1280, height=3600)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
