"""Linear BYOL / SimSiam: matrix flow vs per-mode theory, invariants, collapse, alignment, DirectPred."""

import numpy as np
import pytest

import dynamics as dy
from dynamics.families.byol import BYOLProblem


def aligned_byol(**kw):
    args = dict(alpha_p=1.5, eta=0.01, beta=0.5, w0=[0.3, 0.35, 0.4, 0.3], p0=[0.2, 0.25, 0.1, 0.3], key=1)
    return BYOLProblem.aligned([1.0, 0.8, 0.5, 0.3], [0.5, 0.4, 0.6, 0.2], **{**args, **kw})


@pytest.mark.parametrize("beta", [0.5, None])        # BYOL with EMA target, SimSiam
def test_matrix_flow_matches_per_mode_theory(beta):
    """Rotated (dense) aligned problem: the Euler error against the exact per-mode ODE is below
    1e-3 at lr = 0.02 and halves with lr (first order)."""
    pb = aligned_byol(beta=beta)
    errs = []
    for lr in (0.02, 0.01):
        sim = dy.simulate_byol(pb, lr=lr, steps=int(60 / lr), record_every=int(0.5 / lr))
        th = dy.solve_byol(pb, times=sim.t)
        errs.append(max(np.abs(sim.p - th.p).max(), np.abs(sim.s - th.s).max()))
    assert errs[0] < 1e-3
    assert 0.45 < errs[1] / errs[0] < 0.55
    assert np.abs(pb.X - np.diag(np.diag(pb.X))).max() > 0.05       # dense


def test_balancing_invariant():
    """W W^T - W_p^T W_p / alpha_p = e^(-2 eta t) C along the flow (Tian et al. Thm 1), even from an
    unaligned init: the deviation is O(lr) and halves with lr."""
    rng = np.random.default_rng(0)
    pb = aligned_byol(eta=0.05)
    init = {"W": 0.4 * rng.normal(size=(4, 4)), "Wp": 0.3 * rng.normal(size=(4, 4))}
    devs = []
    for lr in (0.01, 0.005):
        sim = dy.simulate_byol(pb, lr=lr, steps=int(20 / lr), record_every=int(1 / lr), init=init)
        C = sim.balance[0]
        scaled = sim.balance * np.exp(2 * pb.eta * sim.t)[:, None, None]
        devs.append(np.abs(scaled - C).max())
    assert devs[0] < 1e-2 and 0.4 < devs[1] / devs[0] < 0.6


def test_time_to_learn_on_the_parabola():
    """SimSiam (tau = 1), s(0) = p(0)^2/alpha_p: the closed-form time to reach p matches the ODE."""
    p0 = np.array([0.05, 0.1, 0.2])
    pb = BYOLProblem.isotropic(3, 0.5, alpha_p=2.0, w0=np.sqrt(p0 ** 2 / 2.0), p0=p0)
    th = dy.solve_byol(pb, times=np.linspace(0, 30, 300001))
    for j in range(3):
        t_closed = dy.byol_time_to_learn(p0[j], 0.5, 1.0, 0.5)
        t_ode = th.t[np.argmax(th.p[:, j] >= 0.5)]
        assert t_closed == pytest.approx(t_ode, abs=2e-4)
    # with weight decay (the three-pole form)
    pb = BYOLProblem.isotropic(1, 0.5, alpha_p=1.0, eta=0.05, w0=0.1, p0=0.1)
    th = dy.solve_byol(pb, times=np.linspace(0, 40, 400001))
    t_ode = th.t[np.argmax(th.p[:, 0] >= 0.5)]
    assert dy.byol_time_to_learn(0.1, 0.5, 1.0, 0.5, eta=0.05) == pytest.approx(t_ode, abs=2e-4)


def test_fixed_points_and_collapse_basin():
    """On the parabola with eta > 0, p(0) just below p_minus collapses to 0, just above goes to p_plus;
    in the full matrix simulation too."""
    pm, pp = dy.byol_fixed_points(1.0, 0.05, 0.5)
    assert pm == pytest.approx(0.05444666, abs=1e-7) and pp == pytest.approx(0.61222001, abs=1e-7)
    p0 = np.array([0.8 * pm, 1.25 * pm])
    pb = BYOLProblem.isotropic(2, 0.5, alpha_p=1.0, eta=0.05, w0=p0, p0=p0, rotate=True, key=3)
    th = dy.solve_byol(pb, times=np.linspace(0, 400, 401))
    assert abs(th.p[-1, 0]) < 1e-3 and th.s[-1, 0] < 1e-6                # collapsed
    assert th.p[-1, 1] == pytest.approx(pp, rel=1e-4)                  # learned
    sim = dy.simulate_byol(pb, lr=0.05, steps=8000, record_every=400)
    assert abs(sim.p[-1, 0]) < 1e-3 and sim.p[-1, 1] == pytest.approx(pp, rel=1e-3)


