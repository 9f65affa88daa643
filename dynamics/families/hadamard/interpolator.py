"""The minimiser of the hyperbolic-entropy potential over the least-squares solutions: where a u * v
regression model beta = u * v trained from alpha (sqrt(2), 0) ends (theory/dln_steps.md eq. 3).

    beta = argmin_{X beta = P y}  psi_a(beta) - <shift, beta>,
    psi_a(beta) = (1/2) sum_i [beta_i arcsinh(beta_i / a_i^2) - sqrt(beta_i^2 + a_i^4) + a_i^2],

P the projection onto range(X).  shift = 0 and a = alpha: the gradient flow's endpoint (Woodworth et al.
2020); a = alpha_inf and shift = delta_inf of gradient descent at a step (Even et al. 2023):
``families/dln_implicit_bias.py``.
"""

from __future__ import annotations

import numpy as np

from ...core.validation import check_array

__all__ = ["hyperbolic_interpolator"]


def _scaled_sinh(log_a2, zeta):
    """a^2 sinh(zeta) and a^2 cosh(zeta) from log(a^2): exp(ln a^2 +- zeta) where |zeta| is large (no overflow
    of the factors at a tiny or huge a), a^2 sinh(zeta) itself where it is small (no cancellation)."""
    with np.errstate(over="ignore", under="ignore"):
        e1, e2 = np.exp(log_a2 + zeta), np.exp(log_a2 - zeta)
        small = np.abs(zeta) < 1.0
        s = np.where(small, np.exp(log_a2) * np.sinh(np.where(small, zeta, 0.0)), 0.5 * (e1 - e2))
    return s, 0.5 * (e1 + e2)


def hyperbolic_interpolator(X, y, init_scale, shift=None, *, tol=1e-12, max_iter=500):
    """The solution of (3): argmin psi_a(beta) - <shift, beta> over the minimisers of the squared loss
    (X beta = P y), a = ``init_scale`` (scalar or (p,)), ``shift`` (p,) or None (0).

    Its optimality conditions are beta = a^2 sinh(2 (V mu + shift)) with V (p, r) an orthonormal basis
    of range(X^T); mu (r,) maximises the concave dual, found by damped Newton steps from 0.
    Returns beta (p,).  Raises RuntimeError if Newton's method has not converged in ``max_iter`` steps."""
    X = check_array("X", X, ndim=2)
    y = check_array("y", y, shape=(X.shape[0],))
    p = X.shape[1]
    a = check_array("init_scale", init_scale)
    if a.ndim > 1 or a.size not in (1, p):
        raise ValueError(f"init_scale must be a scalar or one value per coordinate (shape ({p},)), got shape {a.shape}")
    a = np.broadcast_to(a.reshape(-1) if a.ndim else a, (p,)).astype(float)
    if not (np.all(np.isfinite(a)) and np.all(a > 0) and np.all(a < 1e150)):
        raise ValueError(f"init_scale must be > 0 and below 1e150 in every coordinate, got {a.min():g} .. {a.max():g}")
    shift = np.zeros(p) if shift is None else check_array("shift", shift, shape=(p,))
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    r = int(np.sum(S > S[0] * max(X.shape) * np.finfo(float).eps)) if S.size and S[0] > 0 else 0
    if r == 0:
        return np.zeros(p)
    U, S, Vt = U[:, :r], S[:r], Vt[:r]
    c = (U.T @ y) / S                                   # X beta = P y  <=>  V^T beta = c
    log_a2 = 2.0 * np.log(a)

    def dual(mu):
        s, ch = _scaled_sinh(log_a2, 2.0 * (Vt.T @ mu + shift))
        return 0.5 * ch.sum() - c @ mu, s, ch

    # start where the exponents 2 (V mu + shift) are smallest: mu = -V^T shift leaves only the part of the
    # shift that no mu can cancel (a large shift otherwise costs ~|shift| capped Newton steps)
    mu = -(Vt @ shift)
    f, s, ch = dual(mu)
    scale = max(1.0, float(np.abs(c).max()))
    for _ in range(max_iter):
        grad = Vt @ s - c
        # the residual cannot go below the rounding of the exponents 2 (V mu + shift) (~eps of their size,
        # relative in beta): with a large shift that floor is above tol
        floor = 16.0 * np.finfo(float).eps * (1.0 + np.abs(Vt.T @ mu).max() + np.abs(shift).max()) \
            * max(1.0, float(np.abs(s).max()))
        if np.abs(grad).max() <= max(tol * scale, floor):
            return s
        # the Hessian V^T diag(2 a^2 cosh) V spans many orders of magnitude when the exponents do (a large
        # shift): a least-squares solve (a descent direction of the convex dual even where it is singular)
        step = np.linalg.lstsq(Vt @ (2.0 * ch[:, None] * Vt.T), grad, rcond=None)[0]
        # a step moves the exponents 2 V mu by at most 2 (from mu = 0 at a tiny init scale the Newton step
        # is ~1/a^2 long), then backtracking (Armijo) on the convex dual
        t = min(1.0, 2.0 / max(2.0 * float(np.abs(Vt.T @ step).max()), np.finfo(float).tiny))
        while True:
            f1, s1, ch1 = dual(mu - t * step)
            if np.isfinite(f1) and (f1 <= f - 0.25 * t * (grad @ step) or (
                    # near the optimum the decrease is below rounding of f: then the gradient decides
                    f1 <= f + 1e-13 * (abs(f) + 1.0) and np.abs(Vt @ s1 - c).max() < np.abs(grad).max())):
                break
            t *= 0.5
            if t < 1e-16:
                raise RuntimeError("hyperbolic_interpolator: no descent step of the dual (constraint residual "
                                   f"{np.abs(grad).max():.3g}): the problem is too ill-conditioned in float64 "
                                   f"(min init_scale = {a.min():.3g}, max |shift| = {np.abs(shift).max():.3g})")
        mu, f, s, ch = mu - t * step, f1, s1, ch1
    raise RuntimeError(f"hyperbolic_interpolator: Newton's method did not converge in {max_iter} steps (constraint "
                       f"residual {np.abs(Vt @ s - c).max():.3g}); the init scale may be too small for float64 "
                       f"(min init_scale = {a.min():.3g}, max |shift| = {np.abs(shift).max():.3g})")
