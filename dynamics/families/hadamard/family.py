"""The u * v models as a family: the engine model (gd on (u, v), the dual flow (E) of ``model.py``),
``HadamardFamily``, and the simulator shared by ``families/dln.py`` and ``families/attention.py``."""

from __future__ import annotations

import functools

import jax
import numpy as np

from ...core import engine, frontend
from ...core.config import Config, configclass, sgd_only
from ...core.family import Family
from ...core.theory import Theory
from ...core.stability import warn_above_limit
from ...core.steppers import AbstractStepper, Dual, DualRK4, Flow, GD
from ...core.validation import check_choice, check_instance, check_positive
from .model import HadamardProblem, beta_from_dual, beta_from_wz
from .stability import path_stability
from .stages import default_tau_max, stages

__all__ = ["HadamardFamily", "UVConfig", "simulate_uv", "default_tau_max"]

#: gradient descent below this fraction of the stability limit at the init and the endpoint is not
#: examined along the whole path before it runs (the path's own limit is never below half of theirs in
#: tests/test_dln_steps.py)
SCREEN = 0.25


@functools.lru_cache(maxsize=32)
def _engine_model(loss_fn, form):
    """The engine model of the form "params" (gradient descent / flow on (u, v)) or "dual" (the
    vector field of (E): ds/dtau = -g(beta(s)), which ``Dual`` integrates adaptively and ``DualRK4``
    with the engine's fixed RK4 rule)."""
    vg = jax.value_and_grad(loss_fn)

    if form == "params":
        # gradient descent on (u, v) written in w = u + v, z = u - v:  w <- w (1 - lr g), z <- z (1 + lr g),
        # the same iterates in exact arithmetic, but u - v is never formed by cancellation, so a
        # coordinate that has grown to ~1 keeps the tiny z that lets it change sign later
        def grad(params, aux, ctx, key):
            w, z = params["w"], params["z"]
            loss, g = vg(beta_from_wz(w, z), ctx["data"])
            return loss, {"w": g * w, "z": -g * z}

        def observe(params, aux, ctx):
            w, z = params["w"], params["z"]
            beta = beta_from_wz(w, z)
            # u^2 - v^2 = w z is conserved by the flow (theory/rank_growth.md)
            return {"beta": beta, "loss": loss_fn(beta, ctx["data"]), "conserved": w * z}

        return engine.Model(grad=grad, observe=observe, stochastic=False)

    def slope(s, ctx):
        return -jax.grad(loss_fn)(beta_from_dual(s, ctx["a"], ctx["b"], ctx["lam"]), ctx["data"])

    def grad(params, aux, ctx, key):
        # the dual "gradient" is -ds/dtau: the engine's RK4 rule and the adaptive flow step ds/dtau = -grad
        s = params["s"]
        loss = loss_fn(beta_from_dual(s, ctx["a"], ctx["b"], ctx["lam"]), ctx["data"])
        return loss, {"s": -slope(s, ctx)}

    def observe(params, aux, ctx):
        beta = beta_from_dual(params["s"], ctx["a"], ctx["b"], ctx["lam"])
        return {"beta": beta, "loss": loss_fn(beta, ctx["data"])}

    return engine.Model(grad=grad, observe=observe, stochastic=False)


@configclass
class UVConfig(Config):
    """The configuration of the u * v families (diagonal linear networks, diagonal attention): no options
    of their own; gradient descent is plain "sgd" (it is stepped in (u + v, u - v)) and warns above the
    stability limit along the theory's path."""

    def check(self, family, problems, stepper):
        sgd_only(family, stepper)
        if isinstance(stepper, GD):
            family._warn_unstable(problems, stepper)
        return self

    def record(self, problem):
        return {"init_scale": problem.init_scale}


