"""A stage theory for two matrices from a small random init (theory/saxe.md, "From a small random init").

Network W2 W1 (Saxe regression at depth 2; MAE at depth 1 is the same network, head V = W2), any Sxx, Syx =
U diag(s) V^T (its SVD).  While the weights are small the flow is linear and sees only Syx,

    dW1/dt = W2^T Syx,   dW2/dt = Syx W1^T,

so for each singular triple the hidden vectors a_i = W1 v_i, b_i = W2^T u_i obey da_i/dt = s_i b_i,
db_i/dt = s_i a_i: the sum c_i = a_i + b_i grows as e^(s_i t), the difference decays as e^(-s_i t), and the
directions outside Syx's singular vectors do not grow.  After a few 1 / s_i the network is its growing part,

    W1_eff = 1/2 sum_i c_i v_i^T,   W2_eff = 1/2 sum_i u_i c_i^T,     c_i = W1(0) v_i + W2(0)^T u_i,      (1)

which is exactly zero-balanced (W2_eff^T W2_eff = W1_eff W1_eff^T = C C^T / 4): the unstable manifold of the
origin.  From it the flow is solved exactly -- the two-layer Riccati closed form for Sxx = I, the balanced
end-to-end flow otherwise (theory/saxe.md) -- which carries the features' competition for hidden directions
exactly.  The approximation is only the discarded decaying part and the nonlinear terms of the first few
1 / s_i (of relative size the effective init m0_i / rho_i), measured against the exact flow in
``benchmarks/results/small_init_validity.md``; the stated error is calibrated there (``VALIDITY``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["effective_init", "effective_modes", "error_estimates", "VALIDITY"]

#: the stated errors, calibrated on benchmarks/results/small_init_validity.md: over every two-matrix gaussian cell
#: there the largest critical-time error and curve error (of the gains, over the largest fixed point) per
#: sqrt(max_i m0_i / rho_i) of the run were 0.48 and 1.96; these constants give a factor 2 of margin.  An
#: effective init above max_init of a fixed point is refused (not small)
VALIDITY = {"time_constant": 1.0, "curve_constant": 4.0, "max_init": 0.05,
            "source": "benchmarks/results/small_init_validity.md"}


def effective_init(W1, W2, Syx, *, tol=1e-12):
    """(W1_eff, W2_eff) of (1): the zero-balanced growing part of the two-matrix network (W1 (h, d_in),
    W2 (d_out, h), Syx (d_out, d_in); zero singular values grow nothing and are dropped)."""
    U, s, Vt = np.linalg.svd(np.asarray(Syx, float), full_matrices=False)
    keep = s > tol * max(float(s.max(initial=0.0)), 1e-300)
    U, V = U[:, keep], Vt[keep].T
    C = np.asarray(W1, float) @ V + np.asarray(W2, float).T @ U
    return 0.5 * C @ V.T, 0.5 * U @ C.T


def effective_modes(W1_eff, W2_eff, U, V):
    """m0_i = u_i^T W2_eff W1_eff v_i = |c_i|^2 / 4 in the problem's feature frame (U, V)."""
    return np.einsum("ji,jk,ki->i", U, W2_eff @ W1_eff, V)


def error_estimates(m0, rho):
    """(time error, curve error) the theory states for effective inits m0 (``VALIDITY``): constants times
    sqrt(max_i m0_i / rho_i)."""
    m0, rho = np.asarray(m0, float), np.asarray(rho, float)
    r = float(np.sqrt(np.max(np.where(rho > 0, np.abs(m0) / np.where(rho > 0, rho, 1.0), 0.0))))
    return min(1.0, VALIDITY["time_constant"] * r), min(1.0, VALIDITY["curve_constant"] * r)
