"""Exact theory from balanced, non-aligned, non-small inits (theory/saxe.md): ``solve_saxe(problem, times=,
init=)`` -- the two-layer lambda-balanced flow in closed form (``linear.riccati``) and the end-to-end flow of a
zero-balanced network of any depth (``linear.balanced_flow``, Arora, Cohen & Hazan 2018).

Tolerances and why they hold (float64): the closed form is exact, evaluated in a normalised form whose factors
are all bounded, so against the library's exact flow at rtol 1e-12 it agrees to ~1e-13 (asserted 1e-8, the
issue's bound, a margin of 1e4); against an independent integration of the matrix Riccati equation by scipy's
DOP853 at rtol 1e-12 also to 1e-8; the end-to-end ODE is exact and integrated at rtol 1e-12, so against the
network's flow it agrees to ~1e-11 (asserted 1e-6, the issue's bound); gradient descent at lr 0.005 is first
order (5 % / 2 %).
"""

import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dynamics as dy
from dynamics.families.linear.riccati import two_layer_flow


def _problem(seed=1, d=3):
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((d, d)) * 0.8
    S = 0.5 * (S + S.T) + 2.0 * np.eye(d)          # symmetric, positive definite: det > 0
    return dy.RegressionProblem.from_covariances(np.eye(d), S, depth=2, init_scale=0.3)


@pytest.mark.parametrize("lam", [0.0, 0.4, -0.01])
def test_riccati_equals_the_exact_flow_from_random_balanced_inits(lam):
    """Random, non-small (per-layer scale 0.55), non-aligned lambda-balanced inits: the closed form against the
    exact flow of the full network to <= 1e-8 over t in [0, 12] (every record)."""
    p = _problem()
    init = dy.inits.balanced(p, lam, key=3)
    W = init["W"]
    np.testing.assert_allclose(W[1].T @ W[1] - W[0] @ W[0].T, lam * np.eye(3), atol=1e-12)
    t = np.linspace(0.0, 12.0, 49)
    th = dy.solve_saxe(p, times=t, init=init)
    flow = dy.simulate_saxe(p, method="flow", times=t, rtol=1e-12, init=init)
    assert th.settings["theory"].startswith("two-layer lambda-balanced") and th.settings["lambda"] == pytest.approx(lam)
    err = np.abs(np.asarray(th.modes) - np.asarray(flow.modes)).max() / np.abs(np.asarray(flow.modes)).max()
    assert err <= 1e-8, err
    assert dy.crosscheck(flow, th).outcome == "passed"
    np.testing.assert_allclose(np.asarray(th.loss), np.asarray(flow.loss), rtol=1e-7, atol=1e-12)


def test_riccati_against_an_independent_integration_and_at_long_times():
    """P = Q Q^T obeys dP/dt = F P + P F - P^2 (F = [[-lam/2 I, S^T], [S, lam/2 I]]): scipy's DOP853 on that
    equation (not the library's network flow) gives the same Wbar to 1e-8; at t = 500 the closed form is finite
    and at the fixed point S (the naive e^{Ft} form would overflow there)."""
    rng = np.random.default_rng(4)
    d, lam = 2, 0.3
    S = np.array([[1.5, 0.4], [-0.2, 0.8]])          # non-symmetric, det > 0
    W1 = 0.6 * rng.standard_normal((d, d))
    if np.linalg.det(W1) < 0:
        W1[0] *= -1
    w, Q = np.linalg.eigh(W1 @ W1.T + lam * np.eye(d))
    W2 = (Q * np.sqrt(w)) @ Q.T                      # W2^T W2 = W1 W1^T + lam I, det(W2 W1) > 0
    F = np.block([[-lam / 2 * np.eye(d), S.T], [S, lam / 2 * np.eye(d)]])
    Q0 = np.concatenate([W1.T, W2])
    t = np.linspace(0.0, 8.0, 17)
    sol = solve_ivp(lambda _, y: (F @ y.reshape(2 * d, 2 * d) + y.reshape(2 * d, 2 * d) @ F
                                  - y.reshape(2 * d, 2 * d) @ y.reshape(2 * d, 2 * d)).ravel(),
                    (0.0, 8.0), (Q0 @ Q0.T).ravel(), method="DOP853", t_eval=t, rtol=1e-12, atol=1e-14)
    ref = sol.y.T.reshape(-1, 2 * d, 2 * d)[:, d:, :d]
    Wbar, got_lam = two_layer_flow(W1, W2, S, t)
    assert got_lam == pytest.approx(lam, abs=1e-12)
    assert np.abs(Wbar - ref).max() <= 1e-8 * np.abs(ref).max()
    late, _ = two_layer_flow(W1, W2, S, np.array([50.0, 500.0]))
    assert np.all(np.isfinite(late)) and np.abs(late[-1] - S).max() <= 1e-12


