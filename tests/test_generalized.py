"""Beyond commuting covariances (theory/generalized.md): generalised modes, the labelled approximation,
exact fixed points, the validity map's thresholds, samples in, image views, the finite-sample study."""

import json
import os
import warnings

import numpy as np
import pytest

import dynamics as dy
from dynamics.families.linear.generalized import VALIDITY, generalized_eig
from dynamics.families.linear.validity import measure, noncommuting_problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_pair(d=4, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    Sxx = A @ A.T / d + 0.5 * np.eye(d)
    B = rng.normal(size=(d, d))
    Syx = Sxx @ np.diag(np.linspace(1.0, 0.6, d)) + scale * (B + B.T) / d
    return Sxx, 0.5 * (Syx + Syx.T)


def test_commuting_problem_reduces_exactly_to_the_exact_theory():
    """On a commuting (rotated) problem the generalised eigenproblem returns the features' own lam and rho,
    and the approximate theory is the exact theory, number for number."""
    P = dy.SSLProblem.from_spectrum([1.0, 0.7, 0.4], [0.5, 1.0, 0.8], 2, 1e-2, rotate=True, key=4)
    U, lam, rho, sigma2 = generalized_eig(P.Sxx, P.Syx)
    order = np.argsort(-P.rho)
    np.testing.assert_allclose(rho, P.rho[order], rtol=1e-12)
    np.testing.assert_allclose(lam, P.lam[order], rtol=1e-12)
    np.testing.assert_allclose(np.abs(U.T @ P.basis[:, order]), np.eye(3), atol=1e-10)   # same directions
    assert dy.commutator(P) == 0.0
    t = np.linspace(0, 3 * dy.critical_times(P).max(), 50)
    for solve, obj in ((dy.solve_jepa, "jepa"), (dy.solve_mae, "mae")):
        a, b = solve(P, times=t), solve(P, times=t, approx="generalized")
        np.testing.assert_array_equal(a.modes, b.modes)
        np.testing.assert_array_equal(dy.critical_times(P, obj), dy.critical_times(P, obj, approx="generalized"))
        assert b.settings["approximation"]["exact"] is True
    # the same covariances given densely: the problem built from them agrees to rounding
    Q = dy.SSLProblem.from_covariances(P.Sxx, P.Syx, 2, 1e-2, Syy=P.Syy)
    np.testing.assert_allclose(np.sort(dy.critical_times(Q)), np.sort(dy.critical_times(P)), rtol=1e-9)


def test_noncommuting_problem_is_refused_naming_the_commutator_and_approximated_on_request():
    Sxx, Syx = _random_pair()
    P = dy.SSLProblem.from_covariances(Sxx, Syx, 2, 1e-3, strict=False)
    c = dy.commutator(P)
    assert c == pytest.approx(np.linalg.norm(Sxx @ Syx - Syx @ Sxx) / (np.linalg.norm(Sxx) * np.linalg.norm(Syx)))
    for fn in (lambda: dy.solve_jepa(P, times=[0.0, 1.0]), lambda: dy.critical_times(P, "mae"),
               lambda: dy.fixed_points(P)):
        with pytest.raises(ValueError, match=rf"do not commute.*{c:.3g}.*approx='generalized'"):
            fn()
    with pytest.raises(ValueError, match="approx must be one of"):
        dy.critical_times(P, approx="paper")
    # the basis of such a problem is its generalised modes: what the simulator records
    gm = dy.generalized_modes(P)
    np.testing.assert_allclose(P.basis, gm.directions, atol=1e-12)
    np.testing.assert_allclose(P.rho, gm.rho, rtol=1e-10)
    np.testing.assert_allclose(Syx @ gm.directions, Sxx @ gm.directions * gm.rho, atol=1e-10)   # (1)
    assert np.all(np.diff(gm.rho) <= 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        th = dy.solve_jepa(P, times=[0.0, 10.0, 100.0], approx="generalized")
    info = th.settings["approximation"]
    assert info["name"] == "generalized modes" and info["commutator"] == pytest.approx(c)
    assert info["error_estimate"] > 0 and np.all(np.isfinite(th.modes))
    assert any(issubclass(w.category, dy.ApproximationWarning) for w in caught) == (c > VALIDITY["threshold_order"])


def test_modes_with_negative_rho_are_never_learned_and_decay():
    """A generalised mode with lam <= 0 (anti-correlated views): critical time inf, its mode decays
    slowly from the init (the per-mode ODE solved numerically), never negative or NaN."""
    Sxx, Syx = _random_pair(d=3, seed=2)
    Syx = Syx - 0.9 * np.eye(3) * np.diag(Sxx).min()
    P = dy.SSLProblem.from_covariances(Sxx, Syx, 2, 1e-2, strict=False)
    gm = dy.generalized_modes(P)
    assert np.any(gm.lam < 0) and np.any(gm.lam > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = dy.critical_times(P, approx="generalized")
        th = dy.solve_jepa(P, times=np.linspace(0, 100, 11), approx="generalized")
    neg = gm.lam <= 0
    assert np.all(np.isinf(tc[neg])) and np.all(np.isfinite(tc[~neg]))
    m = th.modes[:, neg]
    assert np.all(m > 0) and np.all(np.diff(m, axis=0) <= 0) and m[0] == pytest.approx(1e-2)


@pytest.mark.parametrize("objective", ["jepa", "mae"])
def test_fixed_points_are_exact_for_noncommuting_covariances(objective):
    """Converged flow on random non-commuting problems: JEPA's predictor eigenvalues are the generalised
    rho's; MAE's end-to-end map V Wbar is the regression solution Syx Sxx^-1 (tolerance 1e-6: the flow at
    rtol 1e-10, run 40 slowest time constants past the last critical time)."""
    for seed in (0, 1):
        Sxx, Syx = _random_pair(d=3, seed=seed)
        P = dy.SSLProblem.from_covariances(Sxx, Syx, 1, 0.05, strict=False)
        fx = dy.generalized_fixed_points(P, objective)
        np.testing.assert_allclose(fx.predictor_eigenvalues, dy.generalized_modes(P).rho, rtol=1e-10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tc = dy.critical_times(P, objective, approx="generalized")
        gm = dy.generalized_modes(P)
        t_end = 3 * tc.max() + 40 / (gm.lam * gm.rho).min()      # 40 time constants of the slowest mode
        sim = (dy.simulate_jepa if objective == "jepa" else dy.simulate_mae)(
            P, method="flow", times=np.linspace(0, t_end, 5), snapshots=True)
        V, W = sim.param_V[-1], sim.param_W[-1][0]
        if objective == "jepa":
            ev = np.sort(np.linalg.eigvals(V).real)[::-1]
            np.testing.assert_allclose(ev, fx.predictor_eigenvalues, rtol=1e-6)
        else:
            np.testing.assert_allclose(V @ W, fx.end_to_end, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(fx.end_to_end, Syx @ np.linalg.inv(Sxx), rtol=1e-10)


def test_validity_thresholds_come_from_the_map():
    with open(os.path.join(ROOT, "benchmarks", "results", "generalized_validity.json")) as fh:
        derived = json.load(fh)["derived"]
    assert VALIDITY["threshold"] == derived["threshold"]
    assert VALIDITY["threshold_order"] == derived["threshold_order"]
    assert {int(k): v for k, v in derived["slope"].items()} == VALIDITY["slope"]


def test_below_the_threshold_the_first_feature_is_predicted_and_above_the_library_warns():
    """Mildly non-commuting problems (c below the map's threshold): the first feature learned by the exact
    flow is the predicted one and its critical time is within the reported error estimate (x2 for the
    few problems measured here); far above the threshold an ApproximationWarning is raised."""
    probs = [noncommuting_problem(4, 0.01, 2, 1e-2, key=k) for k in range(4)]
    cs = np.array([dy.commutator(p) for p in probs])
    assert np.all((cs > 0) & (cs < VALIDITY["threshold"]))
    m = measure(probs, records=800)
    assert m["first_match"].all()
    est = np.array([VALIDITY["slope"][2] * c for c in cs])
    assert np.all(m["first_error"] <= 2 * est), (m["first_error"], est)
    big = noncommuting_problem(4, 1.0, 2, 1e-2, key=0)
    assert dy.commutator(big) > VALIDITY["threshold"]
    with pytest.warns(dy.ApproximationWarning, match="above"):
        dy.critical_times(big, approx="generalized")


def test_from_samples_recovers_the_population_and_keeps_the_samples():
    P = dy.SSLProblem.from_spectrum([1.0, 0.5, 0.3], [0.9, 0.6, 1.0], 2, 1e-2, rotate=True, key=1)
    n = 40_000
    x, y = P.sample(n, key=2)
    Q = dy.SSLProblem.from_samples(x, y, 2, 1e-2, center=False)
    tol = 5 * np.sqrt(2 / n) * np.abs(P.joint_covariance()).max()     # 5 sigma of a second moment
    assert np.abs(Q.Sxx - P.Sxx).max() < tol and np.abs(Q.Syx - P.Syx).max() < tol
    assert np.abs(np.sort(Q.rho) - np.sort(P.rho)).max() < 10 * tol
    assert not Q.diagonalisable and Q.source["n"] == n
    assert Q.samples[0] is not None and Q.samples[0].shape == (n, 3)
    # minibatches come from the kept samples: the same run as passing them as data
    a = dy.simulate_jepa(Q, lr=0.05, steps=200, record_every=50, batch_size=64, key=3)
    b = dy.simulate_jepa(Q, lr=0.05, steps=200, record_every=50, batch_size=64, key=3, data=Q.samples)
    np.testing.assert_array_equal(a.modes, b.modes)
    # the saved problem keeps its samples
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        back = dy.load(a.save(os.path.join(d, "r.npz"))).problem
    np.testing.assert_array_equal(back.samples[1], Q.samples[1])


@pytest.mark.parametrize("args,match", [
    ((np.ones((3, 4)), np.ones((3, 4))), "too few samples: x has n = 3 pairs for d = 4"),
    ((np.ones((10, 2)), np.ones((10, 3))), "x and y must have the same shape"),
    ((np.full((10, 2), np.nan), np.ones((10, 2))), "x must be finite"),
    ((np.ones(10), np.ones(10)), "x must have 2 dimension"),
    ((np.ones((10, 2)), np.ones((10, 2))), "x: its sample covariance is not positive definite"),
])
def test_from_samples_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        dy.SSLProblem.from_samples(*args, depth=2, init_scale=1e-2)


def test_image_views():
    x, y = dy.datasets.image_views("neighbor", patch=4, n=3000, key=0)
    assert x.shape == y.shape == (3000, 15)                      # 16 pixels less the patch mean
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-12)
    x2, _ = dy.datasets.image_views("neighbor", patch=4, n=3000, key=0)
    np.testing.assert_array_equal(x, x2)                          # reproducible from the key
    assert not np.array_equal(x, dy.datasets.image_views("neighbor", patch=4, n=3000, key=1)[0])
    xr, _ = dy.datasets.image_views("neighbor", patch=4, n=3000, key=0, remove_dc=False)
    assert xr.shape == (3000, 16)
    # neighbouring natural-image patches are positively correlated: the top generalised rho is large
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # the weakest modes are below the init scale
        P = dy.SSLProblem.from_samples(x, y, 2, 1e-2)
    assert dy.generalized_modes(P).rho[0] > 0.3 and dy.commutator(P) > 0
    # noisy copies: Syx is the clean patch covariance, Sxx adds noise^2 per pixel
    xn, yn = dy.datasets.image_views("noise", patch=3, n=20000, key=0, noise=0.5, remove_dc=False)
    Sxx, Syx = xn.T @ xn / 20000, yn.T @ xn / 20000
    np.testing.assert_allclose(np.diag(Sxx - Syx), 0.25, atol=0.03)
    xm, ym = dy.datasets.image_views("mask", patch=4, n=500, key=0, remove_dc=False)
    assert xm.shape == (500, 16) and not np.allclose(xm, ym)
    digits = dy.datasets.image_views("neighbor", patch=3, n=200, images="digits", key=0)
    assert digits[0].shape == (200, 8)


@pytest.mark.parametrize("kw,match", [
    (dict(patch=400), "patch = 400 is too large"),
    (dict(kind="neighbor", patch=5, images="digits"), "patch = 5 is too large"),
    (dict(kind="blur"), "kind must be one of"),
    (dict(n=0), "n must be an integer >= 1"),
    (dict(images="cifar"), "images must be one of"),
])
def test_image_views_bad_input(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dy.datasets.image_views(**kw)


def test_finite_sample_study_converges_to_the_population():
    """The static noisy-feature example at L = 3: over resampled data sets the critical times scatter
    around the population theory with a spread that shrinks with n (as 1/sqrt(n): 16x the samples, 4x
    smaller; asserted: the rms deviation over every feature and data set at least 2x smaller, which
    leaves room for the noise of 6 data sets), and at n = 64,000 every mean is within 2 % of the theory."""
    P = dy.SSLProblem.from_generative("static", [1.0, 0.6], [1.5, 0.0], 3, 0.01, rotate=True, key=0)
    st = dy.finite_sample_study(P, [4000, 64000], resamples=6, records=300)
    assert st.critical.shape == (2, 6, 2)
    rms = np.sqrt(np.mean((st.critical - st.population) ** 2, axis=(1, 2)))
    assert rms[1] < 0.5 * rms[0], rms
    np.testing.assert_allclose(st.mean[1], st.population, rtol=0.02)
    assert "population order" in st.summary() and st.to_dict()["ns"] == [4000, 64000]
    with pytest.raises(ValueError, match="ns must be"):
        dy.finite_sample_study(P, [1])
