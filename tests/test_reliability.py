"""Bad input gets a clear error naming the argument (never another exception, a hang or a silent
coercion): the cases a careful tester found (issue 17's list), one assertion each."""

import dataclasses

import os

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


@pytest.mark.parametrize("which,c", [("y", 1e8), ("y", 1e-8), ("X", 1e4), ("X", 1e-4)])
def test_stages_do_not_depend_on_the_units_of_the_data(which, c):
    """Scaling y by c scales the plateaus by c and the jump times by 1/c (g(0) = -X^T y / n scales by c);
    scaling X by c scales both by 1/c.  The tolerances (gradient zero, ties, the jump's cleanup) are
    relative to the problem's own scales, so the stage count, active sets and ties are unchanged and the
    numbers scale to 1e-9 (NNLS and the event times carry ~1e-12 relative rounding)."""
    ref = dy.DLNProblem.random(60, 4, beta_star=[3.0, -1.0, 0.3, 0.0], init_scale=1e-3, key=0)
    X, y = (ref.X, c * ref.y) if which == "y" else (c * ref.X, ref.y)
    b_fac, t_fac = (c, 1 / c) if which == "y" else (1 / c, 1 / c)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no false ties
        a, b = dy.stages(ref), dy.stages(dy.DLNProblem(X, y, 1e-3))
    assert b.n_stages == a.n_stages == 3 and b.active == a.active and b.ties == a.ties == []
    np.testing.assert_allclose(b.points, b_fac * a.points, rtol=1e-9, atol=1e-9 * b_fac * np.abs(a.points).max())
    np.testing.assert_allclose(b.times, t_fac * a.times, rtol=1e-9)


def test_spectrum_builders_refuse_what_float64_cannot_hold():
    """sigma2 = lam / rho that overflows or underflows, and negative variances, are refused naming them
    (they used to give sigma2 = inf, rho = 0 and inf critical times)."""
    S = dy.SSLProblem.from_spectrum
    with pytest.raises(ValueError, match=r"sigma2 = lam / rho must be finite and > 0.*feature\(s\) \[0\]"):
        S([1e200, 1.0], [1e-200, 1.0], 2, 1e-2)
    with pytest.raises(ValueError, match=r"sigma2 = lam / rho"):
        S([1e-200], [1e200], 2, 1e-2)                   # underflows to 0
    with pytest.raises(ValueError, match=r"syy .* must be finite and >= 0"):
        S([1.0, 1.0], [1.0, 1.0], 2, 1e-2, syy=[-1.0, -1.0])
    # the edges that float64 does hold are accepted
    with pytest.warns(UserWarning, match="shrinks them"):       # init above rho^L: said, not refused
        assert S([1e150], [1e-150], 2, 1e-2).sigma2[0] == pytest.approx(1e300)