def test_a_named_init_with_its_key_is_the_simulators_draw_and_gd_is_first_order():
    p = _problem()
    t = np.linspace(0.0, 6.0, 25)
    for key in range(20):       # a draw with det(W2 W1(0)) of det(S)'s sign (about half of them; the rest refused)
        try:
            th = dy.solve_saxe(p, times=t, init="orthogonal", key=key)     # orthogonal layers: zero-balanced
            break
        except ValueError as exc:
            assert "opposite signs" in str(exc)
    flow = dy.simulate_saxe(p, method="flow", times=t, rtol=1e-12, init="orthogonal", key=key)
    assert th.settings["init"] == "orthogonal" and th.settings["lambda"] == pytest.approx(0.0, abs=1e-12)
    assert np.abs(np.asarray(th.modes) - np.asarray(flow.modes)).max() <= 1e-8
    init = dy.inits.balanced(p, 0.0, key=3)
    gd = dy.simulate_saxe(p, lr=0.005, steps=2400, record_every=100, init=init)
    assert dy.crosscheck(gd, dy.solve_saxe(p, times=gd.t, init=init)).outcome == "passed"


def test_what_the_closed_form_does_not_cover_is_refused_naming_why():
    p = _problem()
    t = [0.0, 1.0]
    not_small = "the layers are not balanced.*not small enough for the small-init stage theory"
    with pytest.raises(ValueError, match=not_small):      # a gaussian init at scale 1
        dy.solve_saxe(p.with_init_scale(1.0), times=t, init="gaussian", key=1)
    with pytest.raises(ValueError, match="the layers are not balanced"):    # at depth 3 no stage theory either
        dy.solve_saxe(p.with_depth(3), times=t, init="gaussian", key=1)
    q = dy.RegressionProblem.from_covariances(np.diag([1.0, 0.5, 2.0]), np.diag([1.0, 0.4, 1.5]), depth=2,
                                              init_scale=0.3)
    with pytest.raises(ValueError, match="whitened input, Sxx = I"):
        dy.solve_saxe(q, times=t, init=dy.inits.balanced(q, 0.3, key=0))       # lambda != 0 at Sxx != I
    with pytest.raises(ValueError, match="lr .* is of the aligned init"):
        dy.solve_saxe(p, times=t, init=dy.inits.balanced(p, key=0), lr=0.01)
    with pytest.raises(ValueError, match="is drawn from a key"):
        dy.solve_saxe(p, times=t, init="orthogonal")
    with pytest.raises(ValueError, match="key=3 without init"):
        dy.solve_saxe(p, times=t, key=3)
    init = dy.inits.balanced(p, 0.0, key=3)
    bad = {"W": init["W"].copy()}
    bad["W"][1][0] *= -1                              # det(W2 W1) < 0 < det(S): Wbar must pass a singular matrix
    with pytest.raises(ValueError, match="opposite signs"):
        dy.solve_saxe(p, times=t, init=bad)
    with pytest.raises(ValueError, match="lam = -9 is below"):
        dy.inits.balanced(p, -9.0, key=0)


def _noncommuting(depth):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 3))
    B = rng.standard_normal((3, 3))
    Sxx = A @ A.T / 3 + 0.5 * np.eye(3)
    Syx = 0.5 * (B + B.T) + 1.5 * np.eye(3)
    return dy.RegressionProblem.from_covariances(Sxx, Syx, depth=depth, init_scale=0.1, strict=False)


def test_end_to_end_flow_of_a_balanced_deep_network_on_non_commuting_covariances():
    """Depth 3, Sxx and Syx far from commuting (normalised commutator 0.41), a random zero-balanced init: the
    end-to-end ODE dW/dt = -sum_j (W W^T)^((j-1)/N) grad l(W) (W^T W)^((N-j)/N) against the exact flow of the
    three layers to <= 1e-6 (measured ~1e-11)."""
    p = _noncommuting(3)
    assert not p.diagonalisable and dy.commutator(p) > 0.3
    init = dy.inits.balanced(p, 0.0, key=2)
    t = np.linspace(0.0, 20.0, 41)
    th = dy.solve_saxe(p, times=t, init=init)
    flow = dy.simulate_saxe(p, method="flow", times=t, rtol=1e-12, init=init)
    assert th.settings["theory"].startswith("end-to-end flow of a balanced network")
    err = np.abs(np.asarray(th.modes) - np.asarray(flow.modes)).max() / np.abs(np.asarray(flow.modes)).max()
    assert err <= 1e-6, err
    assert dy.crosscheck(flow, th).outcome == "passed"