def test_weight_decay_above_threshold_always_collapses():
    eta = 1.2 * dy.byol_collapse_threshold(1.0, 0.5)
    with pytest.warns(RuntimeWarning, match="collapse is certain"):
        pm, pp = dy.byol_fixed_points(1.0, eta, 0.5)
    assert np.isnan(pm) and np.isnan(pp)
    p0 = np.array([0.05, 0.2, 0.4, 0.6])
    pb = BYOLProblem.isotropic(4, 0.5, alpha_p=1.0, eta=eta, w0=p0, p0=p0, rotate=True, key=1)
    sim = dy.simulate_byol(pb, lr=0.05, steps=10000, record_every=1000)
    assert np.all(sim.s[-1] < 1e-4)


@pytest.mark.parametrize("kw", [dict(predictor="none"), dict(stop_grad=False, beta=None)])
def test_no_predictor_or_no_stop_gradient_collapses(kw):
    """Tian et al. Thm 2: without a predictor (W_p = I) or without the stop-gradient, W -> 0 even
    from a point that learns with both."""
    base = aligned_byol(beta=None, eta=0.0)
    learns = dy.simulate_byol(base, lr=0.02, steps=5000, record_every=500)
    assert learns.s[-1].min() > 0.05
    sim = dy.simulate_byol(base.replace(**kw), lr=0.02, steps=5000, record_every=500)
    assert sim.s[-1].max() < 1e-3 * learns.s[-1].min()


