"""Problem builders and every documented bad input: each error names the argument and the range."""

import numpy as np
import pytest

import dynamics as dy

GOOD = dict(lam=[1.0, 0.5], rho=[1.0, 0.8], depth=2, init_scale=0.01)


def good():
    return dy.SSLProblem.from_spectrum(**GOOD)


def test_rotation_keeps_spectrum_and_makes_dense():
    p = dy.SSLProblem.from_spectrum(**GOOD, rotate=True, key=3)
    assert np.abs(p.Sxx - np.diag(np.diag(p.Sxx))).max() > 1e-2
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(p.Sxx)), np.sort(p.sigma2), rtol=1e-12)
    np.testing.assert_allclose(p.basis.T @ p.Syx @ p.basis, np.diag(p.lam), atol=1e-12)
    q = p.rotated(key=4)
    np.testing.assert_allclose(q.basis.T @ q.Sxx @ q.basis, np.diag(p.sigma2), atol=1e-12)
    np.testing.assert_allclose(dy.critical_times(q), dy.critical_times(p), rtol=1e-12)


def test_joint_covariance_is_psd_by_default():
    p = dy.SSLProblem.from_spectrum([1.0, 2.0], [1.5, 0.5], 1, 0.01)   # rho > 1 needs Syy > Sxx
    assert np.linalg.eigvalsh(p.joint_covariance()).min() > -1e-12
    x, y = p.sample(10, key=0)
    assert x.shape == y.shape == (10, 2)


@pytest.mark.parametrize("kw,match", [
    (dict(lam=[1.0, -0.5]), "lam must be > 0"),
    (dict(rho=[1.0, 0.0]), "rho must be > 0"),
    (dict(rho=[1.0, 0.5, 0.3]), "same shape"),
    (dict(lam=[[1.0, 0.5]]), "lam must have 1 dimension"),
    (dict(lam=[1.0, np.nan]), "lam must be finite"),
    (dict(rho=[np.inf, 1.0]), "rho must be finite"),
    (dict(depth=0), "depth must be an integer >= 1"),
    (dict(depth=2.5), "depth must be an integer"),
    (dict(depth="3"), "depth must be an integer"),
    (dict(depth=True), "depth must be an integer"),
    (dict(init_scale=0.0), r"init_scale must be in \(0, inf\)"),
    (dict(init_scale=-1e-3), "init_scale"),
    (dict(init_scale=float("nan")), "init_scale must be finite"),
    (dict(lam="abc"), "lam must be a numeric array"),
])
def test_from_spectrum_bad_input(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dy.SSLProblem.from_spectrum(**{**GOOD, **kw})


def test_init_scale_too_large_warns():
    with pytest.warns(UserWarning, match="init_scale=0.7 >= rho\\^L"):
        dy.SSLProblem.from_spectrum([1.0, 1.0], [1.0, 0.8], 2, 0.7)


@pytest.mark.parametrize("Sxx,Syx,match", [
    (np.array([[1.0, 0.3], [0.0, 1.0]]), np.eye(2), "Sxx must be symmetric"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), np.eye(2), "Sxx must be positive definite"),
    (np.eye(3), np.eye(2), "Syx must have shape"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), np.eye(2), "Sxx must be finite"),
    (np.eye(2), np.array([[1.0, 0.2], [0.0, 1.0]]), "Syx is not symmetric"),
    (np.diag([1.0, 2.0]), np.array([[1.0, 0.3], [0.3, 1.0]]), "do not commute"),
])
def test_from_covariances_bad_input(Sxx, Syx, match):
    with pytest.raises(ValueError, match=match):
        dy.SSLProblem.from_covariances(Sxx, Syx, 2, 0.01)


def test_from_covariances_degenerate_spectrum():
    # Sxx = I (fully degenerate) with a non-diagonal Syx: the common basis comes from Syx
    R = dy.random_rotation(3, key=1)
    Syx = R @ np.diag([0.9, 0.5, 0.2]) @ R.T
    p = dy.SSLProblem.from_covariances(np.eye(3), Syx, 1, 0.01)
    np.testing.assert_allclose(np.sort(p.rho), [0.2, 0.5, 0.9], rtol=1e-10)


@pytest.mark.parametrize("kw,match", [
    (dict(model="dynamic"), "model must be one of"),
    (dict(noise=[-1.0, 0.0]), "noise must be >= 0"),
    (dict(signal=[0.0, 1.0]), "signal must be > 0"),
    (dict(noise=[1.0]), "signal and noise must hold one value per feature"),
    (dict(model="temporal"), "gamma is required"),
    (dict(model="temporal", gamma=[1.2, 0.5]), r"gamma must be in \(0, 1\)"),
    (dict(gamma=[0.5, 0.5]), "gamma is only used"),
])
def test_from_generative_bad_input(kw, match):
    args = dict(model="static", signal=[1.0, 0.5], noise=[0.5, 0.0], depth=2, init_scale=0.01)
    with pytest.raises(ValueError, match=match):
        dy.SSLProblem.from_generative(**{**args, **kw})


