"""Models that see their parameters only through beta = u * v: problems and simulators.

Shared by diagonal linear networks (``families/dln.py``) and diagonal attention
(``families/attention.py``); derivations in theory/rank_growth.md.  With g = grad L(beta) and
theta(0) = alpha (u0, v0):

    u' = -g * v,  v' = -g * u       =>   u_i^2 - v_i^2 is conserved,
    beta_i = (alpha^2 / 4) [a_i e^(2 S_i) - b_i e^(-2 S_i)],  a = (u0 + v0)^2,  b = (u0 - v0)^2,
    dS/dt = -g(beta(S))                                                               (E)

In rescaled time tau = t / log(1/alpha) and s = S / log(1/alpha), (E) reads ds/dtau = -g with
beta_i = (1/4) [a_i alpha^(2(1 - s_i)) - b_i alpha^(2(1 + s_i))]: integrating s (``method="dual"``)
reaches alpha = 1e-32 and below without underflow.  ``method="gd"`` is plain gradient descent on (u, v).
As alpha -> 0 beta is piecewise constant in tau; ``stages.py`` computes the plateaus and jump times.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ...core import engine, frontend
from ...core.family import Example, Family
from ...core.validation import check_positive, check_instance

__all__ = ["HadamardProblem", "HadamardFamily", "beta_from_dual", "beta_from_wz", "simulate_hadamard", "check_alpha",
           "default_tau_max"]


class HadamardProblem:
    """Mixin for u * v problems. A subclass (a frozen dataclass) provides ``data`` (dict of arrays),
    unit-scale init directions ``u0``, ``v0`` (p,), ``init_scale`` alpha in (0, 1), a ``name``, and the
    pure JAX function ``loss_fn(beta, data)`` as a staticmethod; theta(0) = alpha (u0, v0)."""

    name = "hadamard"

    @property
    def p(self) -> int:
        return self.u0.size

    @property
    def log_inv_alpha(self) -> float:
        return float(np.log(1.0 / self.init_scale))

    def with_init_scale(self, init_scale):
        """The same problem at another alpha."""
        return dataclasses.replace(self, init_scale=check_alpha(init_scale))

    def loss(self, beta):
        return float(_loss_jit(type(self).loss_fn)(jnp.asarray(beta, dtype=jnp.float64), self.data))

    def grad(self, beta):
        return np.asarray(_grad_jit(type(self).loss_fn)(jnp.asarray(beta, dtype=jnp.float64), self.data))


def check_alpha(alpha):
    return check_positive("init_scale", alpha, upper=1.0)


@functools.lru_cache(maxsize=None)
def _loss_jit(loss_fn):
    return jax.jit(loss_fn)


@functools.lru_cache(maxsize=None)
def _grad_jit(loss_fn):
    return jax.jit(jax.grad(loss_fn))


def beta_from_dual(s, a, b, log_inv_alpha):
    """beta = (1/4) [a alpha^(2(1-s)) - b alpha^(2(1+s))], exponents clipped at 700 (no overflow)."""
    e1 = jnp.minimum(-2.0 * log_inv_alpha * (1.0 - s), 700.0)
    e2 = jnp.minimum(-2.0 * log_inv_alpha * (1.0 + s), 700.0)
    return 0.25 * (a * jnp.exp(e1) - b * jnp.exp(e2))


# --------------------------------------------------------------------------------------- simulate
def beta_from_wz(w, z):
    """beta = u v = (w - z)(w + z) / 4 from w = u + v and z = u - v."""
    return 0.25 * (w - z) * (w + z)


@functools.lru_cache(maxsize=32)
def _engine_model(loss_fn, method):
    vg = jax.value_and_grad(loss_fn)

    if method == "gd":
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

    def grad(params, aux, ctx, key, h):
        # classical RK4 for ds/dtau = -g(beta(s)); the engine's SGD step with lr = h applies it
        # (method "dual_rk4"); at h = 0 it is the vector field itself (the adaptive "dual")
        s = params["s"]
        k1 = slope(s, ctx)
        k2 = slope(s + 0.5 * h * k1, ctx)
        k3 = slope(s + 0.5 * h * k2, ctx)
        k4 = slope(s + h * k3, ctx)
        loss = loss_fn(beta_from_dual(s, ctx["a"], ctx["b"], ctx["lam"]), ctx["data"])
        return loss, {"s": -(k1 + 2 * k2 + 2 * k3 + k4) / 6.0}

    def observe(params, aux, ctx):
        beta = beta_from_dual(params["s"], ctx["a"], ctx["b"], ctx["lam"])
        return {"beta": beta, "loss": loss_fn(beta, ctx["data"])}

    return engine.Model(grad=grad, observe=observe, uses_lr=True, stochastic=False)


class HadamardFamily(Family):
    """A u * v model as a family: primary field ``beta`` (p,), also ``tau`` = t / log(1/alpha).

    Methods: "gd" (gradient descent on (u, v) at ``lr``, stepped in (u + v, u - v); t = lr * step),
    "flow" (its exact gradient flow, adaptive), "dual" (the flow in the dual variable s of (E), in
    rescaled time tau, adaptive: reaches alpha = 1e-128 without underflow) and "dual_rk4" (the former
    fixed-step RK4 on (E) with step ``lr`` = dtau; tau = dtau * step).  t = tau log(1/alpha).  The
    reference is the stage prediction (``stages.py``): ``crosscheck(sim, stages(problem))``.
    """

    primary = "beta"
    methods = ("gd", "dual_rk4")
    ode_methods = ("flow", "dual")
    optimizers = False
    error_floor = 1e-2
    shape_name = "the model type and the number of coordinates"

    def __init__(self, name, problem_type, example=None):
        self.name = name
        self.problem_type = problem_type
        self._example = example

    def shape(self, problem):
        return (type(problem).__name__, problem.p)

    def model(self, problem, method, options):
        return _engine_model(type(problem).loss_fn, "gd" if method == "gd" else "dual")

    def initial_state(self, problem, key, method, options):
        if method == "gd":
            u, v = problem.init_scale * problem.u0, problem.init_scale * problem.v0
            return {"w": u + v, "z": u - v}, {}
        return {"s": np.zeros(problem.p)}, {}

    def flow_tolerances(self, problems, method, rtol, atol):
        # (w, z) move multiplicatively and keep their signs: a pure relative error control.  The dual
        # variable s is O(1) and beta's relative error is 2 log(1/alpha) ds: s gets rtol / (2 log(1/alpha))
        # (relative and absolute), so that rtol is the accuracy of beta
        if method == "flow":
            return rtol, (np.finfo(float).tiny if atol is None else atol)
        scale = 2.0 * max(p.log_inv_alpha for p in problems)
        return rtol / scale, (rtol / scale if atol is None else atol)

    def context(self, problem, method, options):
        return {"data": dict(problem.data), "a": (problem.u0 + problem.v0) ** 2,
                "b": (problem.u0 - problem.v0) ** 2, "lam": np.asarray(problem.log_inv_alpha)}

    def times(self, problems, lrs, steps, method):
        lams = np.array([p.log_inv_alpha for p in problems])
        x = np.asarray(lrs, float)[:, None] * np.asarray(steps, float)[None, :]
        t, tau = (x, x / lams[:, None]) if method == "gd" else (x * lams[:, None], x)
        return t, {"tau": tau}

    def settings(self, problem, method, options):
        return {"init_scale": problem.init_scale}

    def theory(self, problem, times):
        """The alpha -> 0 stage prediction (a ``Stages``; ``times`` is not needed)."""
        from .stages import stages
        return stages(problem)

    def example(self):
        return None if self._example is None else self._example()


def default_tau_max(problems):
    """Past the last predicted stage: 1.15 x the last jump time + 0.3 (the largest over a batch)."""
    from .stages import stages
    return max(1.15 * float(stages(p).times[-1]) + 0.3 for p in problems)


def simulate_hadamard(family, problem, *, method="gd", lr=None, steps=None, tau_max=None, dtau=None,
                      times=None, rtol=None, atol=None, solver=None, record_every=None, record_log=None, runs=1,
                      key=0, dtype=None, optimizer="sgd", progress=None, on_divergence="raise"):
    """Train a u * v model.

    method="gd" : gradient descent on (u, v) with step ``lr``, ``steps`` steps or up to rescaled time
        ``tau_max`` (stepped in (u + v, u - v): no cancellation at tiny alpha).
    method="flow" : the exact gradient flow of (u, v), adaptive; on ``times`` (t), up to ``tau_max``
        (default: past the last predicted stage), or on the grid lr * step of "gd".
    method="dual" : the small-init form (E) of the same flow in rescaled time, adaptive
        (error-controlled, ``rtol``); ``times`` are then rescaled times tau, ``tau_max`` defaults to
        past the last predicted stage.  ``record_every`` (a tau step) / ``record_log`` (a count).
    method="dual_rk4" (or "dual" with ``dtau``) : fixed-step RK4 on (E) with step ``dtau`` (default
        0.02 / log(1/alpha)), records every ``record_every`` steps.

    ``problem`` may be a list of problems of one shape (e.g. several alphas): one batched run.
    Returns a Trajectory with .t (original time), .tau = t / log(1/alpha), .beta (T, p), .loss (T,)
    (and .conserved = u^2 - v^2 for "gd" and "flow").
    """
    from ...core.validation import check_choice
    check_choice("method", method, set(family.methods) | set(family.ode_methods))
    probs = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    for i, pb in enumerate(probs):
        check_instance(f"problem[{i}]", pb, HadamardProblem, "a DLNProblem or AttentionProblem")
    lams = np.array([pb.log_inv_alpha for pb in probs])
    if method == "dual" and dtau is not None:
        method = "dual_rk4"
    common = dict(record_every=record_every, record_log=record_log, runs=runs, key=key, dtype=dtype,
                  progress=progress, on_divergence=on_divergence, optimizer=optimizer, method=method,
                  desc=f"{family.name} {method}")
    if method == "gd":
        if lr is None:
            raise ValueError("method='gd' needs lr > 0")
        if steps is None:
            if tau_max is None:
                raise ValueError("method='gd' needs steps or tau_max")
            lr_min = float(np.min(np.asarray(lr, float)))
            steps = int(np.ceil(check_positive("tau_max", tau_max) * lams.max() / lr_min))
        return frontend.simulate(family, problem, lr=lr, steps=steps, **common)
    if method == "dual_rk4":
        step = 0.02 / lams.max() if dtau is None else check_positive("dtau", dtau)
        if steps is None:
            steps = int(np.ceil(check_positive("tau_max", default_tau_max(probs) if tau_max is None
                                               else tau_max) / step))
        return frontend.simulate(family, problem, lr=step, steps=steps, **common)
    # the adaptive methods: a record grid in their own time (t for "flow", tau for "dual")
    t_max = None
    if times is None and (lr is None or steps is None):
        tau_max = default_tau_max(probs) if tau_max is None else check_positive("tau_max", tau_max)
        t_max = tau_max * (lams.max() if method == "flow" else 1.0)
    return frontend.simulate(family, problem, lr=lr, steps=steps if t_max is None and times is None else None,
                             times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver, **common)
