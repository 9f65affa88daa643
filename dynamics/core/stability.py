"""The step-size stability limit of gradient descent at a point of parameter space (theory/discrete.md sec. 3).

Gradient descent theta <- theta - lr F(theta) (F the gradient field; for a stop-gradient objective such
as JEPA not the gradient of one function) linearised at theta: delta <- (I - lr J) delta with J = dF/dtheta.
A direction with eigenvalue mu of J (Re mu > 0) is damped iff |1 - lr mu| < 1, i.e.

    lr < 2 Re(mu) / |mu|^2          (= 2 / mu for a real mu: 2 / lambda_max of the Hessian),      (1)

so the largest stable step at theta is the smallest of (1) over the eigenvalues with Re mu > 0
(eigenvalues with Re mu <= 0 are the directions the flow itself leaves, e.g. a saddle's: no step size
damps them).  J is formed by forward-mode autodiff, column by column, and its eigenvalues computed
densely up to ``DENSE_LIMIT`` parameters; beyond that a few eigenvalues of largest magnitude by ARPACK
(``scipy.sparse.linalg.eigs``) on Jacobian-vector products.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

__all__ = ["DENSE_LIMIT", "StabilityLimit", "step_limits", "limit_along", "warn_above_limit"]

#: parameters up to which J is formed densely (2048^2 float64 = 32 MiB)
DENSE_LIMIT = 2048


@dataclasses.dataclass(frozen=True)
class StabilityLimit:
    """The largest stable learning rate of gradient descent (``lr``; ``float(limit)`` is it), the eigenvalue
    of the Jacobian of the gradient field that sets it (``eigenvalue``), the time on the theory's path
    where it binds (``t``; None at a single point), and the limit at every point examined (``path_t``,
    ``path_lr``)."""

    lr: float
    eigenvalue: complex
    t: float | None
    path_t: np.ndarray
    path_lr: np.ndarray

    def __float__(self):
        return float(self.lr)

    def __repr__(self):
        where = "" if self.t is None else f", binding at t = {self.t:.4g}"
        return f"StabilityLimit(lr = {self.lr:.6g}{where}; {np.size(self.path_lr)} point(s) examined)"

    def __str__(self):
        where = "" if self.t is None else f" (binding at t = {self.t:.4g} on the theory's path)"
        mu = self.eigenvalue
        mu_s = f"{mu.real:.6g}" if abs(mu.imag) <= 1e-12 * abs(mu) else f"{mu:.6g}"
        return f"stable for lr < {self.lr:.6g} = 2 Re(mu) / |mu|^2 with mu = {mu_s}{where}"


def _limit_of(mu):
    mu = np.asarray(mu, complex)
    pos = mu.real > 0
    if not pos.any():
        return np.inf, 0j
    lim = 2.0 * mu.real[pos] / np.abs(mu[pos]) ** 2
    i = int(np.argmin(lim))
    return float(lim[i]), complex(mu[pos][i])


def step_limits(field, points) -> list[tuple[float, complex]]:
    """[(largest stable lr, the eigenvalue that sets it)] of theta <- theta - lr field(theta) at each of
    ``points`` (pytrees of float64 arrays of one structure); ``field(params)`` returns a pytree of the
    same structure.  One compiled Jacobian serves every point."""
    points = list(points)
    flat0, unravel = jax.flatten_util.ravel_pytree(points[0])

    def f(theta):
        return jax.flatten_util.ravel_pytree(field(unravel(theta)))[0]

    flats = [jnp.asarray(jax.flatten_util.ravel_pytree(p)[0], jnp.float64) for p in points]
    n = flat0.size
    if n <= DENSE_LIMIT:
        jac = jax.jit(jax.jacfwd(f))
        return [_limit_of(np.linalg.eigvals(np.asarray(jac(x)))) for x in flats]
    from scipy.sparse.linalg import LinearOperator, eigs    # imported when first used

    jvp = jax.jit(lambda x, v: jax.jvp(f, (x,), (v,))[1])
    out = []
    for x in flats:
        op = LinearOperator((n, n), matvec=lambda v, x=x: np.asarray(jvp(x, jnp.asarray(np.ravel(v), jnp.float64))),
                            dtype=np.float64)
        out.append(_limit_of(eigs(op, k=6, which="LM", return_eigenvectors=False, tol=1e-8)))
    return out


def limit_along(field, points, times) -> StabilityLimit:
    """The smallest step limit of ``field`` over ``points`` (pytrees of parameters), one per entry of
    ``times`` (where on the path each lies; inf for a fixed point): a ``StabilityLimit`` binding at the
    smallest, with every point's limit in ``path_lr``."""
    lims = step_limits(field, points)
    lrs = np.array([lr for lr, _ in lims])
    i = int(np.argmin(lrs))
    return StabilityLimit(float(lrs[i]), lims[i][1], float(np.asarray(times, float)[i]),
                          np.asarray(times, float), lrs)


def warn_above_limit(lr, limit, where, theory, *, stacklevel=7):
    """The one warning a simulator gives before running gradient descent at ``lr`` above the stability
    limit ``limit`` (a float), ``where`` it binds ("at the jepa fixed point", ...), derived in ``theory``
    (a theory/ page and section)."""
    warnings.warn(f"lr = {lr:g} is above the stability limit 2/lambda_max = {limit:.6g} of gradient descent {where} "
                  f"({lr / limit:.3g}x): the run will leave the theory's path there (oscillate or diverge) once "
                  f"rounding excites the unstable direction; use lr < {limit:.4g} (dy.max_stable_lr; {theory})",
                  RuntimeWarning, stacklevel=stacklevel)
