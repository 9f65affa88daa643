"""The stability limit of gradient descent on a u * v model along the theory's path (theory/dln_steps.md
sec. 4): ``core.stability`` applied to the gradient-descent field of ``family.py`` in (w, z) = (u + v,
u - v) (a scaled rotation of (u, v): the same eigenvalues), along the exact gradient flow from the init
(``POINTS`` log-spaced times past the last predicted stage; at a finite alpha the path does not visit
the stage plateaus, so the plateaus alone would misplace the limit) and, for a DLN, at its exact endpoint.

A point beta of the path gives (w, z) in closed form: the flow conserves w z = c = alpha^2 (u0^2 - v0^2)
per coordinate and w^2 - z^2 = 4 beta, so

    w^2 = 2 beta + sqrt(4 beta^2 + c^2),   z^2 = -2 beta + sqrt(4 beta^2 + c^2),

with the signs of the init.  At a minimiser of an interpolating DLN the Jacobian is B H B^T,
B = [diag v; diag u], H = X^T X / n: 2 / lambda_max(D H D) with D^2 = u^2 + v^2 = 2 sqrt(beta^2 + alpha^4)
(tests/test_dln_steps.py checks the autodiff limit against it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ...core.stability import StabilityLimit, limit_along, step_limits
from .model import beta_from_wz
from .stages import default_tau_max

__all__ = ["path_stability", "wz_of_beta", "POINTS"]

#: points of the flow's path examined (log-spaced in t, and t = 0)
POINTS = 48


def wz_of_beta(problem, beta):
    """(w, z) on the flow's path where the model is at ``beta`` (p,) (closed form, module docstring)."""
    alpha = problem.init_scale
    w0, z0 = alpha * (problem.u0 + problem.v0), alpha * (problem.u0 - problem.v0)
    c = w0 * z0
    root = np.sqrt(4.0 * beta * beta + c * c)
    big = np.sqrt(2.0 * np.abs(beta) + root)          # the larger of |w|, |z|: no cancellation
    with np.errstate(divide="ignore", invalid="ignore"):
        small = np.where(big > 0, np.abs(c) / big, 0.0)   # |w z| = |c|
    w, z = np.where(beta >= 0, big, small), np.where(beta >= 0, small, big)
    return np.where(w0 < 0, -w, w), np.where(z0 < 0, -z, z)


@functools.lru_cache(maxsize=32)
def _field(loss_fn):
    vg = jax.grad(loss_fn)

    def field(params, data):
        w, z = params["w"], params["z"]
        g = vg(beta_from_wz(w, z), data)
        return {"w": g * w, "z": -g * z}

    return field


@functools.lru_cache(maxsize=16)
def path_stability(problem, init=None, *, path=True):
    """The largest stable lr of gradient descent on (u, v): the smallest along the exact flow from the
    init and (for a DLN) at its endpoint, or at the init alone (``init="init"``); ``path=False`` skips
    the flow (the init and the endpoint only: cheap, an upper bound of the path's).  Returns a
    ``StabilityLimit`` (``path_t``: gradient-flow times of the points, inf the endpoint).  Cached per
    problem (problems are compared by identity)."""
    if init is not None and not (isinstance(init, str) and init == "init"):
        raise ValueError(f"init={init!r}: a u * v model starts at alpha (u0, v0); give init=None (the path) or "
                         "'init' (the init alone)")
    data = {k: jnp.asarray(v) for k, v in problem.data.items()}
    fn = _field(type(problem).loss_fn)

    def field(params):
        return fn(params, data)

    betas, ts = [np.zeros(problem.p)], [0.0]
    if init is None and path:
        from ...core import frontend
        from ...core.family import get_family
        from ...core.steppers import Flow

        t_end = default_tau_max([problem]) * problem.log_inv_alpha
        t = np.concatenate([[0.0], np.geomspace(t_end * 1e-4, t_end, POINTS - 1)])
        sim = frontend.simulate(get_family(problem.name), problem, Flow(rtol=1e-8), times=t, progress=False)
        betas, ts = list(np.asarray(sim.beta, float)), list(np.asarray(sim.t, float))
    if init is None:
        end = problem.flow_endpoint()
        if end is not None:
            betas.append(end)
            ts.append(np.inf)
    pts = [dict(zip(("w", "z"), (jnp.asarray(x) for x in wz_of_beta(problem, b)))) for b in betas]
    if init is not None:
        ((lr, mu),) = step_limits(field, pts)
        return StabilityLimit(lr, mu, None, np.array([0.0]), np.array([lr]))
    return limit_along(field, pts, ts)
