"""Every gallery script runs on its own with the small-size flag and writes its figure."""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "docs", "gallery", "plot_*.py")))


def test_there_is_a_script_per_headline_result():
    names = {os.path.basename(s)[5:-3] for s in SCRIPTS}
    assert {"jepa_vs_mae", "depth_greedy", "noisy_features", "saxe_modes", "dln_staircase", "attention_rank",
            "dense_attention_rank", "identity_head", "byol_portrait", "stepwise"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[os.path.basename(s) for s in SCRIPTS])
def test_gallery_script_writes_its_figure(script, tmp_path):
    env = dict(os.environ, DYNAMICS_GALLERY_SMALL="1", DYNAMICS_GALLERY_OUT=str(tmp_path), MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 20_000      # a real, non-empty figure
    # its one-line result (the claim with its numbers) is printed
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert lines and any(ch.isdigit() for ch in lines[-1]), out.stdout[-2000:]


def test_gallery_script_run_on_its_own_saves_its_figure_and_says_where(tmp_path):
    """No DYNAMICS_GALLERY_OUT, a non-interactive backend: the figure is saved under out/gallery/ of the working
    directory (ignored by git at the repository root), nothing loose in the directory itself."""
    script = os.path.join(ROOT, "docs", "gallery", "plot_depth_greedy.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMICS_GALLERY")}
    env.update(DYNAMICS_GALLERY_SMALL="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = tmp_path / "out" / "gallery" / "depth_greedy.png"
    assert saved.stat().st_size > 20_000 and not list(tmp_path.glob("*.png"))
    assert f"saved {saved}" in out.stdout and "JEPA L=1" in out.stdout


def test_gallery_helpers_live_with_the_gallery():
    import dynamics.plot
    assert not hasattr(dynamics.plot, "gallery_save") and not hasattr(dynamics.plot, "gallery_settings")
    assert os.path.exists(os.path.join(ROOT, "docs", "gallery", "_gallery.py"))


def _checker():
    import importlib.util
    spec = importlib.util.spec_from_file_location("check_rendered", os.path.join(ROOT, "docs", "check_rendered.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_math_check_finds_raw_tex_and_accepts_rendered_math():
    """docs/check_rendered.py (make docs-check renders the built pages in headless Chromium with it): raw
    TeX in the visible text is caught, MathJax output and code blocks are not."""
    c = _checker()
    raw = "<p>the flow $\\dot v = \\lambda v$ and \\(x\\)</p><pre>$ make demo</pre>"
    text, n = c.visible_text(raw)
    found = {m.group(0) for m in c.TEX.finditer(text)}
    assert n == 0 and "\\(" in found and "$\\dot v = \\lambda v$" in found
    assert {m.group(0) for m in c.TEX.finditer("a \\frac{1}{2} b")} == {"\\frac"}
    done = "<p>the flow <mjx-container><mjx-math>v</mjx-math></mjx-container> costs $5</p><code>$x$</code>"
    text, n = c.visible_text(done)
    assert n == 1 and not list(c.TEX.finditer(text))


def test_docs_ship_mathjax_for_offline_reading():
    conf = open(os.path.join(ROOT, "docs", "conf.py")).read()
    assert '"sphinx-mathjax-offline"' in conf
    assert "sphinx-mathjax-offline" in open(os.path.join(ROOT, "pyproject.toml")).read()
    assert "docs-check:" in open(os.path.join(ROOT, "Makefile")).read()
