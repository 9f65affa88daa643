"""The stability limit of gradient descent on the full deep linear network along the theory's path
(theory/discrete.md sec. 3): ``core.stability`` applied to the family's own gradient field at the
parameters the exact theory predicts.  ``dy.max_stable_lr`` reaches it through ``LinearFamily``."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from ...core.stability import StabilityLimit, limit_along, step_limits
from ...core.validation import check_int
from .network import encoder, init_params, loss_and_grads
from .theory import critical_times_linear, solve_linear, theory_spectrum

__all__ = ["path_stability"]


def path_stability(objective, problem, init=None, *, points=48):
    """The largest stable lr of gradient descent on the full network (``core.stability``), the smallest
    along the theory's path from the aligned init (``points`` times up to 3x the last critical time, and
    the fixed point), or at one given init (a dict of parameters, or an init name drawn with key 0).
    Returns a ``StabilityLimit``."""
    points = check_int("points", points, minimum=2)
    Sxx, Syx, Syy = (jnp.asarray(np.asarray(m, float)) for m in (problem.Sxx, problem.Syx, problem.Syy))

    if objective.target == "self":
        # JEPA's update uses the target T = Wbar at its current value: the field's Jacobian must see T move
        # (stop_gradient would hide it from forward-mode autodiff too).  R = A Sxx - T Syx is the residual
        # of the identity-target formulas with Syx replaced by T Syx, so those give the same field.
        as_identity = dataclasses.replace(objective, target="identity")

        def field(params):
            TSyx = encoder(params["W"]) @ Syx
            return loss_and_grads(as_identity, params, {}, Sxx, TSyx, Syy, full_loss=False)[1]
    else:
        def field(params):
            return loss_and_grads(objective, params, {}, Sxx, Syx, Syy, full_loss=False)[1]

    if init is not None and not (isinstance(init, str) and init == "aligned"):
        params = init_params(problem, objective, init, key=0)
        ((lr, mu),) = step_limits(field, [{k: jnp.asarray(v, jnp.float64) for k, v in params.items()}])
        return StabilityLimit(lr, mu, None, np.array([0.0]), np.array([lr]))
    theory_spectrum(problem, "max_stable_lr")                   # refuses a non-commuting problem, naming it
    L, U = problem.depth, np.asarray(problem.basis, float)
    with np.errstate(over="ignore", invalid="ignore"):
        tc = critical_times_linear(objective, problem)
    finite = tc[np.isfinite(tc)]
    t_end = 3.0 * float(finite.max()) if finite.size else 1.0
    t = np.concatenate([[0.0], np.geomspace(t_end * 1e-3, t_end, points - 1)])
    th = solve_linear(objective, problem, times=t)
    m = np.asarray(th.modes)
    x = np.sign(m) * np.abs(m) ** (1.0 / L)                      # per-layer modes along the path
    fp = np.asarray(objective.fixed_point(problem.lam / problem.sigma2, L), float)
    x = np.vstack([x, np.sign(fp) * np.abs(fp) ** (1.0 / L)])     # and the fixed point (t = inf)
    t = np.append(t, np.inf)

    def params_at(xi):
        Wa = (U * xi[None, :]) @ U.T                             # U diag(x) U^T
        out = {"W": jnp.asarray(np.stack([Wa] * L))}
        if objective.head:
            out["V"] = jnp.asarray(Wa)
        return out

    return limit_along(field, [params_at(xi) for xi in x], t)
