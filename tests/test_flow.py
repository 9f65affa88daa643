"""The exact gradient flow (``method="flow"``, ``core.flow``) for every registered family.

Tolerances and why they hold (float64):
* flow vs theory: <= 1e-6 relative at every record and in every critical time (the default crosscheck
  tolerance for a flow, 1e3 x the solver's rtol = 1e-7): the solver's global error at rtol = 1e-10 is
  ~1e-9..1e-8 on these problems, and the theories are exact (closed forms or 1e-12 quadrature);
* gd vs flow: the Euler error is first order, e(lr) = C lr + O(lr^2); at the example's ``halving``
  setting lr is small enough that the ratio e(lr) / e(lr / 2) lies in [1.8, 2.2];
* conserved quantities along the flow: to 1e-7 relative (the solver's error, accumulated).
"""

import numpy as np
import pytest

import dynamics as dy
from dynamics.core import frontend
from dynamics.core.chunks import DivergenceError
from dynamics.core.engine import Model
from dynamics.core.flow import flow_times, integrate
from dynamics.core.steppers import Flow

FAMILIES = sorted(dy.registered_families())


@pytest.fixture(scope="module", params=FAMILIES)
def fam(request):
    family = dy.get_family(request.param)
    return family, family.example()


def _halving_case(ex):
    h = ex.halving
    return (h.get("problem", ex.problem), h.get("lr", ex.lr), h.get("steps", ex.steps),
            h.get("options", ex.options))


