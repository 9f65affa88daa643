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
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

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
    ("jepa", 1.0, 1000.0, 64, 0.01, [20.0, 36.67, 70.0]),   # rho^(1-2L) underflows: the clock in x (issue 27)
    ("jepa", 1e200, 30.0, 64, 1e-3, None),               # a finite clock, an underflowing prefactor
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


def _critical_reference(obj, lam, rho, L, eps, fraction=0.5):
    """t at which the encoder mode reaches ``fraction`` of its fixed point: the integral of the module
    docstring from v0 = eps^(1/L) to v* = scale fraction^(1/L), in u = ln v at 30 digits, split in 24."""
    mpmath.mp.dps = 30
    k, n, scale = {"jepa": (2 * L, 1, mpmath.mpf(rho)), "mae": (L, L + 1, mpmath.mpf(rho) ** (mpmath.mpf(1) / (L + 1))),
                   "saxe": (L - 1, L, mpmath.mpf(rho) ** (mpmath.mpf(1) / L))}[obj]
    lam, sigma2 = mpmath.mpf(lam), mpmath.mpf(lam) / mpmath.mpf(rho)
    a = mpmath.log(mpmath.mpf(eps)) / L
    b = mpmath.log(scale) + mpmath.log(mpmath.mpf(fraction)) / L
    f = lambda u: mpmath.exp(u) / (lam * mpmath.exp(k * u) - sigma2 * mpmath.exp((k + n) * u))  # noqa: E731
    t = mpmath.quad(f, [a + (b - a) * mpmath.mpf(j) / 24 for j in range(25)])
    mpmath.mp.dps = 40
    return float(t)


@pytest.mark.parametrize("obj", ["jepa", "mae", "saxe"])
@pytest.mark.parametrize("L,eps,rho", [(1, 1e-300, 1e9), (2, 1e-300, 3.0), (16, 1e-80, 50.0), (64, 0.01, 1000.0),
                                       (64, 1e-300, 1e-3), (4, 1e-3, 1e-200)])
def test_critical_times_at_the_edges_of_float64_match_mpmath(obj, L, eps, rho):
    """Depths 1..64, inits to 1e-300, rho from 1e-200 to 1000: dy.critical_times within 1e-9 of the 30-digit
    integral wherever that is a float64 number (the clock's own form where it is representable, the same
    integral in ln v by quadrature where its prefactor or psi0^(1-k) is not: they used to be nan, or inf
    with a false "exceeds the float64 range").  Where the true time is beyond 1.8e308, inf and the warning."""
    build = dy.RegressionProblem.from_spectrum if obj == "saxe" else dy.SSLProblem.from_spectrum
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prob = build([1.0], [rho], L, eps)
        t = float(dy.critical_times(prob, obj)[0])
    scale = {"jepa": rho, "mae": rho ** (1 / (L + 1)), "saxe": rho ** (1 / L)}[obj]
    if np.log(eps) / L >= np.log(scale) + np.log(0.5) / L:
        pytest.skip("starts past half its fixed point (not this test's subject)")
    ref = _critical_reference(obj, 1.0, rho, L, eps)
    if ref > 1.7e308:
        assert np.isinf(t) and any("exceeds the float64 range" in str(w.message) for w in caught)
    else:
        assert t == pytest.approx(ref, rel=1e-9), (obj, L, eps, rho, t, ref)


def test_a_mode_that_has_not_moved_in_float64_stays_at_its_init():
    """JEPA at depth 64 from 1e-80 with rho = 20: its clock is out of range (psi0^(1-2L) ~ 1e323); at t = 1 the
    mode has moved by ~1e-150 of itself: exactly the init in float64 (it used to be 1.8e83).  Saxe at depth 1
    from 1e-300 with rho = 1e9 (psi0 below the normal range): rho (1 - e^(-sigma2 t)), init included."""
    S = dy.SSLProblem.from_spectrum
    assert dy.solve_jepa(S([1.0], [20.0], 64, 1e-80), times=[1.0]).modes[0, 0] == pytest.approx(1e-80, rel=1e-12)
    th = dy.solve_saxe(dy.RegressionProblem.from_spectrum([1.0], [1e9], 1, 1e-300), times=[0.0, 6.931e8, 1e10])
    np.testing.assert_allclose(th.modes[:, 0], [1e-300, 1e9 * -np.expm1(-6.931e8 / 1e9), 1e9 * -np.expm1(-10.0)],
                               rtol=1e-12)


@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(obj=st.sampled_from(["jepa", "mae", "saxe"]), L=st.integers(1, 64), log_eps=st.floats(-300.0, -1.0),
       log_rho=st.floats(-3.0, 3.0))
def test_critical_times_over_the_whole_range_match_mpmath(obj, L, log_eps, log_rho):
    """The same check as above, drawn over whole ranges (hypothesis) rather than at points: depth 1..64,
    init 1e-300..0.1, rho 1e-3..1e3.  Within 1e-9 of the 30-digit integral wherever that is a float64
    number; beyond 1.8e308, inf and the warning."""
    eps, rho = 10.0 ** log_eps, 10.0 ** log_rho
    scale = {"jepa": rho, "mae": rho ** (1 / (L + 1)), "saxe": rho ** (1 / L)}[obj]
    assume(np.log(eps) / L < np.log(scale) + np.log(0.5) / L - 1e-6)     # starts below half its fixed point
    build = dy.RegressionProblem.from_spectrum if obj == "saxe" else dy.SSLProblem.from_spectrum
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = float(dy.critical_times(build([1.0], [rho], L, eps), obj)[0])
    ref = _critical_reference(obj, 1.0, rho, L, eps)
    if ref > 1.7e308:
        assert np.isinf(t) and any("exceeds the float64 range" in str(w.message) for w in caught)
    else:
        assert t == pytest.approx(ref, rel=1e-9), (obj, L, eps, rho, t, ref)
