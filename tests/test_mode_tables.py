"""The tabulated inverse clock against independent inversions (safeguarded Newton, asymptotics)."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as dy
from dynamics.exact.mode_integrals import elapsed, psi_at, z_from_psi
from dynamics.exact.mode_tables import clock, clock_table

# (k, n): JEPA L = 1, 3, 10; MAE L = 1, 2, 3; Saxe L = 2, 3; and a k = n = 1 / k = n = 2 flow
CASES = [(2, 1), (6, 1), (20, 1), (1, 2), (2, 3), (3, 4), (2, 2), (1, 1)]


def _table_psi(psi0, tau, k, n):
    z0, _ = z_from_psi(jnp.asarray(psi0))
    return np.exp(np.asarray(clock_table(k, n)(clock(z0, k, n) + tau)))


@pytest.mark.parametrize("k,n", CASES)
def test_table_matches_newton_inverse(k, n):
    """psi from the table = psi from mode_integrals.psi_at (a root find on the difference form of the
    clock, an independent method) over six decades of psi0 and from early times to saturation.
    Tolerance: the table interpolates exact node values with a Chebyshev error < 1e-15; what remains is
    rounding of the clock c = I(psi0) + tau, amplified by psi's sensitivity to c (<= 1/(k-1) relative
    in the power tail), and psi_at's own rounding, which grows with k (k = 20: ~1e-11)."""
    rng = np.random.default_rng(k * 10 + n)
    psi0 = 10 ** rng.uniform(-6, -0.01, 3000)
    t_half = np.asarray(elapsed(psi0, np.full_like(psi0, 0.5), k, n))
    tau = 10 ** rng.uniform(-4, 1.5, psi0.size) * t_half
    ref = np.asarray(psi_at(psi0, tau, k, n)[0])
    got = _table_psi(psi0, tau, k, n)
    np.testing.assert_allclose(got, ref, rtol=5e-11 if k >= 20 else 1e-12, atol=0)


@pytest.mark.parametrize("k,n", CASES)
def test_node_values_solve_the_clock(k, n):
    """The nodes are exact: I(ln psi(c)) = c to rounding, at points between the nodes too (the
    residual of c is tested relative to |c|, the clock's own rounding)."""
    tab = clock_table(k, n)
    c = np.concatenate([-(2.0 ** np.random.default_rng(0).uniform(-6, 60, 400)),
                        np.linspace(-0.5, 0.5, 101), np.linspace(0.02, tab.c_top * 0.9, 200)])
    lnpsi = np.asarray(tab(c))
    psi = np.exp(lnpsi)
    keep = psi < 1 - 1e-9                       # past that the clock is not resolvable from psi
    z = lnpsi[keep] - np.log1p(-psi[keep])      # ln psi straight from the table (psi may underflow)
    back = np.asarray(clock(jnp.asarray(z), k, n))
    # psi carries ~1e-15 relative error; the clock's sensitivity to it is |dI/dln psi| = psi^(1-k)/(1-psi^n)
    with np.errstate(over="ignore"):
        sens = np.exp((1 - k) * lnpsi[keep]) / (1 - psi[keep] ** n)
    np.testing.assert_array_less(np.abs(back - c[keep]), 1e-13 * np.maximum(np.abs(c[keep]), sens))


@pytest.mark.parametrize("k", [2, 3, 6])
def test_far_power_tail_matches_asymptotics(k):
    """Far left, I = -psi^(1-k)/(k-1) (1 + O(psi)), so psi = ((k-1)|c|)^(-1/(k-1)) to relative O(psi):
    checked where psi < 1e-20, i.e. deep in the table's last binades."""
    c = -(10.0 ** np.array([30.0, 100.0, 200.0, 300.0]))
    c = c[((k - 1) * np.abs(c)) ** (-1.0 / (k - 1)) < 1e-20]
    got = np.exp(np.asarray(clock_table(k, 1)(c)))
    np.testing.assert_allclose(got, ((k - 1) * np.abs(c)) ** (-1.0 / (k - 1)), rtol=1e-12)


def test_exponential_tail_and_saturation():
    """k = 1, n = 1: I = ln(psi/(1-psi)) exactly, so psi = sigmoid(c) for every c, including the
    exponential tail (ln psi ~ c) and the saturated side (psi = 1 from c_top on)."""
    tab = clock_table(1, 1)
    c = np.concatenate([-np.logspace(-3, 2.8, 300), np.logspace(-3, 3, 300)])
    lnpsi = np.asarray(tab(c))
    # an absolute error in ln psi is the relative error of psi: 1e-15 of it, plus 1e-13 of |ln psi|
    np.testing.assert_allclose(lnpsi, -np.logaddexp(0.0, -c), rtol=1e-13, atol=1e-15)
    assert np.all(np.asarray(tab(np.array([tab.c_top, 1e10]))) == 0.0)


def test_solve_fast_path_matches_newton_path():
    """solve_jepa takes the table when every feature starts below its fixed point and the Newton path
    otherwise (here forced by one extra feature starting above it); the shared features agree."""
    lam = np.array([0.3, 0.6, 1.0, 0.8])
    rho = np.array([0.5, 0.9, 0.7, 0.05])        # last: init_scale^(1/L) / rho > 1, shrinks
    times = np.linspace(0.0, 400.0, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the problem and the solver both warn about feature 3
        both = dy.solve_jepa(dy.SSLProblem.from_spectrum(lam, rho, 2, 0.01), times=times)
    fast = dy.solve_jepa(dy.SSLProblem.from_spectrum(lam[:3], rho[:3], 2, 0.01), times=times)
    np.testing.assert_allclose(fast.modes, both.modes[:, :3], rtol=1e-12)
    np.testing.assert_allclose(fast.fields["head"], both.fields["head"][:, :3], rtol=1e-12)
    assert fast.modes[0] == pytest.approx(0.01 * np.ones(3), rel=1e-15)    # t = 0 is the init itself
