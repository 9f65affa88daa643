"""The typed steppers (dynamics/core/steppers.py) and the driver's handling of them: validation when
built, the record a result keeps (and rebuilds after save/load), the engine's RK4 rule against its
exact amplification factor, and the conflicting arguments that are errors naming both."""

import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as dy
from dynamics.core import engine
from dynamics.core.compare import flow_rtol
from dynamics.core.steppers import stepper_from_dict


@pytest.mark.parametrize("build,match", [
    (lambda: dy.GD(lr=0.0, steps=10), "lr must be > 0"),
    (lambda: dy.GD(lr=[0.1, -0.1], steps=10), "lr must be > 0"),
    (lambda: dy.GD(lr=0.1, steps=0), "steps"),
    (lambda: dy.GD(lr=0.1, steps=10, optimizer="lbfgs"), "optimizer must be one of"),
    (lambda: dy.Flow(rtol=0.5), "rtol"),
    (lambda: dy.Flow(solver="euler"), "solver must be one of"),
    (lambda: dy.Dual(max_steps=3), "max_steps"),
    (lambda: dy.DualRK4(dtau=-1.0, steps=5), "dtau must be > 0"),
])
def test_steppers_are_validated_when_built(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_steppers_are_frozen_and_round_trip_through_their_record():
    for st in (dy.GD(lr=[0.1, 0.2], steps=7, optimizer="adam"), dy.Flow(rtol=1e-8, lr=0.5), dy.Dual(atol=1e-12),
               dy.DualRK4(dtau=0.01, steps=3)):
        assert stepper_from_dict(st.to_dict()) == st
        with pytest.raises(AttributeError):
            st.steps = 3
    custom = dy.GD(lr=0.1, steps=2, optimizer=lambda lr: None)
    assert custom.to_dict()["optimizer"] == "custom" and stepper_from_dict(custom.to_dict()) is None


def test_a_result_keeps_its_stepper_and_crosscheck_reads_its_type(tmp_path):
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 2, 0.05)
    gd = dy.simulate("jepa", prob, dy.GD(lr=0.05, steps=40), record_every=10)
    fl = dy.simulate("jepa", prob, dy.Flow(rtol=1e-9), times=gd.t)
    back = dy.load(fl.save(tmp_path / "flow.npz"))
    assert back.stepper == dy.Flow(rtol=1e-9) and gd.stepper == dy.GD(lr=0.05, steps=40)
    assert flow_rtol(back) == 1e-9 and flow_rtol(gd) is None       # adaptive: its rtol; fixed step: none
    assert dy.crosscheck(fl, dy.solve_jepa(prob, times=fl.t)).rtol == pytest.approx(1e3 * 1e-9)


def test_the_engine_rk4_rule_has_the_exact_rk4_amplification():
    """On dx/dt = -a x one classical RK4 step of size h multiplies x by 1 - z + z^2/2 - z^3/6 + z^4/24,
    z = a h (an independent closed form): the engine's RK4 rule reproduces it to rounding."""
    a, h, n = 3.0, 0.1, 12
    model = engine.Model(grad=lambda p, aux, c, k: (0.5 * a * jnp.sum(p["x"] ** 2), {"x": a * p["x"]}),
                         observe=lambda p, aux, c: {"x": p["x"]}, stochastic=False)
    out = engine.simulate(model, {"x": jnp.ones((1, 1))}, {}, {}, jnp.array([h]), record_steps=np.arange(n + 1),
                          key=jnp.zeros((1, 2), dtype=jnp.uint32), optimizer=engine.RK4)
    z = a * h
    factor = 1 - z + z ** 2 / 2 - z ** 3 / 6 + z ** 4 / 24
    np.testing.assert_allclose(out.records["x"][0, :, 0], factor ** np.arange(n + 1), rtol=1e-13)


def test_a_diverging_rk4_run_names_its_step_size_dtau():
    """The engine's divergence message speaks the stepper's language: dtau and tau for the RK4 rule
    (DualRK4), lr and t for gradient descent.  dx/dt = a x with a = 1e3 overflows within 150 RK4 steps."""
    a = 1e3
    model = engine.Model(grad=lambda p, aux, c, k: (jnp.sum(p["x"] ** 2), {"x": -a * p["x"]}),
                         observe=lambda p, aux, c: {"x": p["x"]}, stochastic=False)
    for rule, words in ((engine.RK4, ("dtau = 0.1", "tau = ", "smaller step size")),
                        ("sgd", ("lr = 0.1", "(t = ", "smaller learning rate"))):
        out = engine.simulate(model, {"x": jnp.ones((1, 1))}, {}, {}, jnp.array([0.1]),
                              record_steps=np.arange(400), key=jnp.zeros((1, 2), dtype=jnp.uint32),
                              optimizer=rule, on_divergence="stop")
        assert out.status == -1 and all(w in out.message for w in words), out.message


