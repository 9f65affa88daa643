"""Deep linear JEPA and MAE: dense simulation against the exact theory, invariants, headline claims."""

import warnings

import jax
import numpy as np
import pytest

import dynamics as dy
from dynamics.families.jepa import JEPA, MAE
from dynamics.families.saxe import SAXE
from dynamics.families.linear.family import encoder, loss_and_grads, sample_loss
from dynamics.families.linear.network import layer_grads

# A rotated (dense) d = 4 problem.  The Euler error of gradient descent against gradient flow is
# first order: |sim - theory| / theory ~ C lr lam_max, measured C ~ 0.5-1.1 for this spectrum at
# eps = 0.05, so lr = 0.01 gives < 1e-2 with margin and halving lr halves the error.
LAM = [0.5, 0.5, 0.3, 0.4]
RHO = [0.6, 1.0, 0.9, 0.7]
EPS = 0.05
SIM = {"jepa": dy.simulate_jepa, "mae": dy.simulate_mae}
SOLVE = {"jepa": dy.solve_jepa, "mae": dy.solve_mae}


def rotated(L, eps=EPS, lam=LAM, rho=RHO, key=1):
    return dy.SSLProblem.from_spectrum(lam=lam, rho=rho, depth=L, init_scale=eps, rotate=True, key=key)


