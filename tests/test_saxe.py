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
    """A non-symmetric Syx whose singular vectors are not Sxx's eigenvectors (Sxx does not commute with Syx^T Syx)
    has no per-mode theory.  The refusal names what fails (Syx's symmetry, that commutator), not "they do not
    commute ... = 0", and does not advise approx='generalized', which would symmetrise Syx (another task for a
    regression); a non-commuting SSL problem still gets that advice."""
    Syx = np.array([[1.0, 0.4], [0.0, 0.5]])
    p = dy.RegressionProblem.from_covariances(np.diag([1.0, 0.6]), Syx, depth=2, init_scale=1e-2, strict=False)
    with pytest.raises(ValueError) as info:
        dy.solve_saxe(p, times=[0.0, 1.0])
    msg = str(info.value)
    assert "Syx is not symmetric (max |Syx - Syx^T| = 0.4" in msg and "singular vectors" in msg
    assert "Sxx commutes with Syx^T Syx; here it does not (normalised commutator 0." in msg
    assert "approx='generalized'" not in msg
    R = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    q = dy.SSLProblem.from_covariances(np.diag([1.0, 0.5]), R @ np.diag([0.8, 0.3]) @ R.T, depth=2, init_scale=1e-2,
                                       strict=False)
    with pytest.raises(ValueError, match="do not commute .* approx='generalized'"):
        dy.solve_jepa(q, times=[0.0, 1.0])


def _singular_problem(depth, Sxx_eigs=(1.0, 1.0, 1.0), seed=0):
    """Syx = U diag(2, 1, 0.5) V^T with random orthogonal U != V (non-symmetric), Sxx = V diag(Sxx_eigs) V^T."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    V = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    s = np.array([2.0, 1.0, 0.5])
    Sxx = (V * np.asarray(Sxx_eigs)) @ V.T
    return dy.RegressionProblem.from_covariances(Sxx, (U * s) @ V.T, depth=depth, init_scale=1e-2), s


@pytest.mark.parametrize("depth", [2, 3])
def test_a_non_symmetric_syx_is_solved_in_its_singular_vectors(depth):
    """Saxe et al.'s theory for any Syx (theory/saxe.md, "Any Syx"): with Sxx = I, Syx = U S V^T, the aligned init
    W_1 = eps^(1/L) U V^T gives per-mode dynamics of u_i^T Wbar v_i with lam = s_i.  The exact flow of the full
    network (rtol 1e-10) agrees with solve_saxe to 1e-6 (measured ~1e-11: the solver's error), every critical time
    too, and the modes end at the singular values."""
    p, s = _singular_problem(depth)
    assert p.has_right_basis and p.diagonalisable and np.allclose(p.lam, s, rtol=1e-12)
    t = np.linspace(0.0, 40.0, 81)
    flow = dy.simulate_saxe(p, method="flow", times=t, rtol=1e-10)
    th = dy.solve_saxe(p, times=t)
    rep = dy.crosscheck(flow, th)
    assert rep.outcome == "passed" and rep.max_rel_error <= 1e-6, str(rep)
    assert np.all(rep.critical_rel_error <= 1e-6)
    np.testing.assert_allclose(th.fixed_point, s, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(flow.modes)[-1], s, rtol=1e-6)
    if depth == 2:       # Saxe's logistic closed form, written out here: u = s e^(2 s t) / (e^(2 s t) - 1 + s / u0)
        e = np.exp(2 * s[None] * t[:, None])
        np.testing.assert_allclose(np.asarray(flow.modes), s * e / (e - 1 + s / 1e-2), rtol=1e-8)


def test_singular_vectors_with_a_non_identity_sxx_and_gd():
    """Sxx = V diag(1, 0.5, 2) V^T commutes with Syx^T Syx: features (u_i, v_i) with sigma2 = (1, 0.5, 2), rho =
    s / sigma2.  The flow agrees with the theory to 1e-6 and gradient descent (lr 0.01) to its 5 % / 2 %."""
    p, s = _singular_problem(2, Sxx_eigs=(1.0, 0.5, 2.0), seed=1)
    np.testing.assert_allclose(p.rho, s / np.array([1.0, 0.5, 2.0]), rtol=1e-10)
    t = np.linspace(0.0, 30.0, 61)
    assert dy.crosscheck(dy.simulate_saxe(p, method="flow", times=t, rtol=1e-10), dy.solve_saxe(p, times=t)
                         ).max_rel_error <= 1e-6
    gd = dy.simulate_saxe(p, lr=0.01, steps=3000, record_every=50)
    assert dy.crosscheck(gd, dy.solve_saxe(p, times=gd.t)).outcome == "passed"
    # and exactly, the per-mode discrete map at the same lr (theory/discrete.md): rounding only
    assert dy.crosscheck(gd, dy.solve_saxe(p, times=gd.t, lr=0.01)).max_rel_error <= 1e-10


def test_a_singular_vector_problem_saves_loads_and_rotates(tmp_path):
    p, s = _singular_problem(2)
    sim = dy.simulate_saxe(p, lr=0.02, steps=200, record_every=50)
    back = dy.load(sim.save(tmp_path / "run.npz"))
    assert back.problem.has_right_basis
    np.testing.assert_array_equal(back.problem.right_basis, p.right_basis)
    again = dy.simulate_saxe(back.problem, lr=0.02, steps=200, record_every=50)
    np.testing.assert_array_equal(again.modes, sim.modes)
    r = p.rotated(key=3)          # inputs and outputs rotated alike: the same modes
    np.testing.assert_allclose(dy.simulate_saxe(r, lr=0.02, steps=200, record_every=50).modes, sim.modes,
                               rtol=1e-10, atol=1e-14)


def test_a_rotated_problem_keeps_one_basis_unless_it_had_two():
    """rotated() turns both sides' bases: a fresh symmetric problem stays one-basis (a replace that carried the
    input side's basis over unrotated would give it a spurious right basis and a wrong init)."""
    p = dy.RegressionProblem.from_spectrum([1.0, 0.5], [1.0, 0.5], depth=2, init_scale=1e-2)
    q = p.rotated(key=1)
    assert not q.has_right_basis
    np.testing.assert_allclose(q.right_basis, q.basis)
    s, _ = _singular_problem(2)
    assert s.rotated(key=2).has_right_basis
