"""Gradient descent as it is run: the exact per-mode discrete map of the deep linear families from the
aligned balanced init (theory/discrete.md).

From W_a(0) = V(0) = x0 I with x0 = eps^(1/L), every layer and the head stay x_i I in the feature basis
under gradient descent on loss (1) of ``network.py``, and every one of them receives the same update,
so each feature i follows one scalar map (theory/discrete.md sec. 1):

    A = x^(L+1) (with a head) or x^L,   T = x^L (JEPA: stop-gradient target) or 1,
    r = sigma2 A - lam T,                g = r x^L (with a head) or r x^(L-1),
    x_(k+1) = x_k - lr g(x_k).                                                          (1)

Its flow limit (lr -> 0) is the per-mode ODE of ``theory.py``; at finite lr the map *is* gradient
descent, so a simulation from the aligned init agrees with it to rounding (measured: ~1e-14 relative
per record; ``crosscheck`` uses ``core.compare.DISCRETE_MAP_RTOL``).  For two layers without a head (Saxe) the
end-to-end mode u = x^2 follows u <- u (1 + lr (lam - sigma2 u))^2 (Gidel, Bach & Lacoste-Julien 2019),
which ``tests/test_discrete.py`` ports as the independent reference.

Stability of (1) at its fixed point x* (theory/discrete.md sec. 2): g'(x*) = sigma2 x*^(2L) (JEPA),
(L+1) sigma2 x*^(2L) (MAE), L sigma2 x*^(2L-2) (Saxe); the map converges monotonically for
lr g'(x*) < 1, with oscillation for 1 < lr g'(x*) < 2, and leaves x* for lr g'(x*) > 2.  That is the stability of the *aligned path*; the full network can be
less stable along other directions (``fixed_point_eigenvalues`` here; along the path ``stability.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["steps_of", "discrete_modes", "map_slope", "fixed_point_eigenvalues", "fixed_point_limit"]


def steps_of(times, lr) -> np.ndarray:
    """The whole steps k with times = lr k (int64), or a ValueError naming the first time off that grid.

    Gradient descent records at t = lr * step, computed in float64; a time within 1e-9 (relative) of a
    whole step is that step."""
    times = np.asarray(times, float)
    k = np.rint(times / lr)
    off = np.abs(k * lr - times) > 1e-9 * np.maximum(np.abs(times), lr)
    if np.any(off):
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"times must lie on gradient descent's grid lr * step for the discrete map (lr = {lr:g}): "
                         f"times[{i}] = {times[i]:.17g} is step {times[i] / lr:.6g}; pass the simulation's own "
                         "times (sim.t), or leave lr out for the flow")
    if k.size and k.max() > 2 ** 62:
        raise ValueError(f"times / lr up to {k.max():.3g} steps: too many steps for the discrete map")
    return k.astype(np.int64)


def map_slope(objective, lam, sigma2, L):
    """g'(x*) of map (1) at the fixed point x* of each feature: the map is stable there iff
    0 < lr g'(x*) < 2 (theory/discrete.md sec. 2).  x* = rho (JEPA), rho^(1/(L+1)) (MAE), rho^(1/L)
    (Saxe); by the chain rule at r(x*) = 0, g'(x*) = r'(x*) x*^L (head) or r'(x*) x*^(L-1)."""
    lam, sigma2 = np.asarray(lam, float), np.asarray(sigma2, float)
    rho = lam / sigma2
    xs = np.asarray(objective.scale(rho, L), float)
    head, self_target = objective.head, objective.target == "self"
    if head and self_target:     # r = x^L (sigma2 x - lam): r'(x*) = sigma2 x*^L where sigma2 x* = lam
        dr = sigma2 * xs ** L
    elif head:                   # r = sigma2 x^(L+1) - lam
        dr = (L + 1) * sigma2 * xs ** L
    else:                        # r = sigma2 x^L - lam
        dr = L * sigma2 * xs ** (L - 1)
    return dr * (xs ** L if head else xs ** (L - 1))


def fixed_point_eigenvalues(objective, lam, sigma2, L):
    """(F, F) eigenvalues mu_ij of the full network's gradient-field Jacobian at the aligned fixed point,
    one per pair (i, j) of features (theory/discrete.md sec. 3): with x the per-layer fixed point,

        c_k = x_i^(K-k) x_j^(k-1)  (k = 1..K; K = L + 1 with a head, L without),
        w_a = x_i^(L-a) x_j^(a-1)  (a = 1..L),
        mu_ij = sigma2_j sum_k c_k^2 - [JEPA] lam_j x_i sum_a w_a^2.

    Each (i, j) entry of every layer and the head forms a block c r^T of rank one (the residual vanishes
    at the fixed point), whose one nonzero eigenvalue is r . c; every other eigenvalue is 0."""
    lam, sigma2 = np.asarray(lam, float), np.asarray(sigma2, float)
    x = np.asarray(objective.scale(lam / sigma2, L), float)
    K = L + 1 if objective.head else L
    xi, xj = x[:, None], x[None, :]
    cc = sum(xi ** (2 * (K - k)) * xj ** (2 * (k - 1)) for k in range(1, K + 1))
    mu = sigma2[None, :] * cc
    if objective.target == "self":
        ww = sum(xi ** (2 * (L - a)) * xj ** (2 * (a - 1)) for a in range(1, L + 1))
        mu = mu - lam[None, :] * xi * ww
    return mu


def fixed_point_limit(objective, problem) -> float:
    """2 / max mu_ij of :func:`fixed_point_eigenvalues` (closed form, O(F^2)): the largest stable lr of
    gradient descent at the theory's fixed point; inf where the problem is outside the exact theory
    (no common eigenbasis, or a feature with lam <= 0)."""
    if not problem.diagonalisable or np.any(problem.lam <= 0):
        return np.inf
    mu = fixed_point_eigenvalues(objective, problem.lam, problem.sigma2, problem.depth)
    top = float(np.max(mu))
    return 2.0 / top if top > 0 else np.inf


@functools.partial(jax.jit, static_argnames=("L", "head", "self_target"))
def _iterate(x0, lam, sigma2, lr, increments, *, L, head, self_target):
    """x after each cumulative block of ``increments`` steps of map (1); (T, F)."""

    def step(_, x):
        xL = x ** L
        a = xL * x if head else xL
        tgt = xL if self_target else 1.0
        r = sigma2 * a - lam * tgt
        g = r * (xL if head else x ** (L - 1))
        return x - lr * g

    def block(x, n):
        x = jax.lax.fori_loop(0, n, step, x)
        return x, x

    return jax.lax.scan(block, x0, increments)[1]


def discrete_modes(objective, lam, sigma2, x0, L, lr, steps):
    """Per-layer modes x (T, F) of map (1) at the whole ``steps`` (int, any order) from x0 (F,)."""
    steps = np.asarray(steps, np.int64)
    order = np.argsort(steps, kind="stable")
    s = steps[order]
    inc = np.diff(s, prepend=0)
    xs = _iterate(jnp.asarray(x0, jnp.float64), jnp.asarray(lam, jnp.float64), jnp.asarray(sigma2, jnp.float64),
                  jnp.float64(lr), jnp.asarray(inc), L=int(L), head=bool(objective.head),
                  self_target=objective.target == "self")
    out = np.empty((steps.size, np.size(lam)))
    out[order] = np.asarray(xs)
    return out

