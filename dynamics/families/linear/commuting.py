"""Whether a covariance pair commutes, and what to do when it does not: the normalised commutator (3)
and the generalised eigenproblem (1)-(2) of ``generalized.py`` (theory/generalized.md), the validity
map's thresholds, and the message of the exact theory for a non-commuting pair.  Only numpy and
scipy: the problem types (``problems.py``) build on it, and ``generalized.py`` on both."""

from __future__ import annotations

import numpy as np

__all__ = ["VALIDITY", "normalized_commutator", "generalized_eig", "error_estimate", "noncommuting_message"]

#: What the validity map measured (benchmarks/results/generalized_validity.json, its "derived" entry; a
#: test checks that the two agree).  ``threshold``: the largest normalised commutator c at which, in
#: every measured cell (depth, init scale; aligned init), the first feature learned was the predicted one
#: and its critical time was within 5 % (95th percentile); ``threshold_order``: the largest c at which
#: every feature was learned in the predicted order in >= 90 % of the problems.  ``slope``: per depth, the
#: 95th percentile of (first critical time's relative error) / c below the threshold: the error estimate
#: reported with a prediction is slope * c.  The library warns above ``threshold`` (ApproximationWarning),
#: and says above ``threshold_order`` that only the first feature's prediction is reliable.
VALIDITY = {
    "threshold": 0.0039,
    "threshold_order": 0.0,     # not even c = 0 in a rotated basis at init 1e-3 (theory/generalized.md sec. 4)
    "slope": {1: 0.48, 2: 8.9, 3: 11.0},
    "source": "benchmarks/results/generalized_validity.md",
}


def normalized_commutator(Sxx, Syx) -> float:
    """c = ||[Sxx, S]||_F / (||Sxx||_F ||S||_F) with S the symmetric part of Syx, equation (3)."""
    Sxx = np.asarray(Sxx, float)
    S = 0.5 * (np.asarray(Syx, float) + np.asarray(Syx, float).T)
    den = np.linalg.norm(Sxx) * np.linalg.norm(S)
    if den == 0:
        return 0.0
    return float(np.linalg.norm(Sxx @ S - S @ Sxx) / den)


def generalized_eig(Sxx, Syx):
    """(directions, lam, rho, sigma2) of equations (1)-(2), sorted by decreasing rho; each direction's
    sign makes its largest-magnitude entry positive (a deterministic choice)."""
    Sxx = np.asarray(Sxx, float)
    S = 0.5 * (np.asarray(Syx, float) + np.asarray(Syx, float).T)
    import scipy.linalg   # imported when first used (import dynamics stays light)

    rho, A = scipy.linalg.eigh(S, Sxx)          # A^T Sxx A = I, rho ascending
    order = np.argsort(-rho, kind="stable")
    rho, A = rho[order], A[:, order]
    norms = np.linalg.norm(A, axis=0)
    U = A / norms
    idx = np.argmax(np.abs(U), axis=0)
    U = U * np.sign(U[idx, np.arange(U.shape[1])])
    sigma2 = 1.0 / norms ** 2
    return U, rho * sigma2, rho, sigma2


def error_estimate(c, depth) -> float:
    """The validity map's estimate of the relative critical-time error at normalised commutator c."""
    slopes = VALIDITY["slope"]
    key = min(slopes, key=lambda L: abs(L - depth))       # beyond the measured depths: the nearest one
    return float(slopes[key] * c)


def noncommuting_message(problem, what) -> str:
    """Why ``what`` refuses a problem without a common eigenbasis of Sxx and Syx, naming the conditions that fail
    (Syx not symmetric; Sxx and the symmetrised Syx not commuting) and the remedies that apply to it."""
    Sxx, Syx = np.asarray(problem.Sxx, float), np.asarray(problem.Syx, float)
    scale = max(1.0, float(np.abs(Syx).max()))
    asym = float(np.abs(Syx - Syx.T).max())
    c = normalized_commutator(Sxx, Syx)
    failing = []
    if asym > 1e-10 * scale:
        failing.append(f"Syx is not symmetric (max |Syx - Syx^T| = {asym:.3g}, max |Syx| = {float(np.abs(Syx).max()):.3g})")
    if c > 1e-12 or not failing:
        failing.append(f"Sxx and the symmetrised Syx do not commute (normalised commutator ||[Sxx, Syx_s]||_F / "
                       f"(||Sxx||_F ||Syx_s||_F) = {c:.3g}; 0 when they commute)")
    text = (f"{what} needs Sxx and Syx simultaneously diagonalisable (one eigenbasis, Syx symmetric in it), and they "
            f"are not: {'; '.join(failing)}. ")
    if asym > 1e-10 * scale and problem.singular_basis:
        G = Syx.T @ Syx
        cg = float(np.linalg.norm(Sxx @ G - G @ Sxx) / max(np.linalg.norm(Sxx) * np.linalg.norm(G), 1e-300))
        text += (f"A regression's non-symmetric Syx has an exact theory in its singular vectors (modes u_i^T Wbar v_i, "
                 f"theory/saxe.md, 'Any Syx') where Sxx commutes with Syx^T Syx; here it does not (normalised commutator "
                 f"{cg:.3g}). The generalised modes would symmetrise Syx, another task. ")
    else:
        text += (f"solve_jepa, solve_mae and critical_times take approx='generalized', the generalised-mode "
                 f"approximation (estimated critical-time error {error_estimate(c, problem.depth):.2g}; the first "
                 f"feature is reliable below c = {VALIDITY['threshold']:g}, the whole order below "
                 f"{VALIDITY['threshold_order']:g}; theory/generalized.md); generalized_fixed_points gives what is "
                 "exact. ")
    return text + "Simulate with method='flow' for the exact dynamics of this problem."