def test_commutator_decays_when_K_is_positive_definite():
    """From an unaligned symmetric init with K > 0, ||[F, W_p]|| decays (Thm 3)."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 4))
    Wp0 = 0.5 * (A + A.T) * 0.3 + 0.5 * np.eye(4)
    pb = BYOLProblem.isotropic(4, 0.5, alpha_p=1.0, eta=0.2, beta=None, symmetric=True)
    sim = dy.simulate_byol(pb, lr=0.01, steps=3000, record_every=100,
                           init={"W": 0.5 * rng.normal(size=(4, 4)), "Wp": Wp0})
    assert np.all(sim.K_min > 0)
    c = sim.commutator
    assert c[-1] < 0.05 * c[0] and c[0] > 1e-2
    # Thm 3's rate: ||[F, W_p]|| <= e^(-2 lambda0 t) ||[F(0), W_p(0)]||, lambda0 = min K
    lam0 = sim.K_min.min()
    assert np.all(c <= np.exp(-2 * lam0 * sim.t) * c[0] * 1.02 + 1e-12)


def test_directpred_learns_like_a_trained_predictor():
    pb = aligned_byol(beta=0.5, eta=0.0)
    trained = dy.simulate_byol(pb, lr=0.02, steps=5000, record_every=500)
    direct = dy.simulate_byol(pb.replace(predictor="directpred", directpred_eps=0.1), lr=0.02, steps=5000,
                              record_every=500)
    assert direct.s[-1].min() > 0.05 and trained.s[-1].min() > 0.05     # both avoid collapse
    # at convergence the running estimate equals F_hat = W (X + X') W^T, whose eigenvalues are
    # s_j (x_j + x'_j) in the aligned basis: p_j = sqrt(.) + eps max(.)
    x, xa = pb.spectra
    fh = direct.s[-1] * (x + xa)
    np.testing.assert_allclose(direct.p[-1], np.sqrt(fh) + 0.1 * fh.max(), rtol=1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(alpha_p=-1.0), "alpha_p must be in"),
    (dict(eta=-0.1), "eta must be in"),
    (dict(beta=0.0), "beta must be in"),
    (dict(X=np.array([[1.0, 2.0], [2.0, 1.0]])), "X must be positive semi-definite"),
    (dict(X_aug=np.eye(3)), "X_aug must have the shape"),
    (dict(predictor="mlp"), "predictor must be one of"),
    (dict(stop_grad=False, beta=0.5), "stop_grad=False"),
    (dict(w0=[0.1, 0.2, 0.3]), "w0 must have shape"),
])
def test_bad_input(kw, match):
    args = dict(X=np.eye(2), X_aug=0.5 * np.eye(2))
    with pytest.raises(ValueError, match=match):
        BYOLProblem(**{**args, **kw})


def test_theory_refuses_what_it_does_not_cover():
    pb = aligned_byol()
    with pytest.raises(ValueError, match="trained predictor"):
        dy.solve_byol(pb.replace(predictor="none"), times=[0.0, 1.0])
    with pytest.raises(ValueError, match="times"):
        dy.solve_byol(pb, times=[1.0, 0.5])
    with pytest.raises(ValueError, match="eta must be >= 0"):
        dy.byol_fixed_points(1.0, -0.1, 0.5)


@pytest.mark.parametrize("beta", [0.5, None])
def test_batched_solver_matches_scipy_per_setting(beta):
    """solve_byol_batch (one vmapped diffrax Dopri8 solve) against solve_byol (scipy DOP853), setting by
    setting: two independent adaptive integrators. Both run at rtol 1e-10 / atol 1e-12, so the states
    agree to ~1e-8 (the global error of either, accumulated over t in [0, 40])."""
    rng = np.random.default_rng(3)
    probs = [aligned_byol(alpha_p=a, eta=e, beta=None if beta is None else b, key=i)
             for i, (a, e, b) in enumerate(zip(rng.uniform(0.5, 2.0, 5), rng.uniform(0.0, 0.05, 5),
                                                rng.uniform(0.2, 1.0, 5)))]
    times = np.linspace(0.0, 40.0, 41)
    batch = dy.solve_byol_batch(probs, times=times)
    assert batch.runs == 5 and batch.p.shape == (5, 41, 4)
    for i, pb in enumerate(probs):
        ref = dy.solve_byol(pb, times=times, rtol=1e-10, atol=1e-12)
        one = batch.run(i)
        for name in ("p", "s", "w_a", "loss"):
            np.testing.assert_allclose(one.fields[name], ref.fields[name], rtol=1e-7, atol=1e-9)


def test_batched_solver_refuses_mixed_settings():
    with pytest.raises(ValueError, match=r"problems\[1\]"):
        dy.solve_byol_batch([aligned_byol(), aligned_byol(beta=None)], times=[0.0, 1.0])
    with pytest.raises(ValueError, match="trained predictor"):
        dy.solve_byol_batch([aligned_byol(predictor="none")], times=[0.0, 1.0])


def _directpred_numpy(pb, lr, steps, rule):
    """A NumPy port of linear BYOL with DirectPred, step by step as the engine runs it: W moves along
    -grad at W_p(aux); then the EMA target and the running estimate F_hat move with the new W, and W_p is
    set from F_hat's eigendecomposition by ``rule``. Returns the recorded p, s of every step."""
    U = pb.basis
    X, S = pb.X, pb.X + pb.X_aug
    W = (U * pb.w0) @ U.T
    Wa = (U * pb.wa0) @ U.T
    Wp = (U * pb.p0) @ U.T
    F = W @ S @ W.T
    ps, ss = [], []
    for _ in range(steps):
        R = Wa @ X - Wp @ W @ S
        W = W - lr * (-(Wp.T @ R) + pb.eta * W)
        Wa = Wa + lr * pb.beta * (W - Wa)
        F = pb.directpred_rho * F + (1 - pb.directpred_rho) * (W @ S @ W.T)
        s, V = np.linalg.eigh(0.5 * (F + F.T))
        s = np.clip(s, 0, None)
        eps = pb.directpred_eps
        p = np.sqrt(s) + eps * s.max() if rule == "paper" else np.sqrt(s / s.max()) + eps
        Wp = (V * p) @ V.T
        ps.append(np.sum(U * (Wp @ U), axis=0))
        ss.append(np.sum(U * ((W @ W.T) @ U), axis=0))
    return np.array(ps), np.array(ss)


@pytest.mark.parametrize("rule", ["paper", "code"])
def test_directpred_rules_match_a_numpy_port(rule):
    """directpred_rule="paper" (p = sqrt(s) + eps max s, the default) and "code" (p = sqrt(s / max s) + eps)
    each follow a NumPy port of the step to rounding (float64, 300 steps)."""
    pb = aligned_byol(beta=0.5, eta=0.0).replace(predictor="directpred", directpred_eps=0.1, directpred_rule=rule)
    sim = dy.simulate_byol(pb, lr=0.02, steps=300, record_every=1)
    p, s = _directpred_numpy(pb, 0.02, 300, rule)
    np.testing.assert_allclose(sim.p[1:], p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sim.s[1:], s, rtol=1e-9, atol=1e-12)


