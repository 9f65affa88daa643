"""A stage theory for two matrices from a small random init (theory/saxe.md, "From a small random init").

Network W2 W1 (Saxe regression at depth 2; MAE at depth 1 is the same network, head V = W2), covariances with a
common basis: Syx = U diag(lam) V^T, V^T Sxx V = diag(sigma2).  While the weights are small the flow is linear,

    dW1/dt = W2^T Syx,   dW2/dt = Syx W1^T,

and for each feature i the hidden vectors a_i = W1 v_i, b_i = W2^T u_i obey da_i/dt = lam_i b_i, db_i/dt = lam_i a_i:
c_i = a_i + b_i grows as e^(lam_i t), a_i - b_i decays, and the mode m_i = u_i^T W2 W1 v_i = a_i . b_i becomes
|c_i(0)|^2 / 4 e^(2 lam_i t) -- the aligned init's early solution from the *effective init*

    m0_i = |c_i(0)|^2 / 4.                                                                       (1)

After it the mode follows the aligned init's per-mode logistic m = rho / (1 + (rho / m0 - 1) e^(-2 lam t)) exactly
as from an aligned init of that size.  Features compete for hidden directions: once feature j is learned its
hidden direction c_j is held (the component of another c_i along it is pushed back, not grown), so the features
are taken greedily in order of their predicted critical times and each c_i is orthogonalised against the hidden
directions of the features learned before it (Gram-Schmidt, at most h of them: a width-h hidden layer holds h).
The stages: order, critical times (half the fixed point) and the trajectories; the error is measured against the
exact flow in ``benchmarks/results/small_init_validity.md`` (it shrinks like 1 / log(1/eps)).
"""

from __future__ import annotations

import numpy as np

__all__ = ["effective_inits", "logistic_modes", "half_time", "stage_theory", "error_estimates", "VALIDITY"]

#: the stated errors, calibrated on benchmarks/results/small_init_validity.md: over every cell there, the 90th
#: percentile of the critical-time error (and of the curves' error, |m_flow - m_theory| / max rho, larger: a shift
#: of a steep rise) times ln(rho / m0) of the cell's smallest effective init stays below these constants
VALIDITY = {"time_constant": 0.3, "curve_constant": 3.0, "max_init": 0.05,
            "source": "benchmarks/results/small_init_validity.md"}


def logistic_modes(lam, sigma2, m0, t):
    """The two-matrix per-mode solution m(t) = rho / (1 + (rho / m0 - 1) e^(-2 lam t)) on times t (T,) -> (T, F);
    0 where m0 = 0 (a feature with no hidden direction left)."""
    lam, sigma2, m0 = (np.asarray(a, float) for a in (lam, sigma2, m0))
    rho = lam / sigma2
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        m = rho / (1.0 + (rho / m0 - 1.0) * np.exp(-2.0 * lam * np.asarray(t, float)[:, None]))
    return np.where(m0 > 0, m, 0.0)


def half_time(lam, sigma2, m0, fraction=0.5):
    """The time m reaches ``fraction`` x rho from m0: ln((rho / m0 - 1) / (1 / fraction - 1)) / (2 lam) (0 where m0 is
    already past it); inf where m0 = 0."""
    lam, sigma2, m0 = (np.asarray(a, float) for a in (lam, sigma2, m0))
    rho = lam / sigma2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log((rho / np.where(m0 > 0, m0, 1.0) - 1.0) / (1.0 / fraction - 1.0)) / (2.0 * lam)
    return np.where(m0 > 0, np.maximum(np.nan_to_num(t, nan=0.0), 0.0), np.inf)


def error_estimates(m0, rho):
    """(time error, curve error) the theory states for these effective inits (``VALIDITY``): constants over
    ln(rho / m0) of the smallest such log among the learned features."""
    m0, rho = np.asarray(m0, float), np.asarray(rho, float)
    ok = m0 > 0
    logs = np.log(rho[ok] / m0[ok]) if ok.any() else np.array([np.inf])
    lg = max(float(np.min(logs)), 1e-300)
    return VALIDITY["time_constant"] / lg, min(1.0, VALIDITY["curve_constant"] / lg)


def stage_theory(W1, W2, U, V, lam, sigma2, syy, times, *, what, loss_constant=0.0):
    """(fields, fixed point, approximation info) of the two-matrix stage theory (module docstring) from the
    layers W1, W2 at t = 0, on ``times``: modes = gains = m(t) (T, F) and the loss; refuses an init that is not
    small (an effective init above ``VALIDITY["max_init"]`` of its fixed point)."""
    lam, sigma2, syy = (np.asarray(a, float) for a in (lam, sigma2, syy))
    rho = np.where(lam > 0, lam / sigma2, 0.0)
    m0, order = effective_inits(W1, W2, U, V, lam, sigma2)
    big = np.flatnonzero(m0 > VALIDITY["max_init"] * np.where(rho > 0, rho, np.inf))
    if big.size:
        raise ValueError(f"{what}: the init is not small (feature(s) {big.tolist()} start at an effective "
                         f"{np.round(m0[big] / rho[big], 3).tolist()} of their fixed point, above "
                         f"{VALIDITY['max_init']:g}): the small-init stage theory does not apply; simulate this init "
                         "with method='flow'")
    m = logistic_modes(lam, sigma2, m0, times)
    loss = np.sum(0.5 * sigma2 * m ** 2 - lam * m + 0.5 * syy, axis=1) + loss_constant
    t_err, c_err = error_estimates(m0, rho)
    info = {"name": "small-init stages (two matrices)", "error_estimate": t_err, "curve_error": c_err,
            "exact": False, "order": order.tolist(), "effective_init": m0.tolist(),
            "source": VALIDITY["source"], "source_page": "theory/saxe.md, \"From a small random init\""}
    fp = np.where(m0 > 0, rho, 0.0)
    return {"modes": m, "gains": np.abs(m), "loss": loss}, fp, info


def effective_inits(W1, W2, U, V, lam, sigma2):
    """(m0 (F,), order (F,)): each feature's effective init (1) after the greedy orthogonalisation, and the order
    in which the features are learned (indices; features with no hidden direction left, or lam <= 0, at the end,
    their m0 = 0).  W1 (h, d_in), W2 (d_out, h); U (d_out, F), V (d_in, F) the features' directions."""
    C = np.asarray(W1, float) @ np.asarray(V, float) + np.asarray(W2, float).T @ np.asarray(U, float)   # (h, F)
    lam, sigma2 = np.asarray(lam, float), np.asarray(sigma2, float)
    h, F = C.shape
    m0 = np.zeros(F)
    left = [i for i in range(F) if lam[i] > 0]
    order, held = [], np.zeros((h, 0))
    while left and held.shape[1] < h:
        P = C[:, left] - held @ (held.T @ C[:, left])             # the part no learned feature holds
        m = np.sum(P * P, axis=0) / 4.0
        t = half_time(lam[left], sigma2[left], m)
        j = int(np.argmin(t))
        i = left.pop(j)
        if not np.isfinite(t[j]):
            break
        m0[i] = m[j]
        order.append(i)
        held = np.concatenate([held, (P[:, j] / np.linalg.norm(P[:, j]))[:, None]], axis=1)
    order += [i for i in range(F) if i not in order]
    return m0, np.asarray(order)