def test_end_to_end_flow_against_closed_forms():
    """Independent checks of the reduced ODE: depth 1 is linear, W(t) = W* + (W0 - W*) e^{-Sxx t} (scipy's expm);
    depth 2 with Sxx = I and zero balance is the Riccati closed form (another derivation)."""
    from scipy.linalg import expm
    from dynamics.families.linear.balanced_flow import end_to_end_flow
    p = _noncommuting(1)
    W0 = np.array([[0.3, -0.1, 0.2], [0.0, 0.4, 0.1], [0.2, 0.1, -0.3]])
    Wstar = np.linalg.solve(p.Sxx, p.Syx.T).T
    t = np.array([0.0, 0.5, 2.0, 7.0])
    got = end_to_end_flow(W0, p.Sxx, p.Syx, 1, t)
    ref = np.stack([Wstar + (W0 - Wstar) @ expm(-p.Sxx * tk) for tk in t])
    assert np.abs(got - ref).max() <= 1e-9
    q = _problem()
    init = dy.inits.balanced(q, 0.0, key=3)
    W1, W2 = init["W"]
    riccati, _ = two_layer_flow(W1, W2, q.Syx, t)
    assert np.abs(end_to_end_flow(W2 @ W1, q.Sxx, q.Syx, 2, t) - riccati).max() <= 1e-8


def test_a_deep_lambda_balanced_init_is_refused_naming_zero_balance():
    p = _noncommuting(3)
    with pytest.raises(ValueError, match="needs zero balance"):
        dy.solve_saxe(p, times=[0.0, 1.0], init=dy.inits.balanced(p, 0.2, key=0))


