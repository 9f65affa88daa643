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