@pytest.mark.parametrize("s0", [1e-300, 1e-160, 1e-20, 0.3])
def test_stepwise_step_times_at_tiny_inits_match_mpmath(s0):
    """t_j = ln(1/lambda_j(0) - 1) / (8 gamma_j) with lambda_j(0) = gamma_j s0^2 (theory/stepwise.md), in logs:
    right to 1e-12 for an init down to 1e-300, where s0^2 underflows (they used to be inf, and the closed
    form 0 then NaN).  The solution is 1/2 at the half time (1e-9)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    p = dy.StepwiseProblem.from_spectrum([1.0, 0.5], s0, key=0)
    t = dy.critical_times(p)
    for j, g in enumerate([1.0, 0.5]):
        l0 = mpmath.mpf(g) * mpmath.mpf(s0) ** 2
        assert t[j] == pytest.approx(float(mpmath.log(1 / l0 - 1) / (8 * g)), rel=1e-12)
    th = dy.solve_stepwise(p, times=t)
    np.testing.assert_allclose(np.diag(th.modes), 0.5, rtol=1e-9)
    assert np.all(np.isfinite(th.eigenvalues))


def test_arguments_that_used_to_be_dropped_or_unclear_are_errors_naming_them():
    """Issue 27, items 6 and 8: each was silently ignored or failed deep inside; now a clear error first."""
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05)
    x = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=r"data must be a pair \(x, y\).*length 3"):
        dy.simulate_jepa(P, lr=0.1, steps=5, data=(x, x, x))
    with pytest.raises(ValueError, match="data has 0 samples"):
        dy.simulate_jepa(P, lr=0.1, steps=5, data=(x[:0], x[:0]))
    with pytest.raises(ValueError, match=r"init has key\(s\) \['Z'\]"):
        dy.simulate_jepa(P, lr=0.1, steps=5, init={"W": np.stack([0.1 * np.eye(2)] * 2), "V": 0.1 * np.eye(2),
                                                   "Z": 1})
    with pytest.raises(ValueError, match="key=3 without rotate=True"):
        dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, key=3)
    with pytest.raises(TypeError, match="optimizer: a callable must .* got NoneType"):
        dy.simulate_jepa(P, lr=0.1, steps=5, optimizer=lambda lr: None)
    with pytest.raises(TypeError, match="problem must be a DLNProblem for family 'dln', got SSLProblem"):
        dy.lr_for("dln", P, 0.05)
    g = dy.simulate_jepa(P, lr=0.1, steps=5, progress=False)
    with pytest.raises(ValueError, match="depth-2 problem and b for a depth-3"):
        dy.crosscheck(g, dy.solve_jepa(P.with_depth(3), times=g.t))


def test_load_checks_meaning_naming_the_file_and_the_field(tmp_path, P):
    """Issue 27, item 7: archives that are well-formed but mean nothing -- t shorter than the fields, NaN in t,
    depth -3, a negative sigma2 -- are refused on load, naming the file and the field (they used to load, and
    solve_jepa then ran on rho < 0).  The untouched file still loads."""
    import json
    good = tmp_path / "good.npz"
    dy.simulate_jepa(P, lr=0.1, steps=20, record_every=1, progress=False).save(good)
    assert dy.load(good).modes.shape == (21, 2)
    with np.load(good, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["__meta__"]))

    def edited(name, change):
        d = {k: np.array(v, copy=True) for k, v in data.items()}
        m = json.loads(json.dumps(meta))
        change(d, m)
        d["__meta__"] = np.array(json.dumps(m))
        path = tmp_path / name
        np.savez(path, **d)
        return path

    def sigma2_negative(d, m):
        key = next(k for k in d if k.endswith("/sigma2"))
        d[key] = -d[key]

    cases = [("short.npz", lambda d, m: d.__setitem__("t", d["t"][:5]), r"field '\w+' has shape \(21, 2\)"),
             ("nan.npz", lambda d, m: d["t"].__setitem__(3, np.nan), "non-finite times"),
             ("depth.npz", lambda d, m: m["problems"][0].__setitem__("depth", -3), "depth"),
             ("sigma2.npz", sigma2_negative, "sigma2")]
    for name, change, msg in cases:
        with pytest.raises(ValueError, match=f"{name}.*{msg}"):
            dy.load(edited(name, change))


def test_a_sequence_argument_makes_a_batch_even_of_one(P):
    """One rule (issue 27, item 6): lr=[x], problem=[p] and key=[k] each return a batch of one (runs axis
    first), a scalar / a single key an unbatched result; the batch of one equals the single run."""
    import jax
    one = dy.simulate_jepa(P, lr=0.1, steps=5, key=3, progress=False)
    assert one.modes.shape == (6, 2)
    for kw in ({"lr": [0.1], "key": 3}, {"lr": 0.1, "key": [3]}):
        b = dy.simulate_jepa(P, steps=5, progress=False, **kw)
        assert b.modes.shape == (1, 6, 2) and np.array_equal(b.modes[0], one.modes), kw
    assert dy.simulate_jepa([P], lr=0.1, steps=5, key=3, progress=False).modes.shape == (1, 6, 2)
    assert dy.simulate_jepa(P, lr=0.1, steps=5, key=jax.random.key(3), progress=False).modes.shape == (6, 2)


def test_result_objects_have_short_reprs():
    """Issue 26, item 5: printing a result object says what it is in one line (it used to dump every array:
    2,364 characters for five stages); the tables are one method away."""
    p = dy.DLNProblem.random(60, 4, beta_star=[3.0, -1.0, 0.3, 0.0], init_scale=1e-3, key=0)
    st = dy.stages(p)
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05)
    sims = dy.simulate_jepa(P, lr=0.1, steps=20, runs=2, progress=False)
    batch = dy.crosscheck(sims, dy.solve_jepa(P, times=sims.t))
    for obj in (st, dy.max_stable_lr("jepa", P), dy.implicit_bias(p), dy.get_family("jepa").theory(P),
                dy.generalized_modes(P), batch, batch[0]):
        assert len(repr(obj)) < 200 and "\n" not in repr(obj) and "array(" not in repr(obj), repr(obj)
    assert str(st) == st.summary() and "T_k" in str(st)


def test_an_int_seed_beyond_64_bits_is_refused_naming_key():
    """Found by `make fuzz`: key = 2**63 ended in numpy's OverflowError from inside JAX."""
    with pytest.raises(ValueError, match=r"key must be an int seed in \[-2\*\*63, 2\*\*63\)"):
        dy.rotated_teacher(8, 3, 3, kq=[1.0, 0.5], vo=[1.0], key=2 ** 63)


