"""Build the documentation site and keep screenshots of its home and policy pages
(docs/site-home.png, docs/site-policies.png), rendered in headless Chromium.

    python docs/screenshot_site.py [--chromium /usr/bin/chromium]

Needs the docs extra (`pip install -e '.[docs]'`) and Debian's `chromium` package.
The site is built with `mkdocs build --strict` into a temporary directory; each page is
checked to show its title and its navigation before its picture is saved.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from headless_chromium import default_chromium, dom, screenshot

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 1000
# page of the built site -> (picture, text the rendered page must show)
PAGES = {
    "index.html": ("site-home.png", "A production-readiness gate for image classifiers"),
    "policies.html": ("site-policies.png", "Rule reference"),
}


def build_site(site: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(site)], cwd=ROOT, env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chromium", default=default_chromium())
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build_site(site)
        for page, (picture, expected) in PAGES.items():
            url = (site / page).as_uri()
            shown = dom(url, chromium=args.chromium)
            for text in (expected, "md-nav"):
                if text not in shown:
                    sys.exit(f"{page} does not show {text!r}")
            out = args.out_dir / picture
            screenshot(url, out, chromium=args.chromium, width=WIDTH, height=HEIGHT)
            print(f"wrote {out}")


if __name__ == "__main__":
    main()
