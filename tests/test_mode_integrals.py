"""The closed-form mode integral and its inverse against independent numerics (scipy)."""

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp

from dynamics.exact.mode_integrals import elapsed, psi_at

CASES = [(2, 1), (4, 1), (6, 1), (1, 2), (2, 3), (3, 4), (0, 1), (1, 1), (2, 2), (20, 1)]


def _quad_log(psi0, psi, k, n):
    """tau by quadrature in u = ln psi (smooth, no endpoint singularity), tight tolerances."""
    f = lambda u: np.exp(u * (1 - k)) / (1 - np.exp(n * u))  # noqa: E731
    return quad(f, np.log(psi0), np.log(psi), epsabs=0, epsrel=1e-13, limit=500)[0]


@pytest.mark.parametrize("k,n", CASES)
@pytest.mark.parametrize("psi0,psi", [(1e-3, 2e-3), (0.2, 0.9), (0.5, 0.999), (3.0, 1.1), (1.5, 1.01)])
def test_elapsed_matches_quadrature(k, n, psi0, psi):
    # quadrature relative accuracy ~1e-13; the closed form is exact up to rounding
    # learning branch: ~1e-12 (rounding); shrinking branch at large k: the partial fractions cancel
    # (see test_inverse_roundtrip), ~1e-9 at k = 20
    ref = _quad_log(psi0, psi, k, n)
    got = float(elapsed(psi0, psi, k, n))
    assert got == pytest.approx(ref, rel=1e-10 if psi0 < 1 else 1e-8)


@pytest.mark.parametrize("k,n", CASES)
def test_inverse_roundtrip(k, n):
    psi0 = np.array([1e-4, 0.01, 0.3, 0.9, 1.2, 4.0])
    target = np.where(psi0 < 1, np.minimum(psi0 * 3, 0.9999), 1 + (psi0 - 1) / 3)
    tau = np.asarray(elapsed(psi0, target, k, n))
    psi = np.asarray(psi_at(psi0, tau, k, n)[0])
    # psi(tau) is only as well conditioned as cond = |tau / (psi dtau/dpsi)|: tau from a tiny psi0
    # hardly depends on psi (k = 20: cond ~ 3^19).  Learning branch: allow 1e-11 * cond (rounding of
    # tau times the condition number, with margin).  Shrinking branch (psi > 1): the partial
    # fractions cancel (terms O(1), tau ~ 1e-7 at k = 20), so allow 1e-8 there.
    cond = np.abs(tau * target ** k * (1 - target ** n) / target)
    tol = np.where(psi0 < 1, 1e-11, 1e-8) * np.maximum(cond, 1.0)
    np.testing.assert_array_less(np.abs(psi / target - 1), tol)


@pytest.mark.parametrize("k,n", [(4, 1), (3, 4), (1, 2)])
def test_inverse_matches_ode(k, n):
    """psi(tau) from the inverse equals an independent tight ODE integration of (1)."""
    psi0 = 0.05
    taus = np.linspace(0, 3 * float(elapsed(psi0, 0.5, k, n)), 50)
    sol = solve_ivp(lambda t, p: p ** k * (1 - p ** n), (0, taus[-1]), [psi0], t_eval=taus,
                    rtol=1e-12, atol=1e-14, method="DOP853")
    psi = np.asarray(psi_at(np.full_like(taus, psi0), taus, k, n)[0])
    np.testing.assert_allclose(psi, sol.y[0], rtol=1e-8)


def test_fixed_point_and_limits():
    psi, _, _ = psi_at(np.array([1.0, 0.3, 2.0]), np.array([5.0, 0.0, 1e6]), 2, 1)
    psi = np.asarray(psi)
    assert psi[0] == 1.0            # starting at the fixed point: stays
    assert psi[1] == 0.3            # tau = 0: unchanged
    assert psi[2] == pytest.approx(1.0, abs=1e-12)   # shrinking branch approaches 1 from above
    assert float(elapsed(0.5, 0.4, 2, 1)) == np.inf  # going backwards is never reached
    assert float(elapsed(0.5, 1.2, 2, 1)) == np.inf  # the other branch is never reached


def test_deep_tiny_init_against_quadrature():
    """L = 10 JEPA (k = 20, n = 1) from eps = 1e-8: psi0 = eps^(1/10) / rho, far from psi = 1."""
    for rho in (0.5, 1.0):
        psi0 = 1e-8 ** 0.1 / rho
        ref = _quad_log(psi0, 0.5 ** 0.1, 20, 1)
        assert float(elapsed(psi0, 0.5 ** 0.1, 20, 1)) == pytest.approx(ref, rel=1e-9)