@pytest.mark.parametrize("kw,match", [
    (dict(lr=0.0), "lr must be > 0"),
    (dict(lr=-0.1), "lr must be > 0"),
    (dict(lr=float("nan")), "lr must be finite"),
    (dict(lr=[[0.1]]), "lr must be a scalar or a 1-D"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(steps=10.0), "steps must be an integer"),
    (dict(record_every=0), "record_every must be an integer >= 1"),
    (dict(init="xavier"), "init must be one of"),
    (dict(optimizer="lbfgs"), "optimizer must be one of"),
    (dict(runs=0), "runs must be an integer >= 1"),
    (dict(runs=2, lr=[0.1, 0.2, 0.3]), "batch sizes disagree"),
    (dict(data=(np.ones((5, 3)), np.ones((5, 3)))), "data must be"),
    (dict(data=(np.full((5, 2), np.nan), np.ones((5, 2)))), "must be finite"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(ema=1.0), r"ema must be in \[0, 1\)"),
    (dict(dtype=np.int32), "dtype must be float64 or float32"),
    (dict(key=None), "key is required"),
    (dict(key="seed"), "key must be"),
])
def test_simulate_bad_input(kw, match):
    args = dict(lr=0.1, steps=10, record_every=5)
    with pytest.raises((ValueError, TypeError), match=match):
        dy.simulate_jepa(good(), **{**args, **kw})


def test_simulate_refuses_mixed_problem_shapes_and_non_problems():
    other = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 3, 0.01)
    with pytest.raises(ValueError, match="share d and depth"):
        dy.simulate_mae([good(), other], lr=0.1, steps=10)
    with pytest.raises(TypeError, match="problem"):
        dy.simulate_mae({"lam": [1.0]}, lr=0.1, steps=10)
    with pytest.raises(ValueError, match="ema is only meaningful for JEPA"):
        from dynamics.families.linear.family import simulate_linear
        from dynamics.families.jepa import MAE
        simulate_linear(MAE, good(), lr=0.1, steps=10, ema=0.5)


@pytest.mark.parametrize("call,match", [
    (lambda p: dy.critical_times(p, "byol"), "objective must be one of"),
    (lambda p: dy.critical_times(p, "jepa", fraction=1.0), r"fraction must be in \(0, 1\)"),
    (lambda p: dy.critical_times(p, "jepa", fraction=0.0), "fraction"),
    (lambda p: dy.critical_times(p, "jepa", units="seconds"), "units must be one of"),
    (lambda p: dy.solve_jepa(p, times=[-1.0, 1.0]), "times must be >= 0"),
    (lambda p: dy.solve_mae(p, times=[[0.0, 1.0]]), "times must have 1 dimension"),
    (lambda p: dy.solve_mae(p, times=[0.0, np.nan]), "times must be finite"),
    (lambda p: dy.solve_jepa("problem", times=[0.0]), "problem must be a problem"),
])
def test_theory_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(good())


def test_spectrum_problem_forms_its_dense_matrices_only_when_asked(tmp_path):
    """A spectrum problem holds O(d) numbers (10^4 features in well under a second); Sxx, Syx, Syy and
    the basis are formed on first access and equal the explicit construction."""
    import time
    from dynamics.families.linear.problems import _Dense
    tic = time.perf_counter()
    big = dy.SSLProblem.from_spectrum(np.linspace(0.2, 1.0, 10_000), np.linspace(0.3, 0.9, 10_000), 3, 1e-3)
    assert time.perf_counter() - tic < 1.0
    assert not any(_Dense.formed(big, k) for k in ("Sxx", "Syx", "Syy", "basis"))
    th = dy.solve_jepa(big, times=[0.0, 10.0])          # the theory never needs them
    assert th.modes.shape == (2, 10_000) and not _Dense.formed(big, "Sxx")
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 0.4], 2, 1e-2)
    np.testing.assert_array_equal(P.Sxx, np.diag(P.sigma2))
    np.testing.assert_array_equal(P.Syx, np.diag(P.lam))
    np.testing.assert_array_equal(P.basis, np.eye(2))
    assert _Dense.formed(P, "Sxx")
    sim = dy.simulate_jepa(dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 0.4], 2, 1e-2), lr=0.1, steps=20)
    sim.save(tmp_path / "r.npz")
    back = dy.load(tmp_path / "r.npz").problem
    np.testing.assert_array_equal(back.Syx, np.diag([1.0, 0.5]))
    arrays, _ = big.state()
    assert set(arrays) == {"sigma2", "lam", "syy"}
