"""Bad input gets a clear error naming the argument (never another exception, a hang or a silent
coercion): the cases a careful tester found (issue 17's list), one assertion each."""

import dataclasses

import numpy as np
import pytest

import dynamics as dy


@pytest.fixture(scope="module")
def P():
    return dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 2, 0.05)


def test_choice_arguments_refuse_unhashable_values(P):
    with pytest.raises(TypeError, match="init must be one of .* got a list"):
        dy.simulate_jepa(P, lr=0.1, steps=2, init=["aligned"])
    with pytest.raises(TypeError, match="method must be one of"):
        dy.simulate_jepa(P, lr=0.1, steps=2, method=["gd"])


def test_booleans_are_not_numbers(P):
    with pytest.raises(TypeError, match="lr must be a numeric array, got a boolean"):
        dy.simulate_jepa(P, lr=True, steps=2)
    with pytest.raises(TypeError, match="fraction must be a real number, got the boolean"):
        dy.critical_times(P, objective="jepa", fraction=True)


def test_step_counts_beyond_int64_are_refused(P):
    with pytest.raises(ValueError, match="steps must be an integer <="):
        dy.simulate_jepa(P, lr=0.1, steps=2 ** 70)


def test_stage_algorithm_tolerances_and_negative_times():
    pb = dy.DLNProblem.random(20, 3, beta_star=[1.0, -0.5, 0.0], init_scale=1e-6, key=0)
    for bad in (0.0, np.nan, -1.0):
        with pytest.raises(ValueError, match="tol must be"):
            dy.stages(pb, tol=bad)
    with pytest.raises(ValueError, match="tie_tol must be"):
        dy.stages(pb, tie_tol=np.inf)
    st = dy.stages(pb)
    with pytest.raises(ValueError, match="tau must be >= 0"):
        st.predict([-1.0, 0.5])


def test_byol_theory_inputs():
    prob = dy.BYOLProblem.aligned([1.0, 0.6], [0.3, 0.3], w0=0.3, p0=0.1)
    with pytest.raises(ValueError, match="rtol must be finite"):
        dy.solve_byol(prob, times=[0.0, 1.0], rtol=np.nan)          # used to hang
    with pytest.raises(ValueError, match="times must hold at least one time"):
        dy.solve_byol(prob, times=[])
    still = dy.solve_byol(prob, times=[0.0, 0.0, 0.0])               # used to raise AttributeError
    np.testing.assert_array_equal(still.p, np.broadcast_to(still.p[0], still.p.shape))
    with pytest.raises(ValueError, match="sigma2 must be >= 0"):
        dy.byol_collapse_threshold(1.0, sigma2=-2.0)
    with pytest.raises(ValueError, match="tau must be finite"):
        dy.byol_fixed_points(tau=np.nan, eta=0.0, sigma2=0.1)
    with pytest.raises(ValueError, match="basis must be orthogonal"):
        dataclasses.replace(prob, basis=np.zeros((2, 2)))


def _dead_pid():
    import os
    for pid in range(4_000_000, 3_000_000, -7919):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no free pid found")


def test_save_goes_through_symlinks_and_removes_orphans(tmp_path, P):
    import os
    sim = dy.simulate_jepa(P, lr=0.1, steps=5)
    target = tmp_path / "target.npz"
    sim.save(target)
    link = tmp_path / "link.npz"
    os.symlink(target, link)
    orphan = tmp_path / f".tmp-{_dead_pid()}-abc123-target.npz"       # a save killed mid-write
    orphan.write_bytes(b"partial")
    longer = dy.simulate_jepa(P, lr=0.1, steps=9)
    longer.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert dy.load(target).t.size == longer.t.size
    assert not orphan.exists()


def test_load_wraps_every_failure_naming_the_file(tmp_path, P):
    import json
    import zipfile
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(ValueError, match="plain.npy.*not a readable dynamics result"):
        dy.load(plain)
    good = tmp_path / "good.npz"
    dy.simulate_jepa(P, lr=0.1, steps=5).save(good)
    with np.load(good, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["__meta__"]))
    del meta["fields"]
    data["__meta__"] = np.array(json.dumps(meta))
    broken = tmp_path / "broken.npz"
    np.savez(broken, **data)
    with pytest.raises(ValueError, match="broken.npz: not a complete dynamics result file"):
        dy.load(broken)
    assert zipfile.is_zipfile(broken)


def test_a_batch_that_cannot_fit_is_refused_before_it_allocates(P, monkeypatch):
    """runs=2000, record_every=1 over 10^7 steps would need terabytes of records: refused at once with
    the estimate and what to change (it used to start and thrash); a fitting call still runs."""
    import time
    from dynamics.core.resources import ResourceError
    tic = time.perf_counter()
    with pytest.raises(ResourceError, match=r"the records \(2,000 runs x 1,000,001 records.*record less often"):
        dy.simulate_jepa(P, lr=0.01, steps=10 ** 6, record_every=1, runs=2000)
    # more run-steps than the step budget (10^10 by default): refused before anything runs
    with pytest.raises(ResourceError, match=r"steps = 10,000,000 x 2,000 run\(s\) = 2e\+10 run-steps, more than the step"):
        dy.simulate_jepa(P, lr=0.01, steps=10 ** 7, record_every=10 ** 6, runs=2000)
    with pytest.raises(ResourceError, match="rotation would need"):
        dy.random_rotation(10 ** 7, key=0)
    assert time.perf_counter() - tic < 30
    monkeypatch.setenv("DYNAMICS_MEMORY_BUDGET", "1k")
    with pytest.raises(ResourceError, match="budget of 1 kB"):
        dy.simulate_jepa(P, lr=0.01, steps=100)
    monkeypatch.setenv("DYNAMICS_MEMORY_BUDGET", "1G")
    assert dy.simulate_jepa(P, lr=0.01, steps=100).status == 0


def test_asymptotic_series_and_fixed_points_check_like_the_exact_theory():
    """critical_times_asymptotic gave 1.1e10 for a feature that is never learned (exact: inf), and it
    and fixed_points accepted a non-commuting problem that critical_times refuses."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.9, 0.01], 3, 1e-3)     # rho_2^L = 1e-6 < eps
    exact = dy.critical_times(P, objective="jepa")
    approx = dy.critical_times_asymptotic(P, objective="jepa")
    assert np.isinf(exact[1]) and np.isinf(approx[1]) and np.isfinite(approx[0])
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    Sxx = A @ A.T + np.eye(3)
    Syx = np.diag([1.0, 0.5, 0.2])
    Q = dy.SSLProblem.from_covariances(Sxx, Syx, 2, 1e-2, strict=False)
    for fn in (dy.critical_times, dy.critical_times_asymptotic, dy.fixed_points):
        with pytest.raises(ValueError, match="simultaneously diagonalisable"):
            fn(Q, objective="jepa")