def test_directpred_rules_differ_and_the_paper_rule_is_the_default():
    pb = aligned_byol(beta=0.5, eta=0.0).replace(predictor="directpred", directpred_eps=0.1)
    assert pb.directpred_rule == "paper"
    a = dy.simulate_byol(pb, lr=0.02, steps=2000, record_every=200)
    b = dy.simulate_byol(pb.replace(directpred_rule="code"), lr=0.02, steps=2000, record_every=200)
    assert np.abs(a.p[-1] - b.p[-1]).max() > 1e-2          # not the same rule at another eps
    with pytest.raises(ValueError, match="directpred_rule must be one of"):
        pb.replace(directpred_rule="luckmatters")


def test_stability_limit_against_finite_differences_and_gd():
    """SimSiam with a trained predictor (theory/heads.md, "Step size"): max_stable_lr's limit where the
    aligned theory has settled equals 2 Re mu / |mu|^2 of a NumPy central-difference Jacobian of the field
    (written here from the update rule, the target W differentiated too: gradient descent moves it) to 1e-5.
    Gradient descent at 0.9x ends at the theory's fixed point (1e-8) without a warning; at 1.1x it warns
    and ends away from it (> 1e-3)."""
    import warnings

    p = dy.get_family("byol").example().problem
    lim = dy.max_stable_lr("byol", p)
    X, S = p.X, p.X + p.X_aug
    U = p.basis
    th = dy.solve_byol(p, times=[0.0, float(lim.path_t[-1])])
    W = (U * (np.sign(p.w0) * np.sqrt(th.s[-1]))) @ U.T
    Wp = (U * th.p[-1]) @ U.T
    n = W.shape[0]

    def field(theta):
        W_, P_ = theta[:n * n].reshape(n, n), theta[n * n:].reshape(n, n)
        R = W_ @ X - P_ @ W_ @ S
        gW, gP = -P_.T @ R + p.eta * W_, -p.alpha_p * R @ W_.T + p.eta * P_
        if p.symmetric:
            gP = 0.5 * (gP + gP.T)
        return np.concatenate([gW.ravel(), gP.ravel()])
    theta = np.concatenate([W.ravel(), Wp.ravel()])
    h = 1e-6
    J = np.array([(field(theta + h * e) - field(theta - h * e)) / (2 * h) for e in np.eye(theta.size)]).T
    mu = np.linalg.eigvals(J)
    mu = mu[mu.real > 1e-9]
    assert lim.path_lr[-1] == pytest.approx(np.min(2 * mu.real / np.abs(mu) ** 2), rel=1e-5)
    for factor, warns in ((0.9, False), (1.1, True)):
        lr = factor * float(lim)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            g = dy.simulate_byol(p, lr=lr, steps=int(3 * lim.path_t[-1] / lr), record_every=50, progress=False,
                                 on_divergence="stop")
        assert any("above the stability limit" in str(x.message) for x in w) == warns
        gap = np.abs(g.p[-1] - dy.solve_byol(p, times=[0.0, float(g.t[-1])]).p[-1]).max()
        assert (gap < 1e-8) if not warns else (gap > 1e-3), gap


def test_a_long_horizon_is_solved_with_a_stiff_method_and_agrees():
    """Found by `make fuzz`: solve_byol(times=[1.8e6]) took minutes with DOP853 (stiffness paid step by step).
    Beyond LONG_HORIZON it uses LSODA: a second, and the records at t <= 1e4 agree with DOP853's to 1e-8."""
    import time

    from dynamics.families.byol import LONG_HORIZON
    p = BYOLProblem.isotropic(3, 0.5, eta=0.02, w0=0.3, p0=0.3)
    t0 = time.perf_counter()
    far = dy.solve_byol(p, times=[0.0, 5.0, 50.0, 10 * LONG_HORIZON, 1.8e6])
    assert time.perf_counter() - t0 < 10.0
    near = dy.solve_byol(p, times=[0.0, 5.0, 50.0])
    np.testing.assert_allclose(far.p[:3], near.p, rtol=1e-8, atol=1e-12)


def test_repeated_times_are_answered_not_refused_by_scipy():
    """times may repeat (non-decreasing, as documented): the solver integrates the distinct times and repeats the
    rows (scipy's t_eval refuses repeats; the argument fuzzer found it)."""
    p = dy.BYOLProblem.isotropic(3, 0.5)
    a = dy.solve_byol(p, times=[0.5, 1.0, 1.0, 2.0])
    b = dy.solve_byol(p, times=[0.5, 1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(a.p)[[0, 1, 3]], np.asarray(b.p))
    np.testing.assert_array_equal(np.asarray(a.p)[1], np.asarray(a.p)[2])
