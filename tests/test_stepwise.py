"""Stepwise SSL (Simon et al. 2023): logistic eigenvalues, step order, random small init."""

import numpy as np
import pytest

import dynamics as dy
from dynamics.families.stepwise import StepwiseProblem


@pytest.fixture(scope="module")
def prob():
    return StepwiseProblem.from_spectrum([1.0, 0.6, 0.35, 0.2], 1e-3, key=1)


def test_aligned_simulation_matches_logistic_closed_form(prob):
    """Dense (rotated Gamma) gradient descent from the aligned init against lambda_j(t): the Euler
    error is O(lr gamma) (logistic rate 8 gamma); below 1e-2 at lr = 1e-3 and halving with lr."""
    T = 1.3 * dy.critical_times(prob).max()
    errs = []
    for lr in (2e-3, 1e-3):
        sim = dy.simulate_stepwise(prob, lr=lr, steps=int(T / lr), record_every=int(0.05 / lr))
        th = dy.solve_stepwise(prob, times=sim.t)
        errs.append(np.abs(sim.eigenvalues - th.eigenvalues).max())
        np.testing.assert_allclose(sim.loss, th.loss, atol=0.05)
    assert errs[1] < 1e-2
    assert 0.45 < errs[1] / errs[0] < 0.55


def test_closed_form_solves_the_mode_ode(prob):
    """s_j(t) = e^(4 g t) / sqrt(s0^-2 + g (e^(8 g t) - 1)) solves ds/dt = 4 g s (1 - g s^2):
    lambda = g s^2 is logistic at rate 8 g (finite-difference check of the ODE)."""
    t = np.linspace(0, 10, 20001)
    lam = dy.solve_stepwise(prob, times=t).modes
    dl = np.gradient(lam, t, axis=0)
    g = prob.gammas
    np.testing.assert_allclose(dl[1:-1], (8 * g * lam * (1 - lam))[1:-1], atol=2e-5)


def test_step_order_and_times(prob):
    ts = dy.critical_times(prob)
    assert np.all(np.diff(ts) > 0)                                   # in order of decreasing gamma
    th = dy.solve_stepwise(prob, times=ts)
    np.testing.assert_allclose(np.diag(th.modes), 0.5, rtol=1e-10)   # half-way at the step time
    approx = dy.critical_times(prob, approximate=True)
    np.testing.assert_allclose(approx, ts, rtol=1e-5)                # tiny init: ln(1/l0 - 1) ~ -ln l0


def test_random_small_init_learns_in_the_same_order(prob):
    sim = dy.simulate_stepwise(prob, lr=4e-3, steps=4000, record_every=10, init="random", runs=3, key=2)
    for r in range(3):
        ev = sim.eigenvalues[r]
        times = [sim.t[np.argmax(ev[:, j] >= 0.5)] for j in range(4)]
        assert np.all(np.diff(times) > 0)
        assert np.all(ev[-1] > 0.9)


def test_bad_input():
    with pytest.raises(ValueError, match="Gamma must be symmetric"):
        StepwiseProblem(np.array([[1.0, 0.5], [0.0, 1.0]]), 1e-3)
    with pytest.raises(ValueError, match="top d"):
        StepwiseProblem(np.diag([1.0, 0.0]), 1e-3)
    with pytest.raises(ValueError, match="d must be <="):
        StepwiseProblem(np.eye(2), 1e-3, d=3)
    with pytest.raises(ValueError, match="init_scale"):
        StepwiseProblem(np.eye(2), 0.0)
    with pytest.raises(ValueError, match="init must be one of"):
        dy.simulate_stepwise(StepwiseProblem(np.eye(2), 1e-3), lr=0.1, steps=10, init="xavier")
