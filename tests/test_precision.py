"""float32 as a first-class choice: where it cannot resolve a run, every family says so."""

import warnings

import numpy as np
import pytest

import dynamics as dy


def test_float32_resolution_warning_for_a_family_without_its_own_check():
    """The generic check (one float64 gradient at the init): a relative update lr |g| / |theta| below
    float32's resolution (here lr = 1e-9 on the stepwise model) warns; a resolvable run does not."""
    ps = dy.StepwiseProblem.from_spectrum([1.0, 0.6, 0.35, 0.2], 1e-3, key=1)
    with pytest.warns(RuntimeWarning, match="float32 cannot resolve this run.*stepwise"):
        dy.simulate_stepwise(ps, lr=1e-9, steps=10, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sim = dy.simulate_stepwise(ps, lr=1e-2, steps=10, dtype=np.float32)
    assert sim.settings["dtype"] == "float32"


def test_float32_resolution_warning_for_the_deep_linear_modes():
    """The linear families' own check: the slowest mode's first relative change at a tiny init."""
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 3, 1e-6)
    with pytest.warns(RuntimeWarning, match="float32 cannot resolve this run"):
        dy.simulate_jepa(P, lr=0.01, steps=10, dtype=np.float32)
