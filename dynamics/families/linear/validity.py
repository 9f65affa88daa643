"""Measuring the generalised-mode approximation against the exact gradient flow (theory/generalized.md
sec. 4): random non-commuting problems and the errors of the predicted learning order and critical times.

``benchmarks/bench_generalized.py`` runs :func:`measure` over a grid of commutators, depths and init
scales (the validity map); the thresholds in ``generalized.VALIDITY`` come from its table, and the
tests run a few cells of it.
"""

from __future__ import annotations

import warnings

import numpy as np

from ...core import frontend
from ...core.family import get_family
from ...core.metrics import hitting_times
from ...core.validation import check_int
from .generalized import commutator
from .problems import SSLProblem
from .theory import critical_times_linear, theory_inputs

__all__ = ["noncommuting_problem", "measure"]


def noncommuting_problem(d, angle, depth, init_scale, *, key, lam_range=(0.3, 1.0), rho_range=(0.4, 1.0)):
    """A random SSLProblem whose Syx is rotated by ``angle`` (radians) away from Sxx's eigenbasis.

    Features i have lam_i spread over lam_range, rho_i over rho_range, in a random basis Q:
    Sxx = Q diag(lam / rho) Q^T, Syx = R Q diag(lam) Q^T R^T with R = expm(angle K), K a random
    skew-symmetric matrix of unit Frobenius norm.  angle = 0: commuting (the rotated exact problem).
    """
    rng = np.random.default_rng(check_int("key", key, minimum=0))
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    # spread values (one per 1/d-th of the range, jittered, shuffled): the features' rho differ by at
    # least a quarter of the range / d, so the map measures the commutator, not near-degenerate modes
    # (whose generalised directions a tiny commutator rotates a lot: theory/generalized.md sec. 4)
    def spread(lo, hi):
        return lo + (hi - lo) * rng.permutation((np.arange(d) + rng.uniform(0.0, 0.75, d)) / d)
    lam = spread(*lam_range)
    rho = spread(*rho_range)
    K = rng.normal(size=(d, d))
    K = K - K.T
    K /= np.linalg.norm(K)
    import scipy.linalg   # imported when first used (import dynamics stays light)

    R = scipy.linalg.expm(angle * K)
    Sxx = (Q * (lam / rho)) @ Q.T
    Syx = R @ (Q * lam) @ Q.T @ R.T
    Syx = 0.5 * (Syx + Syx.T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if angle == 0:
            return SSLProblem.from_spectrum(lam, rho, depth, init_scale, basis=Q)
        return SSLProblem.from_covariances(Sxx, Syx, depth, init_scale, strict=False)


def measure(problems, *, objective="jepa", init="aligned", key=0, fraction=0.5, records=1500, rtol=1e-8,
            horizon=3.0):
    """Per-problem errors of the generalised-mode prediction against the exact flow (one vmapped solve).

    The flow records the encoder's gain ||Wbar u_i|| on each generalised direction u_i (``gains``:
    whichever hidden units carry the feature) on a log grid to ``horizon`` x the last predicted critical
    time; the simulated critical time is when the gain first reaches ``fraction`` of the predicted fixed
    point.  Returns a dict of arrays over problems: ``commutator``, ``first_match`` (the first feature
    learned is the predicted one), ``first_error`` (relative error of the first critical time),
    ``order_match`` (every feature learned, in the predicted order), ``max_error`` (over features; inf
    where a feature predicted to be learned was not, within the horizon).
    """
    family = get_family(objective)
    obj = family.objective
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = np.array([critical_times_linear(obj, p, fraction=fraction, approx="generalized") for p in problems])
        fp = []
        for p in problems:
            lam, rho, L, *_ = theory_inputs(obj, p, "measure", "generalized")
            fp.append(np.where(lam > 0, obj.fixed_point(np.abs(rho), L), 0.0))
        fp = np.array(fp)
    fin = tc[np.isfinite(tc)]
    grid = np.concatenate([[0.0], np.geomspace(1e-2 * fin.min(), horizon * fin.max(), records)])
    sim = frontend.simulate(family, list(problems) if len(problems) > 1 else problems[0], method="flow",
                            times=grid, rtol=rtol, key=key, progress=False,
                            options={"init": init})
    gains = np.asarray(sim.gains).reshape(len(problems), grid.size, -1)
    out = {k: [] for k in ("commutator", "first_match", "first_error", "order_match", "max_error")}
    for i, p in enumerate(problems):
        ts = hitting_times(grid, gains[i], fp[i], fraction)
        pred = tc[i]
        learn = np.isfinite(pred)
        first_p, first_s = int(np.argmin(pred)), int(np.argmin(ts))
        out["commutator"].append(commutator(p))
        out["first_match"].append(first_p == first_s and np.isfinite(ts[first_s]))
        out["first_error"].append(abs(ts[first_p] - pred[first_p]) / pred[first_p])
        order_p = np.argsort(pred[learn], kind="stable")
        order_s = np.argsort(ts[learn], kind="stable")
        out["order_match"].append(bool(np.all(np.isfinite(ts[learn])) and np.array_equal(order_p, order_s)))
        with np.errstate(invalid="ignore"):
            err = np.abs(ts[learn] - pred[learn]) / pred[learn]
        out["max_error"].append(float(np.max(np.where(np.isfinite(err), err, np.inf))) if err.size else 0.0)
    return {k: np.asarray(v) for k, v in out.items()}