def test_dual_rk4_converges_to_the_adaptive_dual_at_fourth_order():
    """DualRK4 integrates the same vector field as Dual: past the first jump (tau = 0.39) its error falls
    ~16x when dtau halves (measured 17.1 from dtau = 0.005 to 0.0025, 2.7e-8 -> 1.6e-9 relative; the
    adaptive reference at rtol 1e-13 is ~1e3 x closer than either)."""
    prob = dy.DLNProblem.random(20, 3, beta_star=[2.0, -1.0, 0.0], init_scale=1e-6, key=0)
    ref = dy.simulate_dln(prob, stepper=dy.Dual(rtol=1e-13), times=[0.0, 1.0])
    errs = []
    for dtau in (0.005, 0.0025):
        rk = dy.simulate_dln(prob, stepper=dy.DualRK4(dtau=dtau, steps=int(round(1.0 / dtau))), record_every=10 ** 6)
        errs.append(np.abs(rk.beta[-1] - ref.beta[-1]).max())
    assert 13 < errs[0] / errs[1] < 20, errs


@pytest.mark.parametrize("call,match", [
    (lambda p, d: dy.simulate_jepa(p, stepper=dy.GD(lr=0.1, steps=5), steps=10), r"stepper=GD.* and steps=10"),
    (lambda p, d: dy.simulate_jepa(p, lr=0.1, steps=5, times=[0.0, 1.0]), "times given"),
    (lambda p, d: dy.simulate_jepa(p, method="flow", steps=5, times=[0.0, 1.0]), "steps=5 and times"),
    (lambda p, d: dy.simulate("jepa", p, dy.GD(lr=0.1, steps=5), times=[0.0, 1.0]), "times and t_max are record grids"),
    (lambda p, d: dy.simulate("jepa", p, dy.Dual()), "jepa takes GD, Flow, got Dual"),
    (lambda p, d: dy.simulate("jepa", p, dy.GD(lr=0.1, steps=5), nosuch=1), "nosuch: not an option of jepa"),
    (lambda p, d: dy.simulate("jepa", p, dy.GD(lr=0.1, steps=5), options={"init": "aligned"}, init="gaussian"),
     "init given both"),
    (lambda p, d: dy.simulate("jepa", p), "stepper: give a stepper"),
    (lambda p, d: dy.simulate_dln(d, method="dual", dtau=0.01), "dtau=0.01 is the step of method='dual_rk4'"),
    (lambda p, d: dy.simulate_dln(d, lr=0.1, steps=10, tau_max=2.0), "tau_max and steps"),
    (lambda p, d: dy.simulate_dln(d, method="dual", t_max=3.0), "t_max with method='dual'"),
    (lambda p, d: dy.simulate_dln(d, stepper=dy.DualRK4(dtau=0.01, steps=3), dtau=0.02), "stepper=DualRK4.* and dtau"),
    (lambda p, d: dy.SSLProblem.from_spectrum([1.0], [0.5], 2, 0.1, rotate=True, basis=np.eye(1)),
     "rotate=True and basis"),
    (lambda p, d: dy.simulate_dln(d, stepper=dy.Dual(rtol=1e-6), rtol=1e-3), r"stepper=Dual.* and rtol=0.001"),
    (lambda p, d: dy.simulate_dln(d, stepper=dy.GD(lr=0.1, steps=3), optimizer="adam"), "and optimizer='adam'"),
    (lambda p, d: dy.simulate_dln(d, method="flow", steps=100), "steps without lr for method='flow'"),
    (lambda p, d: dy.simulate_dln(d, method="dual_rk4", dtau=0.01, times=[0.0, 1.0]), "which takes dtau and steps"),
    (lambda p, d: dy.simulate("dense_attention", dy.AttentionProblem.teacher_student(8, 3, 2, key=0),
                              dy.GD(lr=0.1, steps=2), per_run={"init_scael": [1.0, 2.0]}),
     "init_scael: not an option of dense_attention"),
    (lambda p, d: dy.critical_times(dy.StepwiseProblem.from_spectrum([1.0], 1e-2), units="paper"),
     "units: not an option of stepwise"),
])
def test_conflicting_or_ignored_arguments_are_errors_naming_them(call, match):
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 2, 0.05)
    dln = dy.DLNProblem.random(10, 3, beta_star=[1.0, 0.0, 0.0], init_scale=1e-3, key=0)
    with pytest.raises(ValueError, match=match):
        call(prob, dln)


def test_the_identity_head_flow_defaults_to_float64():
    """simulate_head runs gradient descent in float32 by default, its flow in float64 (float32 cannot
    resolve the flow's default rtol 1e-10)."""
    prob = dy.HeadProblem(d=8, patches=4, feature_patches=1, batch=16, eval_batch=16, noise_bank=64)
    fl = dy.simulate_head(prob, stepper=dy.Flow(rtol=1e-8), t_max=0.02, record_every=0.01)
    gd = dy.simulate_head(prob, steps=2, record_every=1)
    assert fl.settings["dtype"] == "float64" and gd.settings["dtype"] == "float32"
