"""Helpers shared by the gallery scripts (they live with the gallery, not in the library).

Each script ends with :func:`finish`: it prints the script's one-line result (its claim and the margin
by which it holds), then

* saves the figure as ``$DYNAMICS_GALLERY_OUT/<name>.png`` when that variable is set (the tests do);
* inside the Sphinx build (``DYNAMICS_GALLERY_SPHINX=1``, set by ``docs/conf.py``) does nothing more:
  sphinx-gallery captures the figure itself;
* run on its own (``python docs/gallery/plot_x.py``) shows the figure with an interactive matplotlib
  backend, or else saves ``out/gallery/<name>.png`` under the working directory (``out/`` is ignored by
  git at the repository root) and says where.

``DYNAMICS_GALLERY_SMALL=1`` shrinks the runs (the test suite); the claims are tested at full size in
``tests/test_examples.py``.
"""

import os

import matplotlib

SMALL = os.environ.get("DYNAMICS_GALLERY_SMALL") == "1"
OUT = os.environ.get("DYNAMICS_GALLERY_OUT")
IN_SPHINX = os.environ.get("DYNAMICS_GALLERY_SPHINX") == "1"
NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


def finish(fig, name, result):
    """Print ``result`` (one line), then save or show ``fig`` as described in the module docstring.
    Returns None (sphinx-gallery would print a returned object's repr)."""
    print(result)
    if OUT:
        os.makedirs(OUT, exist_ok=True)
        fig.savefig(os.path.join(OUT, f"{name}.png"), dpi=100)
    elif not IN_SPHINX:
        if matplotlib.get_backend().lower() in NON_INTERACTIVE:
            # under out/gallery/ (ignored by git at the repository root), never loose in the working directory
            path = os.path.abspath(os.path.join("out", "gallery", f"{name}.png"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fig.savefig(path, dpi=100)
            print(f"saved {path}")
        else:
            import matplotlib.pyplot as plt
            plt.show()