class HadamardFamily(Family):
    """A u * v model as a family: primary field ``beta`` (p,), also ``tau`` = t / log(1/alpha).

    Steppers: ``GD`` (gradient descent on (u, v) at ``lr``, stepped in (u + v, u - v); t = lr * step),
    ``Flow`` (its exact gradient flow, adaptive), ``Dual`` (the flow in the dual variable s of (E), in
    rescaled time tau, adaptive: reaches alpha = 1e-128 without underflow) and ``DualRK4`` (fixed-step
    RK4 on (E) with step dtau; tau = dtau * step).  t = tau log(1/alpha).  The reference is the stage
    prediction (``stages.py``): ``crosscheck(sim, stages(problem))``.
    """

    primary = "beta"
    steppers = (GD, Flow, Dual, DualRK4)
    config = UVConfig

    def __init__(self, name, problem_type, example=None):
        self.name = name
        self.problem_type = problem_type
        self._example = example

    def shape(self, problem):
        return {"problem type": type(problem).__name__, "coordinates p": problem.p}

    def model(self, problem, form, config):
        return _engine_model(type(problem).loss_fn, form)

    def initial_state(self, problem, key, form, config):
        if form == "params":
            u, v = problem.init_scale * problem.u0, problem.init_scale * problem.v0
            return {"w": u + v, "z": u - v}, {}
        return {"s": np.zeros(problem.p)}, {}

    def flow_tolerances(self, problems, form, rtol, atol):
        # (w, z) move multiplicatively and keep their signs: a pure relative error control.  The dual
        # variable s is O(1) and beta's relative error is 2 log(1/alpha) ds: s gets rtol / (2 log(1/alpha))
        # (relative and absolute), so that rtol is the accuracy of beta
        if form == "params":
            return rtol, (np.finfo(float).tiny if atol is None else atol)
        scale = 2.0 * max(p.log_inv_alpha for p in problems)
        return rtol / scale, (rtol / scale if atol is None else atol)

    def context(self, problem, form, config):
        return {"data": dict(problem.data), "a": (problem.u0 + problem.v0) ** 2,
                "b": (problem.u0 - problem.v0) ** 2, "lam": np.asarray(problem.log_inv_alpha)}

    def times(self, problems, lrs, steps, form):
        lams = np.array([p.log_inv_alpha for p in problems])
        x = np.asarray(lrs, float)[:, None] * np.asarray(steps, float)[None, :]
        t, tau = (x, x / lams[:, None]) if form == "params" else (x * lams[:, None], x)
        return t, {"tau": tau}

    def _warn_unstable(self, problems, stepper):
        """Warn before running gradient descent at an lr above the stability limit along the theory's path
        (``stability.py``; theory/dln_steps.md sec. 4)."""
        lrs = np.broadcast_to(np.asarray(stepper.lr, float), (len(problems),))
        for lr, p in zip(lrs, problems):
            # the flow's path costs a solve: examined only where the init and endpoint's limit is within
            # SCREEN of lr (measured: along the path the limit stays above 0.5 x theirs, test_dln_steps.py)
            if lr <= SCREEN * path_stability(p, path=False).lr:
                continue
            limit = path_stability(p)
            if lr > limit.lr:
                where = ("at the init" if limit.t == 0 else "at the flow's endpoint" if not np.isfinite(limit.t)
                         else f"at t = {limit.t:.4g} on the flow's path")
                warn_above_limit(float(lr), limit.lr, f"on this {self.name} {where}", "theory/dln_steps.md sec. 4")
                return

    def theory(self, problem, config=None):
        """The alpha -> 0 stage prediction (a ``Stages``, whatever the grid: ``trajectory(times)`` returns
        it) and the stability limit along the flow's path (theory/dln_steps.md sec. 4)."""
        return Theory(trajectory=lambda times: stages(problem),
                      stability_limit=functools.partial(path_stability, problem))

    def example(self):
        return None if self._example is None else self._example()