def test_flow_is_first_order_limit_of_gd(fam):
    """crosscheck(gd, flow) measures gd's discretisation error: it halves when lr halves."""
    family, ex = fam
    prob, lr, steps, options = _halving_case(ex)
    every = max(1, steps // 100)
    errs = []
    for k in (1, 2):
        opts = options(lr / k) if callable(options) else options     # options that scale with lr (Adam's betas)
        kw = dict(lr=lr / k, steps=k * steps, record_every=k * every, options=opts, key=5)
        gd = frontend.simulate(family, prob, method="gd", dtype=np.float64, **kw)
        fl = frontend.simulate(family, prob, method="flow", **kw)
        assert fl.status == 0 and fl.method == "flow"
        assert set(gd.fields) <= set(fl.fields), "the flow records the same fields as gd"
        np.testing.assert_array_equal(fl.t, gd.t)
        errs.append(dy.crosscheck(gd, fl).max_rel_error)
    assert errs[0] / errs[1] == pytest.approx(2.0, abs=0.2), errs
    stats = fl.settings["solver_stats"]
    assert stats["accepted"] > 0 and stats["evaluations"] >= 6 * stats["accepted"]


def test_flow_agrees_with_the_theory_to_1e_6(fam):
    family, ex = fam
    if not ex.has_theory:
        pytest.skip(f"{family.name} has no theory")
    if family.name in ("dln", "attention"):
        pytest.skip(f"{family.name}: no exact finite-time theory (the u*v stages are the alpha -> 0 limit)")
    fl = frontend.simulate(family, ex.problem, method="flow", lr=ex.lr, steps=ex.steps, options=ex.options,
                           record_every=max(1, ex.steps // 200))
    th = family.theory(ex.problem).trajectory(np.asarray(fl.t))
    rep = dy.crosscheck(fl, th)
    assert rep.rtol == pytest.approx(1e-7) and rep.ctol == pytest.approx(1e-7)
    assert rep.outcome == "passed", str(rep)
    assert rep.max_rel_error <= 1e-6
    assert np.all(rep.critical_rel_error[np.isfinite(rep.critical_rel_error)] <= 1e-6)
    # and a wrong theory fails at that tolerance (the comparison can fail)
    slow = family.theory(ex.problem).trajectory(1.001 * np.asarray(fl.t))
    import dataclasses
    assert dy.crosscheck(fl, dataclasses.replace(slow, t=th.t)).outcome == "failed"


def test_flow_batch_equals_single(fam):
    family, ex = fam
    kw = dict(method="flow", lr=ex.lr, steps=ex.steps, options=ex.options, record_every=max(1, ex.steps // 20))
    one = frontend.simulate(family, ex.problem, key=5, **kw)
    two = frontend.simulate(family, ex.problem, key=[3, 5], **kw)
    assert two.runs == 2
    a, b = np.asarray(two.run(1).fields[family.primary]), np.asarray(one.fields[family.primary])
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


def test_flow_conserves_balancedness_of_the_deep_linear_network():
    """W_{a+1}^T W_{a+1} - W_a W_a^T is conserved by the gradient flow of a product of matrices."""
    sim = dy.simulate_saxe(dy.RegressionProblem.from_spectrum([1.0, 0.6, 0.3], [0.9, 0.5, 0.7], 3, 0.05,
                                                              rotate=True, key=2),
                           method="flow", t_max=30.0, init="orthogonal", snapshots=True, record_every=1.0)
    W = np.asarray(sim.fields["param_W"])                      # (T, L, d, d)
    G = np.einsum("tlji,tljk->tlik", W[:, 1:], W[:, 1:]) - np.einsum("tlij,tlkj->tlik", W[:, :-1], W[:, :-1])
    drift = np.abs(G - G[:1]).max() / np.abs(W[0]).max() ** 2
    assert np.abs(sim.modes[-1]).max() > 0.1 and drift <= 1e-7, drift


def test_flow_conserves_u2_minus_v2():
    pb = dy.DLNProblem.random(30, 3, beta_star=[2.0, -1.0, 0.0], init_scale=1e-6, key=0)
    sim = dy.simulate_dln(pb, method="flow", tau_max=3.0)
    c = np.asarray(sim.fields["conserved"])
    assert np.abs(sim.beta[-1]).max() > 1.0
    np.testing.assert_allclose(c, np.broadcast_to(c[0], c.shape), rtol=1e-7)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_gd_converges_to_flow_without_theory(init):
    """Unaligned inits and non-commuting covariances: no theory; gd -> flow at first order in lr."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    Sxx = A @ A.T / 3 + 0.3 * np.eye(3)
    B = rng.normal(size=(3, 3))
    Syx = 0.5 * (B @ Sxx + (B @ Sxx).T) / 3                       # does not commute with Sxx
    P = dy.SSLProblem.from_covariances(Sxx, Syx, depth=2, init_scale=0.05, strict=False)
    errs = []
    for lr in (0.02, 0.01):
        steps = int(60 / lr)
        gd = dy.simulate_jepa(P, lr=lr, steps=steps, init=init, key=1, record_every=steps // 60)
        fl = dy.simulate_jepa(P, method="flow", lr=lr, steps=steps, init=init, key=1, record_every=steps // 60)
        errs.append(dy.crosscheck(gd, fl).max_rel_error)
    assert errs[0] / errs[1] == pytest.approx(2.0, abs=0.2), errs


def test_ema_target_flow_is_the_limit_of_gd_at_fixed_rate():
    """An EMA target with decay m per step moves at rate (1 - m) / lr: gd at lr with m = 1 - c lr
    converges to the flow with rate c at first order."""
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3)
    errs = []
    for lr in (0.02, 0.01):
        steps = int(40 / lr)
        kw = dict(lr=lr, steps=steps, ema=1 - 0.5 * lr, record_every=steps // 40)
        errs.append(dy.crosscheck(dy.simulate_jepa(P, **kw), dy.simulate_jepa(P, method="flow", **kw)).max_rel_error)
    assert errs[0] / errs[1] == pytest.approx(2.0, abs=0.2), errs


def test_flow_refuses_what_has_no_flow():
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05)
    with pytest.raises(ValueError, match="batch_size: minibatch SGD has no gradient flow"):
        dy.simulate_jepa(P, method="flow", t_max=1.0, batch_size=8)
    with pytest.raises(ValueError, match="there is no optimizer"):
        dy.simulate_jepa(P, method="flow", t_max=1.0, optimizer="adam")
    with pytest.raises(ValueError, match="are for the ODE methods"):
        dy.simulate_jepa(P, lr=0.1, steps=10, rtol=1e-6)
    with pytest.raises(ValueError, match="rtol must be"):
        dy.simulate_jepa(P, method="flow", t_max=1.0, rtol=0.0)
    with pytest.raises(ValueError, match="needs times"):
        dy.simulate_jepa(P, method="flow")
    with pytest.raises(ValueError, match="strictly increasing"):
        dy.simulate_jepa(P, method="flow", times=[0.0, 2.0, 1.0])


def test_flow_times_grids():
    np.testing.assert_allclose(flow_times(t_max=2.0, record_every=0.5), [0, 0.5, 1.0, 1.5, 2.0])
    t = flow_times(t_max=10.0, record_log=5)
    assert t[0] == 0 and t[-1] == 10.0 and t.size == 6 and np.all(np.diff(np.log(t[1:])) > 0)
    np.testing.assert_allclose(flow_times(times=[1.0, 3.0]), [0.0, 1.0, 3.0])


def _blowup_model():
    # dx/dt = x^2 (grad = -x^2): x(t) = x0 / (1 - x0 t) blows up at t = 1 / x0
    def grad(p, a, c, k):
        return -p["x"] ** 2, {"x": -p["x"] ** 2}
    return Model(grad=grad, observe=lambda p, a, c: {"x": p["x"], "loss": -p["x"] ** 2}, stochastic=False)


def test_flow_divergence_stops_with_the_time_and_keeps_the_records():
    import jax.numpy as jnp
    times = np.linspace(0.0, 2.0, 41)
    with pytest.raises(DivergenceError, match=r"the flow failed near t = .*records before it are kept") as info:
        integrate(_blowup_model(), {"x": jnp.full((1,), 1 / 1.025)}, {}, {}, jnp.ones(1), times=times,
                  solver=Flow(rtol=1e-8, max_steps=2000))       # blows up at t = 1.025
    part = info.value.partial
    kept = part.extra["times"]
    assert 0.5 < kept[-1] < 1.025
    np.testing.assert_allclose(part.records["x"][0], 1.0 / (1.025 - kept), rtol=1e-6)


def _interrupt_dispatch(monkeypatch, flow_mod, n):
    """Make the n-th dispatched flow chunk raise KeyboardInterrupt (a Ctrl-C between chunks)."""
    real = flow_mod._compiled_flow
    calls = {"n": 0}

    def flaky(*a):
        run = real(*a)

        def wrapped(*args):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return run(*args)
        return wrapped

    monkeypatch.setattr(flow_mod, "_compiled_flow", flaky)


def test_flow_interrupt_keeps_the_records(monkeypatch):
    import jax.numpy as jnp
    from dynamics.core import flow as flow_mod

    _interrupt_dispatch(monkeypatch, flow_mod, 3)

    def grad(p, a, c, k):
        return 0.5 * jnp.sum(p["x"] ** 2), {"x": p["x"]}
    m = Model(grad=grad, observe=lambda p, a, c: {"x": p["x"]}, stochastic=False)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        out = integrate(m, {"x": jnp.ones((2,))}, {}, {}, jnp.ones(2), times=np.linspace(0, 1, 11), n_chunks=5)
    assert out.status == 1 and out.records["x"].shape == (2, 6)     # two chunks of 3 records
    np.testing.assert_allclose(out.records["x"][0], np.exp(-out.extra["times"]), rtol=1e-8)


def test_lr_for_keeps_the_measured_error_under_the_tolerance():
    """lr_for measures gd's error constant against the flow; at the advised lr a fresh measurement is
    within the tolerance, and not absurdly below it (the advice is not a blind over-refinement)."""
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3)
    adv = dy.lr_for("jepa", P, 1e-3)
    assert 0.8 <= adv.order <= 1.2 and adv.steps == int(np.ceil(adv.t_max / adv.lr))
    err, rep, _ = dy.gd_error("jepa", P, adv.lr, t_max=adv.t_max)
    assert 1e-4 <= err <= 1e-3, (err, str(adv))
    assert "lr =" in adv.summary() and adv.to_dict()["family"] == "jepa"
    with pytest.raises(ValueError, match="tol must be"):
        dy.lr_for("jepa", P, -1.0)


def test_lr_for_over_a_horizon_spent_at_the_fixed_point_returns_the_measured_lr():
    """Found by `make fuzz`: t_max = 1325 for a problem that settles by t ~ 50 -- gradient descent and the flow
    then agree to rounding at every small lr, no pair shows first order, and lr_for raised RuntimeError.  Now
    a pair whose errors are both below 1e-3 x tol gives its larger lr, whose error was measured within tol."""
    import warnings
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05)      # the fuzz catalogue's problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adv = dy.lr_for("jepa", P, 0.05, t_max=1325.0, records=10)
    i = adv.lrs.index(adv.lr)
    assert adv.errors[i] <= 1e-3 * adv.tol and np.isnan(adv.order)


def test_ctrl_c_in_a_long_flow_keeps_every_record_and_each_chunk_is_bounded(monkeypatch):
    """The issue's case: a batch flow to t = 1e9 with few records used to be one solve per chunk of records
    (Ctrl-C waited for all of it, and the t = 0 record was lost with it).  A dispatched chunk is now at most
    CHUNK_STEPS solver steps per run; interrupted at the fourth dispatch (the first is the t = 0 record, the
    next two each spend their budget on the way to t = 2.5e8), the result has status 1, its t = 0 record
    and fields, and the solver statistics show the bound."""
    from dynamics.core import flow as flow_mod

    _interrupt_dispatch(monkeypatch, flow_mod, 4)
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        r = dy.simulate_jepa(P, method="flow", lr=[0.01, 0.02], times=np.linspace(0, 1e9, 5))
    assert r.status == 1 and r.runs == 2
    np.testing.assert_array_equal(r.t, [0.0])
    assert r.modes.shape == (2, 1, 2) and np.all(np.isfinite(r.modes))
    steps = np.asarray(r.settings["solver_stats"]["accepted"]) + np.asarray(r.settings["solver_stats"]["rejected"])
    assert np.all(steps <= 2 * flow_mod.CHUNK_STEPS) and np.all(steps > flow_mod.CHUNK_STEPS)


def test_a_flow_that_spends_several_chunks_between_records_equals_the_flow_in_one(monkeypatch):
    """A run that spends its chunk's step budget before the next record goes on from where it stopped: with
    a budget of 16 steps per chunk (every record needs several chunks; the two runs of the batch stop at
    different times) the records equal the closed form e^{-k t} to the solver's tolerance, and the ones of
    the default budget (each record reached in one chunk) to 1e-8."""
    import jax.numpy as jnp
    from dynamics.core import flow as flow_mod

    def grad(p, a, c, k):
        return 0.5 * jnp.sum(c["k"] * p["x"] ** 2), {"x": c["k"] * p["x"]}
    m = Model(grad=grad, observe=lambda p, a, c: {"x": p["x"]}, stochastic=False)
    rates = jnp.array([[1.0], [40.0]])
    times = np.linspace(0.0, 0.3, 4)

    def solve():
        return integrate(m, {"x": jnp.ones((2, 1))}, {}, {"k": rates}, jnp.ones(2), times=times,
                         solver=Flow(rtol=1e-10, max_steps=10_000))
    whole = solve()
    monkeypatch.setattr(flow_mod, "CHUNK_STEPS", 16)
    pieces = solve()
    assert whole.status == 0 and pieces.status == 0
    exact = np.exp(-np.asarray(rates) * times)
    np.testing.assert_allclose(pieces.records["x"][:, :, 0], exact, rtol=1e-7)
    np.testing.assert_allclose(pieces.records["x"], whole.records["x"], rtol=1e-8)
    steps = pieces.extra["accepted"] + pieces.extra["rejected"]
    assert steps[1] > 3 * 16 and steps[0] != steps[1]      # the stiff run needed several chunks


def test_a_grid_that_does_not_start_at_zero_comes_back_as_asked():
    """times=[1, 2] used to come back as [0, 1, 2] (issue 27, item 6): the solve starts at the initial
    state, the result has exactly the times asked for, equal to those records of the grid with 0."""
    P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3)
    r = dy.simulate_jepa(P, method="flow", times=[1.0, 2.0])
    r0 = dy.simulate_jepa(P, method="flow", times=[0.0, 1.0, 2.0])
    np.testing.assert_array_equal(r.t, [1.0, 2.0])
    np.testing.assert_array_equal(r.modes, r0.modes[1:])
    d = dy.DLNProblem.random(12, 3, beta_star=[1.0, -0.5, 0.0], init_scale=1e-3, key=0)
    np.testing.assert_array_equal(dy.simulate_dln(d, method="dual", times=[0.5, 1.0]).tau, [0.5, 1.0])


def test_a_failing_run_keeps_every_record_before_it_in_every_run_whatever_the_chunking(monkeypatch):
    """Run 1's record turns NaN after t = 2 while run 0 (stiff) lags behind it in steps: every run keeps the
    21 records before the failure, and the failure is placed at t = 2.1, with a 64-step chunk budget as with
    the default (the healthy run goes on until it has the records before the failure)."""
    import jax.numpy as jnp
    from dynamics.core import flow as flow_mod

    def grad(p, a, c, k):
        return jnp.sum(p["x"]), {"x": c["k"] * p["x"] - c["b"]}     # run 0: dx/dt = -3000 x; run 1: dx/dt = 1
    m = Model(grad=grad, observe=lambda p, a, c: {"y": jnp.sqrt(3.0 - p["x"])}, stochastic=False)

    def solve():
        return integrate(m, {"x": jnp.ones((2, 1))}, {}, {"k": jnp.array([3000.0, 0.0]), "b": jnp.array([0.0, 1.0])},
                         jnp.ones(2), times=np.linspace(0, 4, 41), solver=Flow(rtol=1e-8), on_divergence="stop",
                         n_chunks=1)
    outs = [solve()]
    monkeypatch.setattr(flow_mod, "CHUNK_STEPS", 64)
    outs.append(solve())
    for out in outs:
        assert out.status == -1 and out.steps.size == 21 and "near t = 2.1 in run(s) [1]" in out.message
        assert np.all(np.isfinite(out.records["y"]))
    np.testing.assert_allclose(outs[1].records["y"], outs[0].records["y"], rtol=1e-7)