def run_pair(obj, prob, lr, horizon=2.0, records=400, **kw):
    tc = dy.critical_times(prob, obj)
    steps = int(np.ceil(horizon * np.max(tc[np.isfinite(tc)]) / lr))
    sim = SIM[obj](prob, lr=lr, steps=steps, record_every=max(1, steps // records), **kw)
    return sim, SOLVE[obj](prob, times=sim.t)


@pytest.fixture(scope="module")
def pairs():
    """(objective, depth, lr) -> (simulation, theory), dense gauge init on a rotated problem."""
    out = {}
    for L in (1, 2, 3):
        prob = rotated(L)
        for obj in ("jepa", "mae"):
            for lr in (0.01, 0.005):
                out[(obj, L, lr)] = run_pair(obj, prob, lr, init="aligned_gauge", key=3)
    return out


@pytest.mark.parametrize("obj", ["jepa", "mae"])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_dense_simulation_matches_theory(pairs, obj, L):
    sim, th = pairs[(obj, L, 0.01)]
    # the hidden layers really are dense (not a diagonal network in disguise)
    assert abs(sim.problem.Sxx - np.diag(np.diag(sim.problem.Sxx))).max() > 0.05
    rep = dy.crosscheck(sim, th, rtol=1e-2, ctol=1e-2)
    assert rep.max_rel_error < 1e-2, rep.summary()
    assert np.all(np.isfinite(rep.critical_b))
    assert np.all(rep.critical_rel_error < 1e-2), rep.summary()
    assert rep.passed
    # Euler discretisation: halving lr halves the error (first order), within 10 %
    rep2 = dy.crosscheck(*pairs[(obj, L, 0.005)])
    assert 0.45 < rep2.max_rel_error / rep.max_rel_error < 0.55
    # critical times read off the theory curve agree with the exact formula (records are dense)
    np.testing.assert_allclose(th.critical_times(), dy.critical_times(sim.problem, obj), rtol=2e-3)


@pytest.mark.parametrize("obj", ["jepa", "mae"])
def test_loss_of_theory_and_simulation_agree(pairs, obj):
    sim, th = pairs[(obj, 2, 0.005)]
    scale = np.abs(th.loss).max()
    assert np.abs(sim.loss - th.loss).max() < 5e-3 * scale


@pytest.mark.parametrize("objective,ema,L", [(JEPA, False, 3), (JEPA, True, 3), (MAE, False, 3), (JEPA, False, 1),
                                            (JEPA, False, 2), (MAE, False, 5), (SAXE, False, 2), (SAXE, False, 4)])
def test_closed_form_gradients_equal_autodiff(objective, ema, L):
    """The closed-form gradients (2) equal jax.grad of the sample loss with stop_gradient, evaluated
    on the sample's own second moments (exact identity, up to rounding), for every depth the transposed
    layer recursion of ``layer_grads`` handles (L = 1 has no recursion), with and without a head, also
    batched and compiled as the engine runs them (vmap + jit). EMA targets: JEPA only."""
    prob = rotated(3)
    x, y = prob.sample(64, key=0)
    k = jax.random.split(jax.random.key(1), 3)
    params = {"W": 0.4 * jax.random.normal(k[0], (L, 4, 4))}
    if objective.head:
        params["V"] = 0.4 * jax.random.normal(k[1], (4, 4))
    aux = {"W": 0.4 * jax.random.normal(k[2], (L, 4, 4))} if ema else {}
    n = x.shape[0]
    moments = (x.T @ x / n, y.T @ x / n, y.T @ y / n)
    loss_c, g_c = loss_and_grads(objective, params, aux, *moments)
    loss_a, g_a = jax.value_and_grad(lambda p: sample_loss(objective, p, aux, x, y))(params)
    assert float(loss_c) == pytest.approx(float(loss_a), rel=1e-12)
    assert set(g_c) == set(params)
    for name in params:
        np.testing.assert_allclose(g_c[name], g_a[name], rtol=1e-10, atol=1e-12)
    # layer_grads alone (G = dloss/dWbar given untransposed, prefixes recomputed) gives the same W gradient
    if not ema and objective is JEPA:
        Wbar = encoder(params["W"])
        R = params["V"] @ Wbar @ moments[0] - Wbar @ moments[1]
        np.testing.assert_allclose(layer_grads(params["W"], params["V"].T @ R), g_a["W"], rtol=1e-10, atol=1e-12)
    # two runs at once, compiled: the same gradients run by run
    two = jax.tree_util.tree_map(lambda a: jax.numpy.stack([a, 2 * a]), params)
    _, g_b = jax.jit(jax.vmap(lambda p: loss_and_grads(objective, p, aux, *moments, full_loss=False)))(two)
    single = loss_and_grads(objective, jax.tree_util.tree_map(lambda a: a[1], two), aux, *moments)[1]
    for name in params:
        np.testing.assert_allclose(g_b[name][0], g_c[name], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g_b[name][1], single[name], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("obj", ["jepa", "mae"])
def test_balancedness_is_conserved(obj):
    """W_{a+1}^T W_{a+1} - W_a W_a^T and V^T V - W_L W_L^T are conserved by gradient flow; gradient
    descent changes them by O(lr^2) per step, O(lr) over a fixed time: the drift halves with lr."""
    prob = rotated(3)
    horizon = 2 * dy.critical_times(prob, obj).max()
    drifts = []
    for lr in (0.02, 0.01):
        sim = SIM[obj](prob, lr=lr, steps=int(round(horizon / lr)), record_every=int(round(horizon / 20 / lr)),
                       init="orthogonal", key=5, snapshots=True)
        W, V = sim.param_W, sim.param_V                     # (T, L, d, d), (T, d, d)
        gaps = [np.einsum("tji,tjk->tik", W[:, a + 1], W[:, a + 1]) - np.einsum("tij,tkj->tik", W[:, a], W[:, a])
                for a in range(2)]
        gaps.append(np.einsum("tji,tjk->tik", V, V) - np.einsum("tij,tkj->tik", W[:, -1], W[:, -1]))
        drift = max(np.abs(g - g[:1]).max() for g in gaps)
        moved = np.abs(sim.modes[-1] - sim.modes[0]).max()
        assert moved > 0.1                                   # the run did learn something
        drifts.append(drift)
    assert drifts[0] < 1e-3
    assert 0.4 < drifts[1] / drifts[0] < 0.6


@pytest.mark.parametrize("obj,expected", [("jepa", lambda rho, L: rho ** L),
                                          ("mae", lambda rho, L: rho ** (L / (L + 1)))])
@pytest.mark.parametrize("L", [1, 3])
def test_fixed_points(obj, expected, L):
    """Long runs of the dense simulator converge to the predicted encoder modes (a known fixed point,
    independent of the theory's time course)."""
    prob = rotated(L)
    sim, _ = run_pair(obj, prob, lr=0.05, horizon=8.0, init="aligned_gauge", key=2)
    np.testing.assert_allclose(sim.modes[-1], expected(np.asarray(RHO), L), rtol=1e-6)
    np.testing.assert_allclose(dy.fixed_points(prob, obj), expected(np.asarray(RHO), L), rtol=1e-14)


def test_headline_claims_in_theory():
    """At equal lam, JEPA learns the higher-rho feature first and the gap grows with depth; MAE's
    order follows lam at every depth; beyond a critical depth JEPA prefers a low-lam high-rho feature
    over a high-lam low-rho one, MAE never does."""
    lam, rho = [1.0, 1.0, 0.5, 0.5], [0.4, 1.0, 1.0, 0.4]
    ratios = []
    for L in range(1, 6):
        prob = dy.SSLProblem.from_spectrum(lam, rho, L, 3e-3)
        tj, tm = dy.critical_times(prob, "jepa"), dy.critical_times(prob, "mae")
        assert tj[1] < tj[0] and tj[2] < tj[3]            # equal lam: higher rho first
        ratios.append(tj[0] / tj[1])
        assert max(tm[0], tm[1]) < min(tm[2], tm[3])      # MAE: lam = 1 features before lam = 0.5
        if L >= 4:
            assert tj[2] < tj[0]                          # JEPA flips to rho-order when deep
        if L == 1:
            assert tj[0] < tj[2]                          # ... but not when shallow
    assert all(b > a for a, b in zip(ratios, ratios[1:]))


def test_headline_claims_confirmed_by_simulation(pairs):
    """The orders above, read off the dense simulations' own curves."""
    gaps = []
    for L in (1, 2, 3):
        sim, _ = pairs[("jepa", L, 0.01)]
        tc = sim.critical_times()
        if L >= 2:                            # (at L = 1 the order is lam's, as for MAE)
            assert tc[1] < tc[0]              # lam = 0.5 pair: rho 1.0 before rho 0.6
        gaps.append(tc[0] / tc[1])
        msim, _ = pairs[("mae", L, 0.01)]
        mc = msim.critical_times()
        assert max(mc[0], mc[1]) < mc[2] < mc[3] or max(mc[0], mc[1]) < mc[3] < mc[2]  # lam order
    assert gaps[0] < gaps[1] < gaps[2]


def test_asymptotic_series_approaches_exact():
    """The paper's series drops Theta(log eps): exact / series -> 1 as eps -> 0 (JEPA and MAE)."""
    for obj in ("jepa", "mae"):
        errs = []
        for eps in (1e-3, 1e-5, 1e-7):
            prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 0.6], 3, eps)
            exact = dy.critical_times(prob, obj)
            approx = dy.critical_times_asymptotic(prob, obj)
            errs.append(np.abs(exact / approx - 1).max())
        assert errs[0] > errs[1] > errs[2] and errs[2] < 0.02


def test_paper_units_scale_time_by_depth():
    prob = rotated(3)
    np.testing.assert_allclose(dy.critical_times(prob, "jepa", units="paper"),
                               3 * dy.critical_times(prob, "jepa"), rtol=1e-14)
    t = np.linspace(0, 200, 11)
    a = dy.solve_jepa(prob, times=t, units="paper")
    b = dy.solve_jepa(prob, times=t / 3)
    np.testing.assert_allclose(a.modes, b.modes, rtol=1e-13)


def test_shrinking_regime_is_never_learned():
    """rho <= eps^(1/L): JEPA shrinks the feature (inf critical time + warning); the simulator agrees
    that the mode decreases towards rho^L < eps, while MAE still learns it."""
    L, eps = 2, 0.09                       # eps^(1/L) = 0.3
    with pytest.warns(UserWarning, match="shrinks"):
        prob = dy.SSLProblem.from_spectrum([1.0, 1.0], [0.25, 0.9], L, eps)
    with pytest.warns(RuntimeWarning, match="shrink"):
        tc = dy.critical_times(prob, "jepa")
    assert tc[0] == np.inf and np.isfinite(tc[1])
    assert np.all(np.isfinite(dy.critical_times(prob, "mae")))
    sim = dy.simulate_jepa(prob, lr=0.01, steps=20000, record_every=100)
    assert np.all(np.diff(sim.modes[:, 0]) <= 0) and sim.modes[-1, 0] < eps
    assert sim.modes[-1, 0] == pytest.approx(0.25 ** L, rel=1e-2)
    with pytest.warns(RuntimeWarning):
        th = dy.solve_jepa(prob, times=sim.t)
    assert dy.crosscheck(sim, th).max_rel_error < 1e-2


def test_ema_target():
    """ema = 0 is exactly the stop-gradient run; a slow EMA target keeps the same fixed point."""
    prob = rotated(2)
    a = dy.simulate_jepa(prob, lr=0.05, steps=3000, record_every=100, init="aligned_gauge")
    b = dy.simulate_jepa(prob, lr=0.05, steps=3000, record_every=100, init="aligned_gauge", ema=0.0)
    np.testing.assert_allclose(a.modes, b.modes, rtol=1e-13, atol=0)
    c = dy.simulate_jepa(prob, lr=0.05, steps=40000, record_every=1000, init="aligned_gauge", ema=0.9)
    np.testing.assert_allclose(c.modes[-1], np.asarray(RHO) ** 2, rtol=1e-5)


def test_finite_sample_full_batch_equals_empirical_covariances():
    """data=(x, y) without batch_size is gradient descent on the sample's second moments: the same
    run as the population simulator on a problem built from those moments."""
    prob = rotated(2)
    x, y = prob.sample(500, key=4)
    n = x.shape[0]
    Sxx, Syx, Syy = x.T @ x / n, y.T @ x / n, y.T @ y / n
    emp = dy.SSLProblem.from_covariances(Sxx, Syx, 2, EPS, Syy=Syy, strict=False)
    # the observed modes are measured in each problem's own basis: compare the parameters
    a = dy.simulate_jepa(prob, lr=0.02, steps=500, record_every=50, data=(x, y), snapshots=True)
    b = dy.simulate_jepa(emp, lr=0.02, steps=500, record_every=50, snapshots=True)
    np.testing.assert_allclose(a.param_W, b.param_W, rtol=1e-11, atol=1e-14)


def test_sampler_moments_and_minibatch_sgd():
    prob = rotated(2)
    x, y = prob.sample(200_000, key=0)
    n = x.shape[0]
    # Monte Carlo error of a second moment ~ sqrt(2/n) * scale: 5 sigma
    tol = 5 * np.sqrt(2 / n) * np.abs(prob.joint_covariance()).max()
    assert np.abs(x.T @ x / n - prob.Sxx).max() < tol
    assert np.abs(y.T @ x / n - prob.Syx).max() < tol
    # online minibatch SGD follows the population flow: modes within a few % at the end
    sim = dy.simulate_jepa(prob, lr=0.02, steps=20000, record_every=500, batch_size=512, key=3)
    np.testing.assert_allclose(sim.modes[-1], np.asarray(RHO) ** 2, rtol=0.1)
    again = dy.simulate_jepa(prob, lr=0.02, steps=20000, record_every=500, batch_size=512, key=3)
    np.testing.assert_array_equal(sim.modes, again.modes)        # reproducible from the key


def test_random_unaligned_init_runs_and_theory_refuses_nondiagonalisable():
    prob = rotated(2)
    sim = dy.simulate_jepa(prob, lr=0.02, steps=2000, record_every=100, init="gaussian", key=1, runs=3)
    assert sim.modes.shape == (3, 21, 4) and np.all(np.isfinite(sim.modes))
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    Sxx = A @ A.T + 4 * np.eye(4)
    Syx = np.diag([1.0, 0.5, 0.3, 0.2])
    with pytest.raises(ValueError, match="not simultaneously diagonalisable"):
        dy.SSLProblem.from_covariances(Sxx, Syx, 2, 0.01)
    with pytest.warns(UserWarning, match="init_scale"):     # rho^L < eps for the weak features
        p = dy.SSLProblem.from_covariances(Sxx, Syx, 2, 0.01, strict=False)
    dy.simulate_jepa(p, lr=0.01, steps=10, record_every=5)       # the simulator accepts it
    with pytest.raises(ValueError, match="simultaneously diagonalisable"):
        dy.solve_jepa(p, times=[0.0, 1.0])


def test_from_covariances_recovers_spectrum():
    prob = rotated(2)
    again = dy.SSLProblem.from_covariances(prob.Sxx, prob.Syx, 2, EPS, Syy=prob.Syy)
    np.testing.assert_allclose(np.sort(again.rho), np.sort(RHO), rtol=1e-10)
    np.testing.assert_allclose(np.sort(dy.critical_times(again, "jepa")),
                               np.sort(dy.critical_times(prob, "jepa")), rtol=1e-8)


def test_generative_models():
    s, eta, g = np.array([1.0, 0.6]), np.array([1.5, 0.0]), np.array([0.9, 0.5])
    st = dy.SSLProblem.from_generative("static", s, eta, 2, 0.01)
    np.testing.assert_allclose(st.lam, s)
    np.testing.assert_allclose(st.rho, s / (s + eta))
    tp = dy.SSLProblem.from_generative("temporal", s, eta, 2, 0.01, gamma=g)
    np.testing.assert_allclose(tp.lam, g * s)
    np.testing.assert_allclose(tp.rho, g * s / (s + eta))
    # noise leaves MAE's lam-order unchanged and delays the noisy feature under deep JEPA
    deep = st.with_depth(3)
    assert dy.critical_times(deep, "mae")[0] < dy.critical_times(deep, "mae")[1]
    assert dy.critical_times(deep, "jepa")[1] < dy.critical_times(deep, "jepa")[0]


def test_divergence_stops_with_a_clear_message():
    with pytest.warns(UserWarning, match="init_scale"):
        prob = rotated(2, eps=0.5)
    with pytest.raises(dy.DivergenceError, match=r"step \d+.*smaller learning rate") as info:
        dy.simulate_mae(prob, lr=20.0, steps=5000, record_every=1)
    part = info.value.partial
    assert isinstance(part, dy.Trajectory) and part.status == -1
    assert np.all(np.isfinite(part.modes)) and np.all(np.isfinite(part.loss))
    assert part.t.size == info.value.step                       # records 0 .. step-1 are kept
    stopped = dy.simulate_mae(prob, lr=20.0, steps=5000, record_every=1, on_divergence="stop")
    assert stopped.status == -1 and "smaller learning rate" in stopped.message


def test_float32_runs_close_to_float64():
    prob = rotated(2)
    a = dy.simulate_jepa(prob, lr=0.02, steps=4000, record_every=200, init="aligned_gauge")
    b = dy.simulate_jepa(prob, lr=0.02, steps=4000, record_every=200, init="aligned_gauge", dtype=np.float32)
    assert b.modes.dtype == np.float32
    np.testing.assert_allclose(b.modes, a.modes, rtol=1e-3)


def test_warning_free_theory_for_learnable_problem():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prob = rotated(3)
        dy.solve_jepa(prob, times=[0.0, 10.0])
        dy.critical_times(prob, "mae")


def test_encoder_product_order():
    W = np.stack([np.diag([2.0, 1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])])
    np.testing.assert_allclose(encoder(W), W[1] @ W[0])


def test_float32_warns_when_the_run_is_beyond_its_resolution():
    """At eps = 1e-8, L = 3 the first JEPA steps change the modes by ~lr * eps^(5/3) relative:
    rounded away in float32 (the modes never move), so the simulator warns; float64 does learn."""
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 3, 1e-8)
    with pytest.warns(RuntimeWarning, match="float32 cannot resolve"):
        b = dy.simulate_jepa(prob, lr=0.05, steps=200, record_every=100, dtype=np.float32)
    assert np.all(b.modes[-1] == b.modes[0])                      # indeed frozen
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = dy.simulate_jepa(prob, lr=0.05, steps=200, record_every=100)
    assert np.all(a.modes[-1] > a.modes[0])
    th = dy.solve_jepa(prob, times=b.t)
    with pytest.warns(RuntimeWarning, match="beyond float32"):
        dy.crosscheck(b, th, rtol=1e-8)


def test_a_feature_off_the_learning_branch_does_not_slow_or_change_the_others():
    """Mixed problem: a feature at or above its fixed point takes the Newton path alone; the others
    keep the tabulated inverse and give the same values as in a problem without it."""
    import warnings
    t = np.linspace(0, 300, 50)
    lam, rho = np.array([1.0, 0.6, 0.3]), np.array([0.9, 0.5, 0.01])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixed = dy.solve_jepa(dy.SSLProblem.from_spectrum(lam, rho, 3, 1e-2), times=t)
    alone = dy.solve_jepa(dy.SSLProblem.from_spectrum(lam[:2], rho[:2], 3, 1e-2), times=t)
    np.testing.assert_allclose(mixed.modes[:, :2], alone.modes, rtol=1e-12)
    assert mixed.modes[-1, 2] < mixed.modes[0, 2]           # the third shrinks (rho^L < eps)
