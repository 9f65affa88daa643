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


def test_stability_limit_closed_form_and_warning():
    """max_stable_lr = 1 / (4 gamma_1) at the fixed point (theory/stepwise.md, "Step size"): against the
    autodiff path limit's fixed-point entry (1e-10) and against a NumPy finite-difference Hessian of the
    loss at W* (central differences of the analytic gradient, 1e-6).  Gradient descent at 0.95x reaches
    C = I without a warning; at 1.05x it warns and does not (the top mode oscillates)."""
    import warnings

    from dynamics.families.stepwise import fixed_point_limit
    p = StepwiseProblem.from_spectrum([1.0, 0.5, 0.3], 1e-2, key=1)
    lim = dy.max_stable_lr("stepwise", p)
    assert np.isinf(lim.path_t[-1]) and lim.path_lr[-1] == pytest.approx(fixed_point_limit(p), rel=1e-10)
    assert float(lim) == pytest.approx(0.25, rel=1e-6)       # gamma_1 = 1; binds on approach to the fixed point
    W = (1.0 / np.sqrt(p.gammas))[:, None] * p.V.T
    G = p.Gamma

    def grad(w):
        W_ = w.reshape(W.shape)
        return (4.0 * (W_ @ G @ W_.T - np.eye(W.shape[0])) @ W_ @ G).ravel()
    h, n = 1e-6, W.size
    H = np.array([(grad(W.ravel() + h * e) - grad(W.ravel() - h * e)) / (2 * h) for e in np.eye(n)])
    assert 2.0 / np.linalg.eigvalsh(0.5 * (H + H.T)).max() == pytest.approx(fixed_point_limit(p), rel=1e-6)
    for factor, warns in ((0.95, False), (1.05, True)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            g = dy.simulate_stepwise(p, lr=factor * float(lim), steps=3000, record_every=100, progress=False)
        assert any("above the stability limit" in str(x.message) for x in w) == warns
        assert (np.abs(g.eigenvalues[-1] - 1.0).max() < 1e-8) != warns, g.eigenvalues[-1]
