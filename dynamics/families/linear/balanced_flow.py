"""The end-to-end flow of a balanced deep linear network (theory/saxe.md, "Balanced deep networks: the
end-to-end flow"; Arora, Cohen & Hazan, ICML 2018).

For W = W_N ... W_1 trained by gradient flow on a loss l(W) from a balanced init (W_{a+1}^T W_{a+1} = W_a W_a^T
for every a, conserved by the flow), the end-to-end matrix obeys, whatever the covariances,

    dW/dt = - sum_{j=1}^{N} (W W^T)^((j-1)/N) grad l(W) (W^T W)^((N-j)/N),      grad l(W) = W Sxx - Syx

for the regression loss ½ tr(W Sxx W^T) - tr(W Syx^T) + const: a (d_out, d_in) ODE instead of the N layers'.
The fractional powers come from the singular value decomposition W = U diag(s) V^T:
(W W^T)^a G (W^T W)^b = U [s_k^(2a) s_l^(2b) (U^T G V)_kl] V^T (not from eigendecompositions of W W^T, which square
the condition: their rounding noise, raised to a fractional power, would make the field rough and the adaptive
solver crawl).  Integrated by the library's adaptive solver
(``core.flow``: diffrax, jit-compiled) at a tight tolerance (``rtol``, default 1e-12): an exact reduced ODE,
solved numerically.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from ...core import engine
from ...core.flow import integrate
from ...core.steppers import Flow
from ...core.validation import check_array

__all__ = ["balance_gaps", "end_to_end_flow"]


def balance_gaps(W) -> np.ndarray:
    """max |W_{a+1}^T W_{a+1} - W_a W_a^T - lam_a I| / max_a |W_a|^2 for each consecutive pair (a = 1..N-1), lam_a
    the pair's mean diagonal gap; and the lam_a: (gaps, lams)."""
    scale = max(max(float(np.abs(w).max()) for w in W) ** 2, 1e-300)
    gaps, lams = [], []
    for a in range(len(W) - 1):
        C = W[a + 1].T @ W[a + 1] - W[a] @ W[a].T
        lam = float(np.trace(C)) / C.shape[0]
        gaps.append(float(np.abs(C - lam * np.eye(C.shape[0])).max()) / scale)
        lams.append(lam)
    return np.asarray(gaps), np.asarray(lams)


@functools.lru_cache(maxsize=16)
def _model(N: int):
    """The reduced ODE as an engine model (its "gradient" is minus the field), so that ``core.flow`` integrates it
    jit-compiled with the library's adaptive solver."""

    def grad(params, aux, ctx, key):
        W = params["W"]
        G = W @ ctx["Sxx"] - ctx["Syx"]
        loss = 0.5 * jnp.sum((W @ ctx["Sxx"]) * W) - jnp.sum(W * ctx["Syx"])
        if N == 1:
            return loss, {"W": G}
        # W = U diag(s) V^T: (W W^T)^a G (W^T W)^b = U [(s_k^2a s_l^2b) (U^T G V)_kl] V^T -- from the SVD, not from
        # eigh(W W^T), which would square the condition and feed rounding noise through the fractional powers
        U, sv, Vt = jnp.linalg.svd(W)            # full: U (d_out, d_out), Vt (d_in, d_in), sv (min(d_out, d_in),)
        # a rectangular W's extra left / right singular directions have singular value 0 (0^0 = 1: the j = 1 and
        # j = N terms keep G's components there)
        s_out = jnp.concatenate([sv, jnp.zeros(W.shape[0] - sv.shape[0], sv.dtype)])
        s_in = jnp.concatenate([sv, jnp.zeros(W.shape[1] - sv.shape[0], sv.dtype)])
        K = sum(s_out[:, None] ** (2.0 * (j - 1) / N) * s_in[None, :] ** (2.0 * (N - j) / N) for j in range(1, N + 1))
        return loss, {"W": U @ ((U.T @ G @ Vt.T) * K) @ Vt}

    def observe(params, aux, ctx):
        return {"W": params["W"]}

    return engine.Model(grad=grad, observe=observe, stochastic=False)


def end_to_end_flow(W0, Sxx, Syx, depth, times, *, rtol=1e-12):
    """W(t) (T, d_out, d_in) of the balanced depth-``depth`` network's end-to-end flow (module docstring) from the
    end-to-end map W0, at ``times`` (>= 0, increasing): integrated by ``core.flow`` (diffrax, jit) at ``rtol``."""
    W0 = check_array("W0", W0, ndim=2)
    t = check_array("times", times, ndim=1)
    if np.any(t < 0) or np.any(np.diff(t) < 0):
        raise ValueError("times must be >= 0 and increasing")
    grid = np.unique(np.concatenate([[0.0], t]))
    if grid.size == 1:
        return np.repeat(W0[None], t.size, axis=0)
    out = integrate(_model(int(depth)), {"W": jnp.asarray(W0)[None]}, {}, {"Sxx": jnp.asarray(Sxx)[None],
                    "Syx": jnp.asarray(Syx)[None]}, np.ones(1), times=grid, solver=Flow(rtol=rtol), progress=False,
                    desc="end-to-end flow")
    if out.status != 0:
        raise RuntimeError(f"the end-to-end flow's integration stopped: {out.message}")
    W = np.asarray(out.records["W"])[0]
    return W[np.searchsorted(grid, t)]
