"""The exact theory against an independent 40-digit reference at large depth and extreme inits.

The per-layer mode v of a feature obeys dv/dt = lam v^k - sigma2 v^(k+n) (theory/jepa.md sec. 3; JEPA
k = 2L, n = 1; MAE k = L, n = L + 1).  So the time to go from v0 = eps^(1/L) to v is the integral
t(v) = int_v0^v dv' / (lam v'^k - sigma2 v'^(k+n)), evaluated here with mpmath at 40 digits.  The solver's
value at time t must give back t: |t(v_solver(t)) - t| <= 1e-8 t.  This covers the shrinking branch at
depth 50 (init 0.999, rho 0.3), which the closed-form clock used to get wrong (it returned the fixed
point: the elapsed times there are ~1e-52 of its O(1) terms), and a tiny init on the learning branch."""

import warnings

import mpmath
import numpy as np
import pytest

import dynamics as dy

mpmath.mp.dps = 40


def _t_of_v(lam, sigma2, k, n, v0, v):
    f = lambda x: 1 / (lam * x ** k - sigma2 * x ** (k + n))  # noqa: E731
    v0, v = mpmath.mpf(v0), mpmath.mpf(v)
    pts = [v0 + (v - v0) * mpmath.mpf(j) / 8 for j in range(9)]
    return float(mpmath.quad(f, pts))


@pytest.mark.parametrize("obj,lam,rho,L,eps,times", [
    ("jepa", 0.5, 0.3, 50, 0.999, [1.0, 10.0]),          # shrinking branch, depth 50 (issue 17's case)
    ("jepa", 0.5, 0.3, 10, 0.5, [1.0, 10.0, 100.0]),    # shrinking branch, depth 10
    ("mae", 0.5, 0.3, 10, 0.5, [0.1, 1.0]),             # MAE above its fixed point
    ("jepa", 1.0, 1.0, 10, 1e-8, None),                  # learning branch, tiny init at depth 10
    ("mae", 1.0, 0.8, 6, 1e-12, None),
])
def test_theory_matches_a_40_digit_reference(obj, lam, rho, L, eps, times):
    prob = dy.SSLProblem.from_spectrum([lam], [rho], L, eps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if times is None:       # around the transition: 0.3, 0.5 and 0.9 of the critical time
            tc = float(dy.critical_times(prob, obj)[0])
            times = [0.3 * tc, 0.5 * tc, 0.9 * tc]
        th = (dy.solve_jepa if obj == "jepa" else dy.solve_mae)(prob, times=[0.0] + list(times))
    sigma2 = lam / rho if obj == "jepa" else lam / rho       # rho = lam / sigma2 (theory/jepa.md)
    k, n = (2 * L, 1) if obj == "jepa" else (L, L + 1)
    v0 = eps ** (1.0 / L)
    # the encoder mode is wbar = v^L (JEPA) and V wbar's per-layer mode v (MAE: wbar = v^L as well)
    v = np.abs(th.modes[1:, 0]) ** (1.0 / L) if obj == "jepa" else np.abs(th.head[1:, 0])
    for t, vt in zip(times, v):
        back = _t_of_v(lam, sigma2, k, n, v0, vt)
        assert abs(back - t) <= 1e-8 * t, (obj, L, eps, t, vt, back)


def test_a_critical_time_beyond_float64_is_flagged_not_called_never():
    prob = dy.SSLProblem.from_spectrum([1.0], [1.0], 10, 1e-300)
    with pytest.warns(RuntimeWarning, match="exceeds the float64 range"):
        assert np.isinf(dy.critical_times(prob, "jepa")[0])


def test_a_simulation_whose_layer_products_underflow_warns():
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 1, 1e-300)
    with pytest.warns(RuntimeWarning, match=r"1e-600\) fall below float64's normal range"):
        dy.simulate_mae(prob, lr=0.1, steps=5, progress=False)
