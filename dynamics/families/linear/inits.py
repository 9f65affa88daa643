"""Init builders for the deep linear networks (``dy.inits``): the arrays a simulator's ``init=`` takes, with the
structure an exact theory needs (theory/saxe.md, "From any lambda-balanced init").
"""

from __future__ import annotations

import math

import jax
import numpy as np

from ...core.keys import as_key, unstack_keys
from ...core.linalg import random_rotation
from ...core.validation import check_instance, check_positive
from .network import encoder
from .problems import LinearProblem

__all__ = ["balanced"]


def _psd_sqrt(M):
    w, Q = np.linalg.eigh(0.5 * (M + M.T))
    return (Q * np.sqrt(np.maximum(w, 0.0))) @ Q.T


def balanced(problem, lam=0.0, *, scale=None, key):
    """A random lambda-balanced init {"W": (L, d, d)}: W_{a+1}^T W_{a+1} - W_a W_a^T = lam I for every a.

    W_1 has i.i.d. N(0, scale^2 / d) entries (``scale`` default: the problem's per-layer scale
    init_scale^(1/L)); each next layer is R_a (W_a W_a^T + lam I)^(1/2) with R_a a random rotation, all drawn
    from ``key``, the last rotation's sign chosen so that det(Wbar(0)) has the sign of det(Syx).  lam = 0: zero-balanced (the flow then keeps every layer's singular values tied); lam may be
    negative down to minus the smallest eigenvalue of W_a W_a^T (refused below it, naming the bound).  Not
    aligned with the problem's features, not small: the init of the two-layer exact theory
    (``solve_saxe(problem, times=..., init=...)``)."""
    check_instance("problem", problem, LinearProblem, "a problem object (an SSLProblem or a RegressionProblem)")
    if not problem.plain:
        raise ValueError(f"problem: balanced inits are drawn for the square network; this one has layers "
                         f"{problem.layer_shapes()} (build a balanced init of your own as a dict of its layers, "
                         "{'W': [W_1, ..., W_L]}, or use the problem's square form, problem.with_shape())")
    lam = float(lam) if isinstance(lam, (int, float)) and not isinstance(lam, bool) else lam
    if not isinstance(lam, float) or not math.isfinite(lam):
        raise ValueError(f"lam must be a finite number, got {lam!r}")
    L, d = problem.depth, problem.d
    scale = problem.init_scale ** (1.0 / L) if scale is None else check_positive("scale", scale)
    keys = unstack_keys(jax.random.split(as_key(key), L))
    W = [scale / math.sqrt(d) * np.asarray(jax.random.normal(keys[0], (d, d), dtype=np.float64))]
    for a in range(1, L):
        M = W[-1] @ W[-1].T + lam * np.eye(d)
        low = float(np.linalg.eigvalsh(W[-1] @ W[-1].T).min())
        if lam < -low:
            raise ValueError(f"lam = {lam:g} is below -{low:.3g}, minus the smallest eigenvalue of W_{a} W_{a}^T: no "
                             f"layer {a + 1} can satisfy W^T W = W_{a} W_{a}^T + lam I; use lam >= {-low:.3g} (or a larger "
                             "scale)")
        W.append(random_rotation(d, key=keys[a]) @ _psd_sqrt(M))
    # the end-to-end map's determinant takes the sign of det(Syx) (flipping one row of the last rotation keeps
    # the balance): from the other sign Wbar must pass through a singular matrix, where the two-layer closed
    # form does not reach (theory/saxe.md, "From any lambda-balanced init")
    target = np.sign(np.linalg.det(problem.Syx))
    if target != 0 and np.sign(np.linalg.det(encoder(np.stack(W)))) == -target:
        W[-1] = W[-1].copy()
        W[-1][0] *= -1.0
    return {"W": np.stack(W)}
