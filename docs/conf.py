"""Sphinx configuration: `make docs` (HTML in docs/_build/html)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("gallery"))        # the gallery scripts' shared helpers (_gallery.py)
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["DYNAMICS_GALLERY_SPHINX"] = "1"           # _gallery.finish: sphinx-gallery captures the figures

project = "dynamics"
author = "dynamics developers"
copyright = "2026, dynamics developers"

import dynamics  # noqa: E402

release = dynamics.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",   # ships MathJax 3 into _static: the math renders offline (make docs-check)
    "sphinx.ext.napoleon",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "none"
napoleon_numpy_docstring = True
suppress_warnings = ["myst.header", "autosummary.import_cycle"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json"]
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__|_gallery)\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}
# pydata-sphinx-theme (NumPy's and SciPy's): the page is as wide as the screen (custom.css) so that code
# and the gallery's multi-panel figures fit without scrolling; the sidebars keep to the navigation
html_theme = "pydata_sphinx_theme"
html_title = f"dynamics {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": [],          # the width goes to the content (the left sidebar has the pages)
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": ["sidebar-nav-bs", "page-toc"]}     # the page's own sections under the navigation
exclude_patterns += ["gallery/*"]


# reST's inline markup escaped; "$" as "\\$" (reST keeps one backslash, MathJax's processEscapes prints "$"),
# so that a docstring's "$HOME ... $" is not read as math
_RST_SPECIAL = str.maketrans({**{c: "\\" + c for c in "\\*`|_[]<>:"}, "$": "\\\\$"})


def _verbatim_docstrings(app, what, name, obj, options, lines):
    """The library's docstrings are plain text with equations and shapes (not reST): their first
    paragraph as plain text (escaped: autosummary's tables take their one-line descriptions from it),
    then the rest verbatim, as a literal block, so that |x|, *, indentation and tables render
    as written."""
    if not lines:
        return
    first = []
    for ln in lines:
        if not ln.strip():
            break
        first.append(ln.strip())
    rest = lines[len(first):]
    while rest and not rest[0].strip():
        rest = rest[1:]
    lines[:] = [" ".join(first).translate(_RST_SPECIAL), ""] + (
        ["::", ""] + ["    " + ln for ln in rest] + [""] if rest else [])


def setup(app):
    app.connect("autodoc-process-docstring", _verbatim_docstrings)