# ------------------------------------------------------------------ small random inits: the two-matrix stage theory
def test_effective_init_is_the_growing_part_of_the_linearised_flow_written_out_with_scipy_expm():
    """The derivation of small_init.effective_init: the linearised two-layer flow dW1/dt = W2^T S, dW2/dt = S W1^T
    integrated exactly by scipy's expm (no library code) is, after a few 1/s, e^(s_i t) times the growing part
    (W1_eff v_i = W2_eff^T u_i = c_i / 2), and that part is exactly zero-balanced."""
    from scipy.linalg import expm

    from dynamics.families.linear.small_init import effective_init, effective_modes
    rng = np.random.default_rng(0)
    d, s = 3, np.array([1.5, 1.0, 0.6])
    U, V = np.linalg.qr(rng.normal(size=(d, d)))[0], np.linalg.qr(rng.normal(size=(d, d)))[0]
    S = (U * s) @ V.T
    W1, W2 = 1e-3 * rng.normal(size=(d, d)), 1e-3 * rng.normal(size=(d, d))
    n = d * d
    A = np.zeros((2 * n, 2 * n))            # the linear system on z = (vec W1, vec W2), row-major
    for k in range(n):
        E = np.zeros(n)
        E[k] = 1.0
        E = E.reshape(d, d)
        A[n:, k] = (S @ E.T).ravel()          # dW2 += S W1^T
        A[:n, n + k] = (E.T @ S).ravel()      # dW1 += W2^T S
    t = 8.0
    z = expm(A * t) @ np.concatenate([W1.ravel(), W2.ravel()])
    W1t, W2t = z[:n].reshape(d, d), z[n:].reshape(d, d)
    W1e, W2e = effective_init(W1, W2, S)
    # column i of W1 V grows as e^(s_i t) x (c_i / 2); the decaying part is e^(-2 s_i t) ~ 1e-4 smaller here
    np.testing.assert_allclose(W1t @ V, (W1e @ V) * np.exp(s * t), rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(W2t.T @ U, (W2e.T @ U) * np.exp(s * t), rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(W2e.T @ W2e, W1e @ W1e.T, atol=1e-18)
    C = W1 @ V + W2.T @ U
    np.testing.assert_allclose(effective_modes(W1e, W2e, U, V), np.sum(C * C, axis=0) / 4, rtol=1e-12)


def test_small_gaussian_inits_cross_check_against_the_flow_for_saxe_over_seeds():
    """solve_saxe(init="gaussian", key=) at depth 2: the stage theory, against the exact flow from the same draw
    over four seeds: crosscheck passes at the theory's own stated errors (~5 % on the critical times at this init), the order
    is the flow's, every critical time within the stated error, and the measured error is far below it (< 1 %)."""
    prob = dy.RegressionProblem.from_spectrum([2.0, 1.3, 0.8, 0.5], [1.0, 0.8, 0.9, 0.6], 2, 1e-3, rotate=True, key=1)
    t = np.concatenate([[0.0], np.geomspace(1e-2, 25.0, 200)])
    sims = dy.simulate_saxe(prob, method="flow", times=t, init="gaussian", key=[0, 1, 2, 3], rtol=1e-9)
    for r in range(4):
        sim = sims.run(r)
        th = dy.solve_saxe(prob, times=t, init="gaussian", key=r)          # the same draw as run r
        info = th.settings["approximation"]
        assert "stage" in th.settings["theory"] and info["error_estimate"] < 0.1
        rep = dy.crosscheck(sim, th)
        assert rep.passed, str(rep)
        assert np.array_equal(np.argsort(rep.critical_a), np.argsort(rep.critical_b))
        err = np.abs(rep.critical_a - rep.critical_b) / rep.critical_b
        assert np.all(err <= info["error_estimate"]) and err.max() < 0.01
    with pytest.raises(ValueError, match="not small enough for the small-init stage theory"):
        dy.solve_saxe(prob.with_init_scale(0.5), times=t, init="gaussian", key=0)


def test_the_stage_theory_needs_no_common_basis():
    """The linear phase sees only Syx (its SVD) and the balanced end-to-end flow takes any Sxx: from a small gaussian
    init on covariances in independent random bases (normalised commutator 0.15) the stage theory passes against
    the exact flow, critical times within 1 % (stated: ~5 %)."""
    rng = np.random.default_rng(3)
    Q1, Q2 = (np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(2))
    Sxx, Syx = (Q1 * [2.0, 1.0, 1.5]) @ Q1.T, (Q2 * [1.5, 0.9, 0.4]) @ Q2.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob = dy.RegressionProblem.from_covariances(Sxx, Syx, 2, 1e-3, strict=False)
    assert dy.commutator(prob) > 0.1
    t = np.concatenate([[0.0], np.geomspace(1e-2, 40.0, 200)])
    sim = dy.simulate_saxe(prob, method="flow", times=t, init="gaussian", key=2, rtol=1e-9)
    th = dy.solve_saxe(prob, times=t, init="gaussian", key=2)
    rep = dy.crosscheck(sim, th)
    assert rep.passed, str(rep)
    fin = np.isfinite(rep.critical_b)
    assert fin.sum() >= 2 and np.max(np.abs(rep.critical_a[fin] - rep.critical_b[fin]) / rep.critical_b[fin]) < 0.01


def test_mae_at_depth_one_is_the_two_layer_network_and_follows_its_closed_form():
    """MAE at depth 1 (encoder W, decoder V) is the two-layer regression V W of the same covariances: from a
    lambda-balanced init its product's modes u_i^T V W u_i follow the matrix Riccati closed form (solve_saxe on the
    regression problem with init {"W": [W, V]}) to the flow's tolerance (1e-8 asserted at rtol 1e-11).  Its encoder's
    own modes u_i^T W u_i depend on the hidden units' gauge and have no theory from such an init."""
    lam = [2.0, 1.2, 0.7]
    reg = dy.RegressionProblem.from_spectrum(lam, lam, 2, 0.3, rotate=True, key=2)   # rho = lam: Sxx = I
    ssl = dy.SSLProblem.from_spectrum(lam, lam, 1, 0.3, basis=reg.basis)
    init = dy.inits.balanced(reg, 0.4, key=3)
    t = np.linspace(0.0, 6.0, 25)
    th = dy.solve_saxe(reg, times=t, init=init)
    assert "Riccati" in th.settings["theory"]
    mae = dy.simulate_mae(ssl, method="flow", times=t, rtol=1e-11, snapshots=True,
                          init={"W": init["W"][:1], "V": init["W"][1]})
    W, V = np.asarray(mae.fields["param_W"])[:, 0], np.asarray(mae.fields["param_V"])
    U = reg.basis
    product = np.einsum("ji,tjk,tkl,li->ti", U, V, W, U)
    assert np.abs(product - th.modes).max() < 1e-8 * np.abs(th.modes).max()
