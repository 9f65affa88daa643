"""Networks of any shape (theory/saxe.md "Any shape", theory/jepa.md "A narrow encoder"): rectangular layers, a
regression's rectangular Syx through its SVD, SSL encoders into R^k, bottlenecks and the features they keep.

Tolerances: the exact theory against the exact flow at rtol 1e-10 (1e-8 asserted: the flow's error, a few
hundred times its rtol over these runs; the issue asks 1e-6); against an independent NumPy/scipy integration of
the rectangular network's own equations at rtol 1e-11 (1e-7 asserted); padded entries exactly zero (their
gradients are products with exact zeros).  Kept sets: every seed (a property of where the flow ends, not a
tolerance)."""

import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dynamics as dy
from dynamics.families.jepa import JEPA, MAE
from dynamics.families.linear.network import slot_masks


def _syx(d_out, d_in, s, seed):
    """A non-symmetric Syx = U diag(s) V^T of shape (d_out, d_in) from random orthonormal U, V."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(d_out, d_out)))[0][:, :len(s)]
    V = np.linalg.qr(rng.normal(size=(d_in, d_in)))[0][:, :len(s)]
    return (U * np.asarray(s)) @ V.T


@pytest.mark.parametrize("depth, d_out, d_in", [(2, 4, 3), (3, 2, 3)])
def test_rectangular_saxe_theory_equals_the_flow_and_ends_at_the_singular_values(depth, d_out, d_in):
    s = [2.0, 0.9, 0.5][:min(d_out, d_in)]
    prob = dy.RegressionProblem.from_covariances(np.eye(d_in), _syx(d_out, d_in, s, seed=depth), depth, 1e-3)
    assert (prob.d_in, prob.d_out, prob.d) == (d_in, d_out, len(s)) and not prob.plain
    assert prob.layer_shapes()[0] == (min(d_in, d_out), d_in) and prob.layer_shapes()[-1] == (d_out, min(d_in, d_out))
    t = np.linspace(0.0, 40.0, 41)
    th = dy.solve_saxe(prob, times=t)
    sim = dy.simulate_saxe(prob, method="flow", times=t, rtol=1e-10)
    assert np.abs(sim.modes - th.modes).max() < 1e-8 * np.abs(th.modes).max()
    assert np.abs(sim.loss - th.loss).max() < 1e-8 * max(1.0, np.abs(th.loss).max())
    np.testing.assert_allclose(th.modes[-1], s, rtol=1e-5)          # the modes end at Syx's singular values
    np.testing.assert_allclose(th.fixed_point, s, rtol=1e-12)
    assert dy.crosscheck(sim, th).passed


def test_rectangular_network_against_an_independent_scipy_integration():
    """The two-layer network W2 (d_out x h) W1 (h x d_in) integrated in its own shapes by scipy (no padding, no
    library code but the problem's numbers), from the aligned init built here from numpy's SVD."""
    d_out, d_in, eps = 4, 3, 1e-2
    Syx = _syx(d_out, d_in, [1.5, 1.0, 0.4], seed=7)
    prob = dy.RegressionProblem.from_covariances(np.eye(d_in), Syx, 2, eps)
    U, s, Vt = np.linalg.svd(Syx, full_matrices=False)
    h = 3
    a = np.sqrt(eps)
    W1, W2 = a * Vt, a * U                   # W1 = a sum_i e_i v_i^T, W2 = a sum_i u_i e_i^T: aligned, balanced

    def rhs(_, z):
        A, B = z[:h * d_in].reshape(h, d_in), z[h * d_in:].reshape(d_out, h)
        R = Syx - B @ A                          # Sxx = I: -dL/dWbar
        return np.concatenate([(B.T @ R).ravel(), (R @ A.T).ravel()])

    t = np.linspace(0.0, 12.0, 25)
    sol = solve_ivp(rhs, (0, t[-1]), np.concatenate([W1.ravel(), W2.ravel()]), t_eval=t, rtol=1e-11, atol=1e-14,
                    method="DOP853")
    modes = np.array([np.diag(U.T @ z[h * d_in:].reshape(d_out, h) @ z[:h * d_in].reshape(h, d_in) @ Vt.T)
                      for z in sol.y.T])
    th = dy.solve_saxe(prob, times=t)
    sim = dy.simulate_saxe(prob, method="flow", times=t, rtol=1e-10)
    # the library orders singular values like numpy (decreasing); signs of (u_i, v_i) pairs cancel in the mode
    assert np.abs(th.modes - modes).max() < 1e-7
    assert np.abs(sim.modes - modes).max() < 1e-7


def test_padded_entries_stay_exactly_zero_and_layers_come_back_in_their_shapes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ssl = dy.SSLProblem.from_spectrum([1.0, 0.7, 0.4], [0.5, 0.8, 0.9], 2, 0.1, embed_dim=2, widths=[4])
    reg = dy.RegressionProblem.from_covariances(np.eye(3), _syx(2, 3, [1.0, 0.5], seed=1), 3, 0.1, widths=[1, 4])
    for prob, sim_f, fam, obj in ((ssl, dy.simulate_jepa, "jepa", JEPA), (ssl, dy.simulate_mae, "mae", MAE),
                                  (reg, dy.simulate_saxe, "saxe", None)):
        sim = sim_f(prob, lr=0.05, steps=200, record_every=50, init="gaussian", snapshots=True, key=2)
        W = np.asarray(sim.fields["param_W"])
        Wm, Vm = slot_masks(prob, obj if obj is not None else dy.get_family("saxe").objective)
        assert W.shape[1:] == (prob.depth, prob.n, prob.n)
        assert np.all(W * (1 - Wm) == 0.0) and np.any(W[-1] != W[0])
        if obj is not None:
            V = np.asarray(sim.fields["param_V"])
            assert np.all(V * (1 - Vm) == 0.0)
        layers = dy.network_layers(prob, {k[6:]: np.asarray(v)[-1] for k, v in sim.fields.items()
                                          if k.startswith("param_")}, None if obj is None else fam)
        assert [w.shape for w in layers["W"]] == prob.layer_shapes()
    assert dy.network_layers(ssl, {"W": np.zeros((2, 4, 4)), "V": np.zeros((4, 4))}, "mae")["V"].shape == (3, 2)
    assert dy.network_layers(ssl, {"W": np.zeros((2, 4, 4)), "V": np.zeros((4, 4))}, "jepa")["V"].shape == (2, 2)


def test_gd_on_finite_rectangular_data_equals_a_hand_written_numpy_loop():
    """Full-batch gradient descent on data (x (n, 3), y (n, 2)) through 1/2 mean ||y - W2 W1 x||^2, written out
    in numpy on the layers' own shapes from the library's own gaussian draw: equal to rounding."""
    prob = dy.RegressionProblem.from_covariances(np.eye(3), _syx(2, 3, [1.0, 0.5], seed=3), 2, 0.1)
    x, y = prob.sample(64, key=4)
    assert x.shape == (64, 3) and y.shape == (64, 2)
    lr, steps = 0.1, 30
    sim = dy.simulate_saxe(prob, lr=lr, steps=steps, record_every=steps, data=(x, y), init="gaussian", key=5,
                           snapshots=True)
    W0 = dy.network_layers(prob, {"W": np.asarray(sim.fields["param_W"])[0]})["W"]
    A, B = W0
    for _ in range(steps):
        R = (y.T @ x) / 64 - B @ A @ (x.T @ x) / 64
        A, B = A + lr * B.T @ R, B + lr * R @ A.T
    W = dy.network_layers(prob, {"W": np.asarray(sim.fields["param_W"])[-1]})["W"]
    np.testing.assert_allclose(W[0], A, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(W[1], B, rtol=1e-10, atol=1e-13)
    sgd = dy.simulate_saxe(prob, lr=lr, steps=50, batch_size=8, key=1)          # fresh rectangular samples
    assert np.all(np.isfinite(sgd.modes)) and sgd.loss[-1] < sgd.loss[0]


@pytest.mark.parametrize("family", ["jepa", "mae", "saxe"])
def test_bottleneck_aligned_to_its_kept_features_is_exact(family):
    """A width-1 network aligned to one feature: that feature follows the square theory, the others stay exactly
    zero; the loss adds their constant part."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "saxe":
            prob = dy.RegressionProblem.from_spectrum([1.0, 0.6, 0.3], [0.8, 1.0, 0.9], 2, 1e-2, widths=[1], kept=[1])
        else:
            prob = dy.SSLProblem.from_spectrum([1.0, 0.6, 0.3], [0.5, 0.8, 0.9], 2, 1e-2, embed_dim=1, kept=[1],
                                               rotate=True, key=2)
    solve, sim_f = getattr(dy, f"solve_{family}"), getattr(dy, f"simulate_{family}")
    t = np.linspace(0.0, 2.0 * dy.critical_times(prob, family)[1], 31)
    th, sim = solve(prob, times=t), sim_f(prob, method="flow", times=t, rtol=1e-10)
    assert th.settings["kept"] == [1]
    # zero but for the rounding of the rotated basis (u_i . u_1 ~ 1e-17), which grows where the kept set is unstable
    # (here JEPA's: feature 2 has the larger rho and invades, theory/jepa.md "A narrow encoder": 2e-10 by t_end)
    assert np.abs(np.asarray(sim.modes)[:, [0, 2]]).max() < 1e-8 and np.all(th.modes[:, [0, 2]] == 0.0)
    assert np.abs(sim.modes - th.modes).max() < 1e-8 * np.abs(th.modes).max()
    assert np.abs(sim.loss - th.loss).max() < 1e-8 * max(1.0, np.abs(th.loss).max())
    assert th.modes[-1, 1] > 0.5 * th.fixed_point[1] and th.fixed_point[0] == th.fixed_point[2] == 0.0
    t_c = dy.critical_times(prob, family)
    assert np.isinf(t_c[[0, 2]]).all() and np.isfinite(t_c[1])


@pytest.mark.parametrize("family", ["mae", "saxe", "jepa"])
def test_a_narrow_network_keeps_the_predicted_features_from_small_random_inits(family):
    """Width 1, three features ordered differently by lam (2, 1, 0.4), lam * rho (0.8, 0.6, 0.36) and rho
    (0.4, 0.6, 0.9): Saxe and MAE keep feature 0 (largest lam rho: reduced-rank regression), JEPA feature 2
    (largest rho; theory/jepa.md "A narrow encoder"); every one of six gaussian seeds, by 20 critical times of the
    kept feature (depth 1: seconds of flow; depth 2 and the table over many problems:
    benchmarks/results/kept_features.md)."""
    lam, rho = [2.0, 1.0, 0.4], [0.4, 0.6, 0.9]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = dy.RegressionProblem if family == "saxe" else dy.SSLProblem
        shape = {"widths": [1]} if family == "saxe" else {"embed_dim": 1}
        depth = 2 if family == "saxe" else 1
        prob = cls.from_spectrum(lam, rho, depth, 1e-2, **shape)
    kept = dy.kept_features(prob, family=family)
    assert kept.tolist() == ([2] if family == "jepa" else [0])
    t_c = dy.critical_times(prob, family)[kept[0]]
    t = np.geomspace(1e-2 * t_c, 20 * t_c, 30)
    sim = getattr(dy, f"simulate_{family}")(prob, method="flow", times=t, init="gaussian", runs=6, key=0, rtol=1e-8)
    objective = dy.get_family(family).objective
    frac = np.asarray(sim.modes)[:, -1] / objective.fixed_point(np.asarray(rho), depth)
    assert np.all(frac[:, kept[0]] > 0.9), frac
    assert np.all(np.delete(frac, kept[0], axis=1) < 0.1), frac


def test_shape_arguments_are_checked():
    S = dict(lam=[1.0, 0.5], rho=[0.8, 1.0], depth=2, init_scale=0.05)
    with pytest.raises(ValueError, match="widths must be a list of depth - 1 = 1"):
        dy.RegressionProblem.from_spectrum(**S, widths=[2, 2])
    with pytest.raises(ValueError, match="embed_dim is an SSL encoder's output"):
        dy.RegressionProblem.from_spectrum(**S, embed_dim=1)
    with pytest.raises(ValueError, match="embed_dim must be <= d = 2"):
        dy.SSLProblem.from_spectrum(**S, embed_dim=3)
    with pytest.raises(ValueError, match="kept names 2 feature"):
        dy.SSLProblem.from_spectrum(**S, embed_dim=1, kept=[0, 1])
    with pytest.raises(ValueError, match="kept must be distinct feature indices"):
        dy.SSLProblem.from_spectrum(**S, embed_dim=1, kept=[5])
    with pytest.raises(ValueError, match=r"Syx must have shape \(2, 2\)"):
        dy.SSLProblem.from_covariances(np.eye(2), np.ones((3, 2)), 2, 0.1)
    with pytest.raises(ValueError, match="commute with Syx\\^T Syx"):
        dy.RegressionProblem.from_covariances(np.diag([1.0, 2.0, 3.0]), np.arange(6.0).reshape(2, 3), 2, 0.1)
    prob = dy.RegressionProblem.from_spectrum(**S, widths=[1])
    with pytest.raises(ValueError, match="aligned_gauge.*needs the square network|needs the square network"):
        dy.simulate_saxe(prob, lr=0.01, steps=2, init="aligned_gauge")
    with pytest.raises(ValueError, match="widths"):
        prob.with_depth(3)
    assert prob.with_depth(2) is not None and prob.with_shape().plain
    rect = dy.RegressionProblem.from_covariances(np.eye(3), _syx(2, 3, [1.0, 0.5], seed=1), 2, 0.1)
    with pytest.raises(ValueError, match="rotated\\(\\)"):
        rect.rotated(key=0)
    with pytest.raises(ValueError, match=r"init\['W'\]\[0\] must have shape \(2, 3\)"):
        dy.simulate_saxe(rect, lr=0.01, steps=2, init={"W": [np.zeros((3, 3)), np.zeros((2, 2))]})
    with pytest.raises(ValueError, match=r"data must be \(x, y\) of shapes \(n, 3\) and \(n, 2\)"):
        dy.simulate_saxe(rect, lr=0.01, steps=2, data=(np.zeros((5, 2)), np.zeros((5, 2))))
    with pytest.raises(ValueError, match="approx='generalized' needs the square network"):
        dy.critical_times(rect, "saxe", approx="generalized")


def test_a_shaped_problem_saves_and_loads(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob = dy.SSLProblem.from_spectrum([1.0, 0.6, 0.3], [0.5, 0.8, 0.9], 2, 1e-2, embed_dim=2, kept=[0, 2])
    rect = dy.RegressionProblem.from_covariances(np.eye(3), _syx(2, 3, [1.0, 0.5], seed=1), 2, 0.1, widths=[4])
    for p, sim_f in ((prob, dy.simulate_mae), (rect, dy.simulate_saxe)):
        sim = sim_f(p, lr=0.05, steps=20, record_every=10)
        sim.save(tmp_path / "a.npz")
        back = dy.load(tmp_path / "a.npz")
        q = back.problem
        assert (q.widths, q.embed_dim, q.kept, q.layer_shapes()) == (p.widths, p.embed_dim, p.kept, p.layer_shapes())
        np.testing.assert_array_equal(sim_f(q, lr=0.05, steps=20, record_every=10).modes, sim.modes)


def test_saxe_hierarchy_is_learned_broad_to_fine_in_its_own_shape():
    """The gallery's claim (plot_saxe_hierarchy.py): 8 one-hot items, 15 tree features, R^8 -> R^15 with no
    padding by the user; Syx's singular values fall with the tree's level (root, halves, quarters, items) and so
    do the critical times' order; gradient descent from the aligned init passes the cross-check at gd's 5 %."""
    Y = np.vstack([np.ones((1, 8))] + [np.kron(np.eye(2 ** k), np.ones((1, 8 // 2 ** k))) for k in (1, 2, 3)])
    prob = dy.RegressionProblem.from_covariances(np.eye(8) / 8, Y / 8, 2, 1e-3)
    assert prob.layer_shapes() == [(8, 8), (15, 8)] and prob.d == 8
    levels = np.unique(np.round(prob.lam, 10))[::-1]
    assert levels.size == 4
    np.testing.assert_allclose(levels, np.sort(np.linalg.svd(Y / 8, compute_uv=False))[::-1][[0, 1, 3, 7]], rtol=1e-8)  # levels rounded to 1e-10
    tc = dy.critical_times(prob, "saxe")
    by_level = [tc[np.isclose(prob.lam, lv)].max() for lv in levels]
    assert all(a < b for a, b in zip(by_level, by_level[1:]))
    lr = 0.05
    sim = dy.simulate_saxe(prob, lr=lr, steps=int(1.3 * tc.max() / lr), record_every=10)
    assert dy.crosscheck(sim, dy.solve_saxe(prob, times=sim.t)).passed


def test_the_shape_specs_parse_run_and_state_their_margins():
    """sims/saxe_hierarchy.toml and sims/narrow_jepa_mae.toml parse; the hierarchy's runner (a 4-item tree here, for
    time) passes its aligned cross-check, its gaussian run lies within the stage theory's stated error and learns
    the levels broad to fine; a bad spec names its key."""
    import os

    from dynamics.experiments import REGISTRY, SpecError, load_spec, parse_spec
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("saxe_hierarchy", "narrow_jepa_mae"):
        assert load_spec(os.path.join(root, "sims", f"{name}.toml"))["experiment"] == name
    spec = parse_spec({"experiment": "saxe_hierarchy", "problem": {"levels": 2}, "run": {"lr": 0.05}})
    out = REGISTRY["saxe_hierarchy"].run(spec, progress=False, echo=lambda line: None)
    s = out["summary"]
    assert s["aligned"] == "passed" and s["gaussian"] == "passed" and s["broad_to_fine"]
    assert s["gaussian_time_error"] <= s["gaussian_stated_error"]
    assert list(s["critical_times_by_level"]) == sorted(s["critical_times_by_level"])
    with pytest.raises(SpecError, match="problem.embed_dim must be in"):
        parse_spec({"experiment": "narrow_jepa_mae", "problem": {"embed_dim": 4}, "run": {}})
    with pytest.raises(SpecError, match="problem.levels must be an integer in"):
        parse_spec({"experiment": "saxe_hierarchy", "problem": {"levels": 9}, "run": {}})


def test_fixed_points_and_asymptotic_times_of_a_narrow_encoder_are_those_of_its_kept_features():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        narrow = dy.SSLProblem.from_spectrum([1.0, 0.6, 0.3], [0.5, 0.8, 0.9], 2, 1e-3, embed_dim=1)
        full = dy.SSLProblem.from_spectrum([1.0, 0.6, 0.3], [0.5, 0.8, 0.9], 2, 1e-3)
    for obj in ("jepa", "mae"):
        k = dy.kept_features(narrow, family=obj)
        fp, ta = dy.fixed_points(narrow, obj), dy.critical_times_asymptotic(narrow, obj)
        np.testing.assert_allclose(fp[k], dy.fixed_points(full, obj)[k], rtol=1e-12)
        np.testing.assert_allclose(ta[k], dy.critical_times_asymptotic(full, obj)[k], rtol=1e-12)
        assert np.all(np.delete(fp, k) == 0.0) and np.all(np.isinf(np.delete(ta, k)))


def test_the_end_to_end_flow_of_a_rectangular_balanced_network_is_exact():
    """From a zero-balanced init of the rectangular network R^3 -> R^5 (hidden 3; built as the growing part of a
    gaussian draw), `solve_saxe(init=)` integrates the end-to-end flow on the 5 x 3 map (balanced_flow: the full
    SVD's zero singular directions kept) and equals the two-layer network's exact flow to 1e-8 (at rtol 1e-10 and
    1e-12)."""
    from dynamics.families.linear.small_init import effective_init
    Syx = _syx(5, 3, [1.2, 0.8, 0.5], seed=4)
    prob = dy.RegressionProblem.from_covariances(np.eye(3), Syx, 2, 1e-2)
    rng = np.random.default_rng(0)
    W1e, W2e = effective_init(0.3 * rng.normal(size=(3, 3)), 0.3 * rng.normal(size=(5, 3)), Syx)
    init = {"W": [W1e, W2e]}
    t = np.linspace(0.0, 15.0, 31)
    th = dy.solve_saxe(prob, times=t, init=init)
    assert "end-to-end" in th.settings["theory"]
    sim = dy.simulate_saxe(prob, method="flow", times=t, init=init, rtol=1e-10)
    assert np.abs(sim.modes - th.modes).max() < 1e-8 * np.abs(th.modes).max()


def test_what_shaped_networks_do_not_take_is_refused_naming_it():
    """From the review: balanced inits are drawn for the square network only, a head needs its family's shape."""
    rect = dy.RegressionProblem.from_covariances(np.eye(3), _syx(2, 3, [1.0, 0.5], seed=1), 2, 0.1)
    with pytest.raises(ValueError, match="balanced inits are drawn for the square network"):
        dy.inits.balanced(rect, 0.0, key=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ssl = dy.SSLProblem.from_spectrum([1.0, 0.7, 0.4], [0.5, 0.8, 0.9], 2, 0.1, embed_dim=2)
    with pytest.raises(ValueError, match="pass family='jepa' or 'mae'"):
        dy.network_layers(ssl, {"W": np.zeros((2, 3, 3)), "V": np.zeros((3, 3))})
