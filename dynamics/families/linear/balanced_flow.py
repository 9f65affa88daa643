"""The end-to-end flow of a balanced deep linear network (theory/saxe.md, "Balanced deep networks: the
end-to-end flow"; Arora, Cohen & Hazan, ICML 2018).

For W = W_N ... W_1 trained by gradient flow on a loss l(W) from a balanced init (W_{a+1}^T W_{a+1} = W_a W_a^T
for every a, conserved by the flow), the end-to-end matrix obeys, whatever the covariances,

    dW/dt = - sum_{j=1}^{N} (W W^T)^((j-1)/N) grad l(W) (W^T W)^((N-j)/N),      grad l(W) = W Sxx - Syx

for the regression loss ½ tr(W Sxx W^T) - tr(W Syx^T) + const: a (d_out, d_in) ODE instead of the N layers'.
The fractional powers come from the eigendecompositions of the positive semi-definite W W^T and W^T W
(eigenvalues below zero by rounding are clipped to 0).  Integrated here with scipy's DOP853 at a tight
tolerance (``rtol``; atol = rtol x 1e-3 x the largest initial entry): an exact reduced ODE, solved numerically.
"""

from __future__ import annotations

import numpy as np

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


def _power(M, p):
    w, Q = np.linalg.eigh(0.5 * (M + M.T))
    return (Q * np.maximum(w, 0.0) ** p) @ Q.T


def end_to_end_flow(W0, Sxx, Syx, depth, times, *, rtol=1e-12):
    """W(t) (T, d_out, d_in) of the balanced depth-``depth`` network's end-to-end flow (module docstring) from the
    end-to-end map W0, at ``times`` (increasing, from 0)."""
    from scipy.integrate import solve_ivp
    W0 = check_array("W0", W0, ndim=2)
    t = check_array("times", times, ndim=1)
    if np.any(t < 0) or np.any(np.diff(t) < 0):
        raise ValueError("times must be >= 0 and increasing")
    N = int(depth)
    shape = W0.shape

    def field(_, y):
        W = y.reshape(shape)
        G = W @ Sxx - Syx
        if N == 1:
            return -G.ravel()
        A, B = W @ W.T, W.T @ W
        out = np.zeros_like(W)
        for j in range(1, N + 1):
            left = np.eye(shape[0]) if j == 1 else _power(A, (j - 1) / N)
            right = np.eye(shape[1]) if j == N else _power(B, (N - j) / N)
            out += left @ G @ right
        return -out.ravel()

    if t[-1] == 0:
        return np.repeat(W0[None], t.size, axis=0)
    atol = rtol * 1e-3 * max(float(np.abs(W0).max()), 1e-300)
    sol = solve_ivp(field, (0.0, float(t[-1])), W0.ravel(), method="DOP853", t_eval=t, rtol=rtol, atol=atol)
    if sol.status != 0:
        raise RuntimeError(f"the end-to-end flow's integration failed: {sol.message}")
    return sol.y.T.reshape(t.size, *shape)