def test_combination_fuzzer_findings_are_clear_errors(P):
    """Cases the combination fuzzer (tests/test_fuzz.py) found, each now a clear error naming an argument."""
    with pytest.raises(TypeError, match="rotate must be True or False"):
        dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=np.array([0.5, 1.0]), key=0)
    with pytest.raises(ValueError, match="rotate=True needs key"):
        dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True)
    with pytest.raises(ValueError, match="key: an empty sequence"):
        dy.simulate_jepa(P, lr=0.1, steps=2, key=[])
    with pytest.raises(dy.ResourceError, match="a batch of 1,000,000,000,000 runs"):
        dy.simulate_jepa(P, lr=0.1, steps=2, runs=10 ** 12)
    with pytest.raises(ValueError, match="ema given both in config"):
        dy.simulate("jepa", P, dy.GD(lr=0.1, steps=2), config=dy.LinearConfig(ema=0.5), per_run={"ema": [0.5, 0.9]})
    with pytest.raises(TypeError, match="per_run must be"):
        dy.simulate("jepa", P, dy.GD(lr=0.1, steps=2), per_run=1.0)
    with pytest.raises(TypeError, match="dtype must be float64 or float32"):
        dy.simulate_jepa(P, lr=0.1, steps=2, dtype=-1.0)
    with pytest.raises(ValueError, match="key must be one key"):
        dy.gd_error("jepa", P, 0.05, t_max=1.0, key=[1, 2])
    with pytest.raises(ValueError, match=r"tau \(shape \(0,\)\) and sigma2 \(shape \(5,\)\) do not broadcast"):
        dy.byol_collapse_threshold([], [1.0, 2.0, 3.0, 4.0, 5.0])
    d = dy.DLNProblem.random(12, 3, beta_star=[1.0, -0.5, 0.0], init_scale=1e-3, key=0)
    with pytest.raises(TypeError, match="stepper must be"):
        dy.simulate_dln(d, stepper=0.5)
    with pytest.raises(ValueError, match="stepper=Flow.*needs a record grid"):
        dy.simulate("jepa", P, dy.Flow(rtol=1e-6))


def test_a_legal_long_file_name_saves_atomically(tmp_path, P):
    """A 255-byte file name (the file system's limit) used to fail with "File name too long": the temporary
    twin added its ~25-character prefix.  The twin now carries a digest of such a name."""
    r = dy.simulate_jepa(P, lr=0.1, steps=2)
    path = r.save(tmp_path / ("r" * 251 + ".npz"))
    assert len(os.path.basename(path)) == 255 and os.listdir(tmp_path) == [os.path.basename(path)]
    np.testing.assert_array_equal(dy.load(path).modes, r.modes)