def simulate_uv(family, problem, *, stepper=None, method=None, lr=None, steps=None, tau_max=None, dtau=None,
                times=None, t_max=None, rtol=None, atol=None, solver=None, record_every=None, record_log=None,
                runs=1, key=0, dtype=None, optimizer=None, progress=None, on_divergence="raise"):
    """Train a u * v model (``simulate_dln`` / ``simulate_attention``): a stepper, or its keyword form.

    stepper : ``GD(lr, steps)``, ``Flow(...)``, ``Dual(...)`` or ``DualRK4(dtau, steps)``
        (:mod:`dynamics.core.steppers`); an adaptive one records on ``times`` / ``t_max`` or, with
        neither, up to ``tau_max`` (default: past the last predicted stage).
    The keyword form (no stepper):
    method="gd" (default) : gradient descent on (u, v) with step ``lr``, ``steps`` steps or up to
        rescaled time ``tau_max`` (stepped in (u + v, u - v): no cancellation at tiny alpha).
    method="flow" : the exact gradient flow of (u, v), adaptive; on ``times`` (t), up to ``t_max`` or
        ``tau_max`` (default: past the last predicted stage), or on the grid lr * step of "gd".
    method="dual" : the small-init form (E) of the same flow in rescaled time, adaptive
        (error-controlled, ``rtol``); ``times`` are then rescaled times tau, ``tau_max`` defaults to
        past the last predicted stage.  ``record_every`` (a tau step) / ``record_log`` (a count).
    method="dual_rk4" : fixed-step RK4 on (E) with step ``dtau`` (default 0.02 / log(1/alpha)),
        ``steps`` steps or up to ``tau_max``; records every ``record_every`` steps.
    Arguments that do not apply (``dtau`` without "dual_rk4", ``steps`` with ``tau_max``, ``t_max``
    with "dual", whose time is tau) are errors naming them.

    ``problem`` may be a list of problems of one shape (e.g. several alphas): one batched run.
    Returns a Trajectory with .t (gradient-flow time), .tau = t / log(1/alpha), .beta (T, p), .loss (T,)
    (and .conserved = u^2 - v^2 for "gd" and "flow").
    """
    probs = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    for i, pb in enumerate(probs):
        check_instance(f"problem[{i}]", pb, HadamardProblem, "a DLNProblem or AttentionProblem")
    lams = np.array([pb.log_inv_alpha for pb in probs])
    if stepper is not None:
        check_instance("stepper", stepper, AbstractStepper, "a stepper (dy.GD, dy.Flow, dy.Dual, dy.DualRK4)")
    if method is not None:
        check_choice("method", method, {c.method for c in family.steppers})
    kind = (stepper.method if stepper is not None else "gd" if method is None else method)
    if stepper is not None and (tau_max is not None and not stepper.adaptive or dtau is not None):
        given = "dtau" if dtau is not None else "tau_max"
        raise ValueError(f"stepper={stepper.describe()} and {given}: the stepper carries its step and horizon")
    if dtau is not None and kind != "dual_rk4":
        raise ValueError(f"dtau={dtau!r} is the step of method='dual_rk4' (DualRK4), not of method={kind!r}")
    if tau_max is not None and (steps is not None or times is not None or t_max is not None):
        other = "steps" if steps is not None else "times" if times is not None else "t_max"
        raise ValueError(f"tau_max and {other}: give one horizon")
    if kind == "dual" and t_max is not None:
        raise ValueError("t_max with method='dual': the dual flow runs in rescaled time tau = t / log(1/alpha); "
                         "give tau_max (or times in tau)")
    if kind in ("flow", "dual") and stepper is None and times is None and t_max is None \
            and (lr is None) != (steps is None):
        given, missing = ("lr", "steps") if steps is None else ("steps", "lr")
        raise ValueError(f"{given} without {missing} for method={kind!r}: give both (to record on gd's grid "
                         f"lr * step), or times, t_max or tau_max")
    # the keyword form goes to the driver as given: with a stepper, any of them is an error naming both
    common = dict(record_every=record_every, record_log=record_log, runs=runs, key=key, dtype=dtype,
                  progress=progress, on_divergence=on_divergence, desc=f"{family.name} {kind}",
                  method=method, optimizer=optimizer, rtol=rtol, atol=atol, solver=solver)
    if kind == "gd" and stepper is None and steps is None:
        if lr is None:
            raise ValueError("method='gd' needs lr > 0")
        if tau_max is None:
            raise ValueError("method='gd' needs steps or tau_max")
        lr_min = float(np.min(np.asarray(lr, float)))
        steps = int(np.ceil(check_positive("tau_max", tau_max) * lams.max() / lr_min))
    elif kind == "dual_rk4" and stepper is None:
        if lr is not None:
            raise ValueError(f"lr={lr!r} with method='dual_rk4': its step is dtau")
        lr = 0.02 / lams.max() if dtau is None else check_positive("dtau", dtau)
        if steps is None:
            steps = int(np.ceil(check_positive("tau_max", default_tau_max(probs) if tau_max is None
                                               else tau_max) / lr))
    elif kind in ("flow", "dual") and times is None and t_max is None and (stepper is not None or lr is None
                                                                           or steps is None):
        # the adaptive methods: up to tau_max in their own time (t for "flow", tau for "dual")
        tau_max = default_tau_max(probs) if tau_max is None else check_positive("tau_max", tau_max)
        t_max = tau_max * (lams.max() if kind == "flow" else 1.0)
    return frontend.simulate(family, problem, stepper, lr=lr, steps=steps, times=times, t_max=t_max, **common)
