"""One battery of contract tests over every registered family (as optax runs one battery over every
optimiser): a family that joins the registry with an ``example()`` is covered without new tests.

Tolerances: theory-vs-simulation comparisons use the example's rtol / ctol (discretisation error of
gradient descent is O(lr); the examples use lr small enough that it is below them, float64); runs of
the same computation are compared bit for bit or to rounding (1e-10 relative: a run batched beside
others goes through other GEMM shapes).
"""

import dataclasses

import jax
import numpy as np
import pytest

import dynamics as dy
from dynamics.core import frontend
from dynamics.core.compare import Reference
from dynamics.core.family import problem_state

FAMILIES = sorted(dy.registered_families())

#: every family's short alias of dy.simulate (a new family adds its own here)
ALIASES = {"jepa": dy.simulate_jepa, "mae": dy.simulate_mae, "saxe": dy.simulate_saxe, "dln": dy.simulate_dln,
           "attention": dy.simulate_attention, "dense_attention": dy.simulate_dense_attention,
           "byol": dy.simulate_byol, "identity_head": dy.simulate_head, "stepwise": dy.simulate_stepwise,
           "policy_gradient": dy.simulate_policy_gradient, "adam_spikes": dy.simulate_adam}


#: (family, variant): every family's example, and each of its variants (Family.variants: other shapes)
CASES = [(name, None) for name in FAMILIES] + [(name, label) for name in FAMILIES
                                               for label in dy.get_family(name).variants()]


@pytest.fixture(scope="module", params=CASES, ids=[n if v is None else f"{n}-{v}" for n, v in CASES])
def fam(request):
    name, variant = request.param
    family = dy.get_family(name)
    ex = family.example() if variant is None else family.variants()[variant]
    assert ex is not None, f"family {family.name!r} is registered without an example()"
    return family, ex


def _sim(fam, *, steps=None, problem=None, **kw):
    family, ex = fam
    args = dict(lr=ex.lr, steps=ex.steps if steps is None else steps, method=ex.method, optimizer=ex.optimizer,
                options=ex.options, record_every=max(1, (ex.steps if steps is None else steps) // 50))
    args.update(kw)
    return frontend.simulate(family, ex.problem if problem is None else problem, **args)


def _close(a, b, dtype=np.float64):
    tol = 1e-10 if np.dtype(dtype) == np.float64 else 1e-5
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1e-300, float(np.abs(b).max())))


def _tols(ex, ref):
    """The example's tolerances: rtol and ctol against a trajectory; rtol only against a reference that
    compares on its own terms (the stages: ctol would be refused, not dropped)."""
    return {"rtol": ex.rtol} if isinstance(ref, Reference) else {"rtol": ex.rtol, "ctol": ex.ctol}


@pytest.fixture(scope="module")
def base(fam):
    return _sim(fam, key=5)


def test_family_declares_the_contract(fam):
    family, ex = fam
    assert isinstance(family, dy.Family) and family.name in FAMILIES
    assert isinstance(ex.problem, family.problem_type) and ex.method in {c.method for c in family.steppers}
    assert isinstance(family.primary, str) and family.shape(ex.problem) == family.shape(ex.problem)


def test_result_knows_its_family_primary_field_and_shape(fam, base):
    family, _ = fam
    assert base.model == family.name and base.primary_field == family.primary
    assert base.runs is None and not base.batched and base.status == 0
    assert np.shape(base.fields[family.primary])[0] == np.shape(base.t)[-1]
    text = repr(base)
    assert family.name in text and family.primary in text and len(text) < 600


def test_batch_equals_single(fam, base):
    family, _ = fam
    batch = _sim(fam, key=[3, 5])
    assert batch.runs == 2 and batch.batched
    _close(batch.run(1).fields[family.primary], base.fields[family.primary], batch.settings["dtype"])
    again = _sim(fam, key=5, runs=1)
    np.testing.assert_array_equal(again.fields[family.primary], base.fields[family.primary])


