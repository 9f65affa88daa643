"""Deep linear regression (Saxe et al.): dense simulation vs the exact mode solution."""

import numpy as np
import pytest

import dynamics as dy


def problem(L, eps=1e-2):
    return dy.RegressionProblem.from_spectrum(lam=[1.0, 0.6, 0.3], rho=[1.5, 1.0, 0.8], depth=L,
                                              init_scale=eps, rotate=True, key=2)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_dense_simulation_matches_theory(L):
    """Euler error O(lr lam): the pointwise relative error on a sigmoid is its time shift times the
    log-derivative.  Measured at lr = 0.005, lam <= 1, eps = 1e-2: 1.5e-3 (L = 1), 6.0e-3 (L = 2),
    8.7e-3 (L = 3), below 1e-2; and it halves with lr."""
    prob = problem(L)
    T = 2.5 * dy.critical_times(prob).max()
    errs = []
    for lr in (0.005, 0.0025):
        steps = int(np.ceil(T / lr))
        sim = dy.simulate_saxe(prob, lr=lr, steps=steps, record_every=max(1, steps // 400),
                               init="aligned_gauge", key=1)
        rep = dy.crosscheck(sim, dy.solve_saxe(prob, times=sim.t))
        assert np.all(rep.critical_rel_error < 1e-2), rep.summary()
        errs.append(rep.max_rel_error)
    assert errs[0] < 1e-2
    assert 0.45 < errs[1] / errs[0] < 0.55


def test_two_layer_logistic_closed_form():
    """L = 2: u(t) = rho e^(2 lam t) / (e^(2 lam t) - 1 + rho/u0), Saxe et al. (2014), eq. for a
    balanced two-layer mode; independent of mode_integrals."""
    prob = dy.RegressionProblem.from_spectrum([2.0, 1.0, 0.5], [1.5, 1.0, 0.8], 2, 1e-3)
    t = np.linspace(0, 10, 101)
    th = dy.solve_saxe(prob, times=t)
    lam, rho, u0 = prob.lam, prob.rho, prob.init_scale
    e = np.exp(2 * lam[None, :] * t[:, None])
    np.testing.assert_allclose(th.modes, rho * e / (e - 1 + rho / u0), rtol=1e-11)


def test_one_layer_is_exponential_and_fixed_point():
    prob = dy.RegressionProblem.from_spectrum([2.0, 1.0], [1.5, 0.5], 1, 0.1)
    t = np.linspace(0, 30, 31)
    th = dy.solve_saxe(prob, times=t)
    sig2 = prob.sigma2
    expected = prob.rho - (prob.rho - 0.1) * np.exp(-sig2[None, :] * t[:, None])
    np.testing.assert_allclose(th.modes, expected, rtol=1e-12)
    sim = dy.simulate_saxe(prob, lr=0.05, steps=4000, record_every=400)
    np.testing.assert_allclose(sim.modes[-1], prob.rho, rtol=1e-8)   # the regression solution


def test_paper_units_refused_for_regression():
    prob = problem(2)
    from dynamics.families.linear.family import solve_linear
    from dynamics.families.saxe import SAXE
    with pytest.raises(ValueError, match="paper"):
        solve_linear(SAXE, prob, times=[0.0, 1.0], units="paper")


def test_depth_one_solution_keeps_a_tiny_init():
    """L = 1: psi = 1 - (1 - psi0) e^-tau lost psi0 = 1e-15 to rounding (off by 8e-4 relative at t = 0
    and early on); psi0 e^-tau - expm1(-tau) keeps it: compare with the exact value in float64."""
    P = dy.RegressionProblem.from_spectrum([1.0], [0.5], 1, 1e-15)
    t = np.array([0.0, 1e-14, 1e-12])
    th = dy.solve_saxe(P, times=t)
    psi0 = 1e-15 / 0.5
    tau = t * P.sigma2[0]                      # pref = rho / lam = 1 / sigma2 for L = 1
    exact = 0.5 * (psi0 * np.exp(-tau) - np.expm1(-tau))
    np.testing.assert_allclose(th.modes[:, 0], exact, rtol=1e-12)
    assert abs(th.modes[0, 0] - 1e-15) <= 1e-27


def test_a_non_symmetric_syx_is_refused_naming_the_real_condition():
    """With Sxx = I the covariances commute; what fails for a non-symmetric Syx is its symmetry.  The refusal says
    so (not "they do not commute ... = 0"), and does not advise approx='generalized', which would symmetrise Syx
    (another task for a regression); a non-commuting SSL problem still gets that advice."""
    Syx = np.array([[1.0, 0.4], [0.0, 0.5]])
    p = dy.RegressionProblem.from_covariances(np.eye(2), Syx, depth=2, init_scale=1e-2, strict=False)
    with pytest.raises(ValueError) as info:
        dy.solve_saxe(p, times=[0.0, 1.0])
    msg = str(info.value)
    assert "Syx is not symmetric (max |Syx - Syx^T| = 0.4" in msg and "singular vectors" in msg
    assert "commute" not in msg and "approx='generalized'" not in msg
    R = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    q = dy.SSLProblem.from_covariances(np.diag([1.0, 0.5]), R @ np.diag([0.8, 0.3]) @ R.T, depth=2, init_scale=1e-2,
                                       strict=False)
    with pytest.raises(ValueError, match="do not commute .* approx='generalized'"):
        dy.solve_jepa(q, times=[0.0, 1.0])
