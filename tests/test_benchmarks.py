"""The performance suite's baselines compute exactly what the simulator computes (so the speed ratios
compare equal work): NumPy loop, NumPy stacked and, where torch is installed, PyTorch loop and stacked."""

import os
import sys

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, HERE)

import bench_performance  # noqa: E402


def test_baselines_match_the_simulator():
    # 25 float64 steps of the same closed-form / autograd gradients: rounding only (~1e-14 relative)
    diffs = bench_performance.check_baselines()
    assert {"numpy_loop", "numpy_stacked"} <= set(diffs)
    if bench_performance.torch is not None:
        assert {"torch_loop", "torch_stacked"} <= set(diffs)
    for name, diff in diffs.items():
        assert diff < 1e-10, (name, diff)
