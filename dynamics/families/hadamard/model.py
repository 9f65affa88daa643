"""Models that see their parameters only through beta = u * v: the problem type and the maps to beta.

Shared by diagonal linear networks (``families/dln.py``) and diagonal attention
(``families/attention.py``); derivations in theory/rank_growth.md.  With g = grad L(beta) and
theta(0) = alpha (u0, v0):

    u' = -g * v,  v' = -g * u       =>   u_i^2 - v_i^2 is conserved,
    beta_i = (alpha^2 / 4) [a_i e^(2 S_i) - b_i e^(-2 S_i)],  a = (u0 + v0)^2,  b = (u0 - v0)^2,
    dS/dt = -g(beta(S))                                                               (E)

In rescaled time tau = t / log(1/alpha) and s = S / log(1/alpha), (E) reads ds/dtau = -g with
beta_i = (1/4) [a_i alpha^(2(1 - s_i)) - b_i alpha^(2(1 + s_i))]: integrating s (``method="dual"``)
reaches alpha = 1e-32 and below without underflow.  ``method="gd"`` is plain gradient descent on (u, v).
As alpha -> 0 beta is piecewise constant in tau; ``stages.py`` computes the plateaus and jump times, and
``family.py`` holds the family and its simulators.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ...core.validation import check_positive

__all__ = ["HadamardProblem", "beta_from_dual", "beta_from_wz", "check_alpha"]


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

    def regression(self):
        """(X (n, p), y (n,)) where the loss is the squared loss of the linear model beta (a DLN), else
        None."""
        return None

    def flow_endpoint(self):
        """(p,) where the gradient flow from alpha (u0, v0) ends, where known in closed form (a DLN:
        ``hadamard.interpolator``), else None."""
        return None


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


def beta_from_wz(w, z):
    """beta = u v = (w - z)(w + z) / 4 from w = u + v and z = u - v."""
    return 0.25 * (w - z) * (w + z)
