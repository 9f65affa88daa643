"""The exact gradient flow of a two-layer linear network from any lambda-balanced init (theory/saxe.md,
"From any lambda-balanced init"; Fukumizu 1998, Braun, Domine, Fitzgerald & Saxe 2022).

Regression with whitened input (Sxx = I), target map S = Syx (d_out, d_in), network Wbar = W2 W1 with
W1 (h, d_in), W2 (d_out, h), loss ½ ||S - W2 W1||_F^2 + const.  If the init is lambda-balanced,
W2^T W2 - W1 W1^T = lambda I (conserved by the flow), then Q = [W1^T; W2] ((d_in + d_out), h) obeys
dQ/dt = F Q - ½ Q Q^T Q and P = Q Q^T the matrix Riccati equation dP/dt = F P + P F - P^2 with

    F = [[-lambda/2 I, S^T], [S, lambda/2 I]],

solved by P(t) = e^{Ft} Q0 M(t)^-1 Q0^T e^{Ft},  M(t) = I + Q0^T K(t) Q0,  K(t) = int_0^t e^{2Fs} ds.
Evaluated as written it loses digits as e^{Ft} grows; in F's eigenbasis (F = O diag(Lambda) O^T, G = O^T Q0
split into the h largest eigenvalues "+" and the rest "-", H = G_- G_+^-1) the same P is

    P'_{++} = C^-1,   P'_{-+} = E_- H E_+^-1 C^-1,   P'_{--} = E_- H E_+^-1 C^-1 E_+^-1 H^T E_-,
    C = E_+^-1 (G_+^-T G_+^-1 + H^T D_- H) E_+^-1 + D~_+,

with E = e^{Lambda t}, D = (e^{2 Lambda t} - 1) / (2 Lambda), D~_+ = D_+ e^{-2 Lambda_+ t}: every factor bounded,
so P is accurate to rounding at any t.  Wbar(t) is P's lower-left block.  Needs G_+ invertible (the init
not orthogonal to the growing directions: det(W2 W1(0)) and det(S) of one sign when lambda = 0) and h equal
to the number of F's non-negative eigenvalues (h = d_in = d_out here).
"""

from __future__ import annotations

import numpy as np

from ...core.validation import check_array
from .balanced_flow import balance_gaps

__all__ = ["balance", "two_layer_flow"]


def balance(W1, W2, *, tol=1e-10):
    """lambda with W2^T W2 - W1 W1^T = lambda I, or a ValueError naming how far the init is from balanced
    (``balanced_flow.balance_gaps``, the one balance measure)."""
    gaps, lams = balance_gaps([W1, W2])
    if gaps[0] > tol:
        raise ValueError(f"the exact two-layer solution needs a lambda-balanced init, W2^T W2 - W1 W1^T = lambda I; "
                         f"this init is off by {gaps[0]:.2g} of max |W_a|^2 (> {tol:g}); build one with "
                         "dy.inits.balanced, or simulate this init with method='flow'")
    return float(lams[0])


def two_layer_flow(W1, W2, S, times):
    """Wbar(t) = W2(t) W1(t) (T, d_out, d_in) of the gradient flow of ½ ||S - W2 W1||^2 from a lambda-balanced
    (W1, W2) at ``times`` (module docstring), and lambda."""
    W1 = check_array("W1", W1, ndim=2)
    W2 = check_array("W2", W2, ndim=2)
    S = check_array("S", S, ndim=2)
    t = check_array("times", times, ndim=1)
    h, d_in = W1.shape
    d_out = S.shape[0]
    if W2.shape != (d_out, h) or S.shape[1] != d_in:
        raise ValueError(f"shapes do not chain: W1 {W1.shape}, W2 {W2.shape}, S {S.shape} (S must be (d_out, d_in))")
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    lam = balance(W1, W2)
    n = d_in + d_out
    F = np.block([[-0.5 * lam * np.eye(d_in), S.T], [S, 0.5 * lam * np.eye(d_out)]])
    ev, O = np.linalg.eigh(F)
    ev, O = ev[::-1], O[:, ::-1]                 # descending: the h largest first
    if h > n or ev[h - 1] < -1e-12 * max(1.0, abs(ev[0])):
        raise ValueError(f"the two-layer solution needs the hidden width h = {h} at most the number of F's "
                         f"non-negative eigenvalues ({int(np.sum(ev >= 0))})")
    Q0 = np.concatenate([W1.T, W2], axis=0)
    G = O.T @ Q0
    Gp, Gm = G[:h], G[h:]
    cond = np.linalg.cond(Gp)
    if not np.isfinite(cond) or cond > 1e12:
        why = ""
        if S.shape[0] == S.shape[1] == h:
            a, b = np.linalg.det(W2 @ W1), np.linalg.det(S)
            if a * b < 0:
                why = f"det(W2 W1(0)) = {a:.3g} and det(S) = {b:.3g} have opposite signs, so Wbar must pass a singular matrix; "
        raise ValueError(f"the init has (almost) no component along some growing direction of the flow (condition "
                         f"number of G_+ = {cond:.3g}): {why}the closed form needs det(W2 W1(0)) and det(S) of one "
                         "sign; simulate with method='flow' (dy.inits.balanced draws inits of the right sign)")
    Gp_inv = np.linalg.inv(Gp)
    A = Gp_inv.T @ Gp_inv
    Hm = Gm @ Gp_inv                              # (n - h, h)
    lp, lm = ev[:h], ev[h:]
    # every time at once: (T, h) and (T, n - h) diagonal factors and a (T, h, h) batch of C
    Ep_inv = np.exp(-np.outer(t, lp))
    Em = np.exp(np.outer(t, lm))
    with np.errstate(divide="ignore", invalid="ignore"):
        Dm = np.where(lm != 0, np.expm1(2 * np.outer(t, lm)) / (2 * np.where(lm != 0, lm, 1.0)), t[:, None])
        Dp = np.where(lp != 0, -np.expm1(-2 * np.outer(t, lp)) / (2 * np.where(lp != 0, lp, 1.0)), t[:, None])
    inner = A[None] + (Hm.T[None] * Dm[:, None, :]) @ Hm[None]                 # G_+^-T G_+^-1 + H^T D_- H
    C = Ep_inv[:, :, None] * inner * Ep_inv[:, None, :] + Dp[:, :, None] * np.eye(h)[None]
    Cinv = np.linalg.inv(0.5 * (C + np.swapaxes(C, 1, 2)))                    # P'_{++}
    K = Em[:, :, None] * Hm[None] * Ep_inv[:, None, :]                         # E_- H E_+^-1
    Pmp = K @ Cinv                                                             # P'_{-+}
    Pmm = Pmp @ np.swapaxes(K, 1, 2)                                           # P'_{--}
    # Wbar: the lower-left block of O P' O^T, i.e. O_low P' O_up^T with O_up = O[:d_in], O_low = O[d_in:]
    Up, Um = O[:d_in, :h], O[:d_in, h:]
    Lp, Lm = O[d_in:, :h], O[d_in:, h:]
    out = (Lp @ Cinv @ Up.T + Lp @ np.swapaxes(Pmp, 1, 2) @ Um.T + Lm @ Pmp @ Up.T + Lm @ Pmm @ Um.T)
    return out, lam