def test_batch_initial_states_equal_per_run(fam):
    """Family.initial_states (which a family may override to draw a batch at once) gives each run the
    state initial_state draws for it alone, bit for bit, for the "gaussian"-style random inits too."""
    from dynamics.core.keys import derive_run_keys
    family, ex = fam
    stepper = frontend.stepper_from_keywords(family, method=ex.method, lr=ex.lr, steps=ex.steps)[0]
    base = stepper.form
    options = frontend.make_config(family, options=ex.options).check(family, [ex.problem], stepper)
    keys = derive_run_keys(7, 3)
    batch = family.initial_states([ex.problem] * 3, keys.init_keys(), base, [options] * 3)
    assert len(batch) == 3
    for i in range(3):
        one = family.initial_state(ex.problem, keys.init_key(i), base, options)
        a, b = jax.tree_util.tree_leaves(batch[i]), jax.tree_util.tree_leaves(one)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_same_key_is_bit_identical_and_int_equals_prng_key(fam, base):
    family, _ = fam
    same = _sim(fam, key=jax.random.key(5))
    np.testing.assert_array_equal(same.fields[family.primary], base.fields[family.primary])
    np.testing.assert_array_equal(same.t, base.t)


def test_save_load_round_trip_with_the_problem(fam, base, tmp_path):
    family, ex = fam
    back = dy.load(base.save(tmp_path / "run.npz"))
    assert back.model == base.model and back.method == base.method and back.primary == base.primary
    for k in base.fields:
        np.testing.assert_array_equal(back.fields[k], base.fields[k])
    assert type(back.problem) is type(ex.problem)
    a0, s0 = problem_state(ex.problem)
    a1, s1 = problem_state(back.problem)
    assert sorted(a0) == sorted(a1)
    for k in a0:
        np.testing.assert_array_equal(np.asarray(a0[k]), np.asarray(a1[k]))
    assert family.shape(back.problem) == family.shape(ex.problem)
    # the loaded problem simulates to the same result
    again = frontend.simulate(family, back.problem, lr=ex.lr, steps=ex.steps, key=5, method=ex.method,
                              optimizer=ex.optimizer, options=ex.options, record_every=max(1, ex.steps // 50))
    np.testing.assert_array_equal(again.fields[family.primary], base.fields[family.primary])


def test_crosscheck_against_the_theory_passes(fam, base):
    family, ex = fam
    ref = family.theory(ex.problem).trajectory(np.asarray(base.t)) if ex.has_theory else None
    if ref is None:
        # no theory: crosscheck still works for the family; a result against itself agrees exactly
        rep = dy.crosscheck(base, base)
        assert rep.outcome == "passed" and rep.max_rel_error == 0.0
        return
    rep = dy.crosscheck(base, ref, **_tols(ex, ref))
    assert rep.outcome == "passed", str(rep)


def test_crosscheck_of_a_too_short_run_is_inconclusive(fam):
    family, ex = fam
    short = _sim(fam, steps=ex.short_steps, key=5)
    ref = family.theory(ex.problem).trajectory(np.asarray(short.t)) if ex.has_theory else None
    if ref is None:
        pytest.skip(f"{family.name} has no theory: nothing to be inconclusive about")
    rep = dy.crosscheck(short, ref, **_tols(ex, ref))
    assert rep.outcome == "inconclusive" and not rep.passed, str(rep)
    assert "run to" in rep.advice


def test_correct_runs_from_random_inits_never_fail(fam):
    """A verdict of FAIL always means something is wrong (issue 26): gradient descent and the exact flow from
    the family's random inits (each run's own draw, the same key for both; "orthogonal" too where the family
    has it) are both correct, so crosscheck(gd, flow) is PASS or INCONCLUSIVE with its reason -- never FAIL,
    whatever the modes do (cross zero, decay to ~0).  Tolerance: the default policy (gd's 5 % / 2 %; its
    O(lr) error at the example's lr is below them, as test_crosscheck_against_the_theory_passes shows)."""
    family, ex = fam
    if ex.random_init is None or not any(s is dy.Flow for s in family.steppers):
        pytest.skip(f"{family.name} has no random init")
    inits = [ex.random_init] + ([{**ex.random_init, "init": "orthogonal"}]
                                if ex.random_init.get("init") == "gaussian" else [])
    for init in inits:
        opts = {**ex.options, **init}
        gd = _sim(fam, key=3, runs=2, options=opts, method="gd", progress=False)
        flow = _sim(fam, key=3, runs=2, options=opts, method="flow", progress=False)
        rep = dy.crosscheck(gd, flow)
        assert "failed" not in rep.outcomes, f"{init}: {rep.summary()}\n" + "\n".join(c.summary() for c in rep)
        for c in rep.checks:
            assert c.outcome == "passed" or (c.reasons and c.advice), c.summary()   # a reason and a remedy


def test_divergence_raises(fam):
    """A diverging run names its step and a smaller step: "learning rate" for gradient descent, "step size"
    (dtau) for the u*v families' fixed-step dual RK4."""
    family, ex = fam
    if ex.diverging_lr is None:
        pytest.skip(f"{family.name}'s gradient descent cannot diverge (Example.diverging_lr is None: bounded steps)")
    with pytest.raises(dy.DivergenceError, match=r"step \d+.*smaller (learning rate|step size)") as info:
        _sim(fam, lr=ex.diverging_lr, key=5, options={**ex.options, **ex.diverging_options})
    assert info.value.partial is not None and info.value.partial.model == family.name


def test_lr_batch_and_seed_batch(fam):
    family, ex = fam
    lrb = _sim(fam, lr=[ex.lr, 1.5 * ex.lr], key=5)
    T = np.shape(lrb.t)[-1]
    assert lrb.runs == 2 and np.shape(lrb.fields[family.primary])[:2] == (2, T)
    assert np.shape(lrb.t) == (2, T) and np.isclose(lrb.run(1).t[-1], 1.5 * lrb.run(0).t[-1])
    assert lrb.run(1).settings["lr"] == 1.5 * ex.lr
    seeds = _sim(fam, runs=2, key=5)
    assert seeds.runs == 2 and np.shape(seeds.t) == (T,)
    if ex.has_theory:
        ref = family.theory(ex.problem).trajectory(lrb.times(0))
        if isinstance(ref, dy.Trajectory):
            # the theory on the times of an lr batch is a batch; the comparison has one row per run
            th = frontend.solve(lambda p, t: family.theory(p).trajectory(t), ex.problem, lrb.t)
            assert th.runs == 2 and np.shape(th.t) == (2, T)
            rep = dy.crosscheck(lrb, th, rtol=2 * ex.rtol, ctol=2 * ex.ctol)
            assert len(rep) == 2 and rep.outcomes == ["passed", "passed"], str(rep)


def test_float32_runs(fam, base):
    family, _ = fam
    other = np.float32
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _sim(fam, key=5, dtype=other)
    y, y0 = np.asarray(res.fields[family.primary]), np.asarray(base.fields[family.primary], float)
    assert y.dtype == other and np.all(np.isfinite(y))
    assert np.abs(y - y0).max() <= 2e-2 * max(1.0, np.abs(y0).max())


def test_plot_draws_one_run_and_a_batch(fam, base, tmp_path):
    family, _ = fam
    import matplotlib
    matplotlib.use("Agg")
    fig = base.plot()
    assert len(fig.axes[0].lines) >= 1 and fig.axes[0].get_ylabel()
    batch = _sim(fam, runs=2, key=5)
    fig = batch.plot()
    n_curves = int(np.prod(np.shape(base.fields[family.primary])[1:]))
    assert len(fig.axes[0].lines) == 2 * n_curves
    fig.savefig(tmp_path / "x.png")
    import matplotlib.pyplot as plt
    plt.close("all")


def test_generic_driver_and_alias_equal_the_keyword_form_bit_for_bit(fam, base):
    """dy.simulate(name, problem, stepper) and simulate_<name>(problem, stepper=...) are the keyword form."""
    family, ex = fam
    assert set(ALIASES) == set(FAMILIES), "every registered family needs its simulate_* alias in ALIASES"
    stepper = frontend.stepper_from_keywords(family, method=ex.method, lr=ex.lr, steps=ex.steps,
                                             optimizer=ex.optimizer)[0]
    every = max(1, ex.steps // 50)
    generic = dy.simulate(family.name, ex.problem, stepper, key=5, record_every=every, options=ex.options)
    alias = ALIASES[family.name](ex.problem, stepper=stepper, key=5, record_every=every, dtype=np.float64,
                                 **ex.options)
    for res in (generic, alias):
        one = res.run(0) if res.batched else res      # dense attention's alias is a batch over init_scales
        np.testing.assert_array_equal(one.fields[family.primary], base.fields[family.primary])
        np.testing.assert_array_equal(one.t, base.t)
        assert res.stepper == stepper and res.method == stepper.method
    with pytest.raises(ValueError, match="stepper=.* and lr="):
        dy.simulate(family.name, ex.problem, stepper, lr=ex.lr)


def test_t_is_gradient_flow_time(fam):
    """For every family, .t of gradient descent is lr * step (the one time unit)."""
    family, ex = fam
    lr = ex.lr if ex.method == "gd" else ex.halving.get("lr", ex.lr)
    sim = dy.simulate(family.name, ex.problem, dy.GD(lr=lr, steps=8), record_every=1, options=ex.options,
                      key=5)
    np.testing.assert_allclose(sim.t, lr * np.arange(9), rtol=1e-15, atol=0)
    assert sim.settings["units"] == "gf"


def test_every_simulator_takes_t_max_with_flow(fam):
    family, ex = fam
    t_max = ex.lr * max(2, ex.short_steps) if ex.method == "gd" else 0.5
    sim = ALIASES[family.name](ex.problem, stepper=dy.Flow(rtol=1e-6), t_max=t_max, record_every=t_max / 4,
                               dtype=np.float64, **ex.options)
    assert isinstance(sim.stepper, dy.Flow) and sim.method == "flow"
    assert np.isclose(np.asarray(sim.t)[-1], t_max, rtol=1e-12) and np.asarray(sim.t).size == 5
    assert np.all(np.isfinite(np.asarray(sim.fields[family.primary])))


def test_different_keys_give_different_random_inits(fam):
    """Where a family draws its init from the run's key, other keys (and the runs of a batch) differ."""
    family, ex = fam
    if ex.random_init is None:
        pytest.skip(f"{family.name}'s example init is deterministic (no random init to key)")
    opts = {**ex.options, **ex.random_init}
    a = _sim(fam, steps=ex.short_steps, key=0, options=opts)
    b = _sim(fam, steps=ex.short_steps, key=7, options=opts)
    two = _sim(fam, steps=ex.short_steps, key=0, runs=2, options=opts)
    y = lambda r: np.asarray(r.fields[family.primary])  # noqa: E731
    assert not np.array_equal(y(a), y(b))
    assert not np.array_equal(y(two)[0], y(two)[1])
    np.testing.assert_array_equal(y(two)[0], y(a))      # run 0 of a batch is the single run


def _numbers(problem):
    """The problem's numbers (float fields; for a problem made of arrays only, its float arrays): each must be
    free to vary within a batch."""
    floats = [f.name for f in dataclasses.fields(problem) if type(getattr(problem, f.name)) is float]
    return floats or [f.name for f in dataclasses.fields(problem) if isinstance(getattr(problem, f.name), np.ndarray)
                      and np.issubdtype(getattr(problem, f.name).dtype, np.floating)]


def test_a_batch_over_every_number_equals_its_single_runs(fam):
    """A batch of problems that differ in any one number equals its single runs (no number is baked into
    the compiled model from run 0's problem)."""
    family, ex = fam
    steps = max(4, ex.short_steps)
    names = _numbers(ex.problem)
    assert names, f"{family.name}'s example problem has no numbers to vary"
    for name in names:
        v = getattr(ex.problem, name)
        other = dataclasses.replace(ex.problem, **{name: 0.9 * v if np.any(v) else v + 0.01})
        batch = _sim(fam, steps=steps, key=[5, 6], problem=[ex.problem, other])
        one = _sim(fam, steps=steps, key=6, problem=other)      # key i of a sequence: that seed's run alone
        _close(batch.run(1).fields[family.primary], one.fields[family.primary], batch.settings["dtype"])


def test_a_batch_over_every_number_of_the_configuration_equals_its_single_runs(fam):
    """Each per-run number of the family's configuration (JEPA's EMA rate, dense attention's init scale, ...)
    given one value per run equals the single runs at those values: the number reaches the model through
    the context, not run 0's closure (Config.structure refuses a model that reads it)."""
    family, ex = fam
    steps = max(4, ex.short_steps)
    cfg = frontend.make_config(family, options=ex.options)
    tried = 0
    for name in family.config.numbers():
        v = getattr(cfg, name)
        values = [0.5, 0.9] if v is None else [v, 0.5 * v]
        try:
            frontend.make_config(family, options={**ex.options, name: values[0]}).check(
                family, [ex.problem], dy.GD(lr=ex.lr, steps=1))
        except ValueError:
            continue        # a number this family's example does not take (e.g. ema for MAE)
        tried += 1
        batch = _sim(fam, steps=steps, key=[5, 5], options={**ex.options, name: values})
        assert batch.runs == 2 and batch.settings[name] == values
        for i, val in enumerate(values):
            one = _sim(fam, steps=steps, key=5, options={**ex.options, name: val})
            _close(batch.run(i).fields[family.primary], one.fields[family.primary], batch.settings["dtype"])
        assert not np.array_equal(batch.run(0).fields[family.primary], batch.run(1).fields[family.primary])
        with pytest.raises(TypeError, match="per-run number"):
            getattr(cfg.structure() if v is not None else dataclasses.replace(cfg, **{name: 0.5}).structure(),
                    name) * 2.0
    if family.name in ("jepa", "dense_attention"):
        assert tried == 1, f"{family.name} declares a per-run number its example should exercise"


def test_configuration_is_typed_and_refuses_what_it_does_not_know(fam):
    family, ex = fam
    cfg = frontend.make_config(family, options=ex.options)
    assert isinstance(cfg, family.config) and isinstance(cfg, dy.Config)
    with pytest.raises(ValueError, match="not an option of"):
        frontend.make_config(family, options={"no_such_option": 1})
    with pytest.raises(ValueError, match="not both"):
        frontend.make_config(family, config=cfg, keywords={"x": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.x = 1
    structural = sorted(set(family.config.names()) - set(family.config.numbers()))
    if structural:
        with pytest.raises(ValueError, match="not a number"):
            frontend.make_config(family, per_run={structural[0]: [1, 2]})
    # the generic driver takes the object: the same run as the keyword form
    a = _sim(fam, steps=3, key=5)
    b = frontend.simulate(family, ex.problem, config=cfg, lr=ex.lr, steps=3, method=ex.method,
                          optimizer=ex.optimizer, key=5, record_every=1)
    np.testing.assert_array_equal(a.fields[family.primary], b.fields[family.primary])


def test_result_carries_its_stepper_and_configuration_through_save_and_load(fam, base, tmp_path):
    family, ex = fam
    cfg = frontend.make_config(family, options=ex.options)
    for traj in (base, dy.load(base.save(tmp_path / "run.npz"))):
        assert isinstance(traj.stepper, tuple(family.steppers))
        assert isinstance(traj.config, family.config)
        for name in family.config.names():     # the recorded configuration is the one that ran
            a, b = getattr(traj.config, name), getattr(cfg.check(family, [ex.problem], traj.stepper), name)
            assert (a == b) if not isinstance(b, (tuple, dict)) else (type(a) is type(b)), name
