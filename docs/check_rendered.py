"""Render the built docs in a real headless browser and check that no raw TeX is left.

    python docs/check_rendered.py docs/_build/html [--browser /usr/bin/chromium]

For every page (but the index and search pages), Chromium loads the file with the network off
(--disable-background-networking; file:// only), runs its scripts (MathJax, shipped in _static by
sphinx-mathjax-offline) for a few seconds of virtual time and dumps the DOM.  The visible text (outside
<script>, <style>, <pre>, <code> and MathJax's own containers) must hold no TeX delimiters ($...$, $$,
\\( \\), \\[ \\]) and no TeX commands (\\frac, \\lambda, ...), and every page with math must contain
rendered MathJax output (mjx-container).  Exit status 0 when every page passes, 1 otherwise (the
failures listed), 2 when no browser is found (``make docs-check`` installs Debian's chromium).
"""

from __future__ import annotations

import argparse
import glob
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile

TEX = re.compile(r"(\$\$|\$[^$\s][^$]*\$|\\\(|\\\)|\\\[|\\\]|\\(frac|lambda|rho|mathrm|sum|int|varepsilon|tfrac|"
                 r"boxed|left|right|begin|end)\b)")
SKIP = {"script", "style", "pre", "code", "mjx-container", "mjx-assistive-mml", "math", "textarea"}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--virtual-time-budget=15000", "--dump-dom"]


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.depth, self.parts, self.mathjax = 0, [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "mjx-container":
            self.mathjax += 1
        if tag in SKIP:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def visible_text(dom: str):
    p = _Text()
    p.feed(dom)
    return " ".join(p.parts), p.mathjax


def pages_with_math(root):
    out = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.html"), recursive=True)):
        if "/_static/" in path or "/_sources/" in path:
            continue
        if os.path.basename(path) in ("genindex.html", "search.html", "py-modindex.html"):
            continue
        text = open(path, encoding="utf-8", errors="replace").read()
        out.append((path, 'class="math' in text))
    return out


def render(browser, path):
    with tempfile.TemporaryDirectory() as prof:
        res = subprocess.run([browser, *FLAGS, f"--user-data-dir={prof}", "file://" + os.path.abspath(path)],
                             capture_output=True, text=True, timeout=120)
    return res.stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="the built HTML folder, e.g. docs/_build/html")
    ap.add_argument("--browser", default=None)
    args = ap.parse_args(argv)
    browser = args.browser or shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")
    if not browser:
        print("no chromium found: apt-get install chromium (make docs-check does)", file=sys.stderr)
        return 2
    pages = pages_with_math(args.root)
    if not any(has for _, has in pages):
        print(f"no page with math under {args.root}: build the docs first (make docs)", file=sys.stderr)
        return 1
    bad = []
    for path, has_math in pages:
        dom = render(browser, path)
        text, rendered = visible_text(dom)
        raw = sorted({m.group(0) for m in TEX.finditer(text)})
        rel = os.path.relpath(path, args.root)
        if not dom.strip():
            bad.append(f"{rel}: the browser returned nothing")
        elif raw:
            bad.append(f"{rel}: raw TeX left in the rendered text: {raw[:8]}")
        elif has_math and not rendered:
            bad.append(f"{rel}: has math but MathJax rendered none (is _static/mathjax there?)")
        else:
            print(f"ok   {rel}: {rendered} formula(s) rendered")
    for b in bad:
        print(f"FAIL {b}")
    print(f"{len(pages) - len(bad)} of {len(pages)} page(s) render their math offline")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
