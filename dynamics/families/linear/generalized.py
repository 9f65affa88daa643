"""Generalised modes: the deep linear theory beyond commuting covariances (theory/generalized.md).

The exact per-mode theory needs Sxx and Syx simultaneously diagonalisable.  For a general pair
(Sxx positive definite, Syx symmetrised to S = (Syx + Syx^T) / 2) the generalised eigenproblem

    S a_i = rho_i Sxx a_i,      A^T Sxx A = I,                                       (1)

gives the generalised modes.  Each direction is reported with unit Euclidean norm, u_i = a_i / |a_i|,
together with its Rayleigh quotients

    sigma2_i = u_i^T Sxx u_i = 1 / |a_i|^2,     lam_i = u_i^T S u_i = rho_i sigma2_i,          (2)

so that rho_i = lam_i / sigma2_i as in the commuting case, to which (1)-(2) reduce exactly (the u_i are
then the common eigenvectors).

Exact for any pair (theory/generalized.md sec. 2):
  * JEPA, at a fixed point with an invertible predictor: V Wbar Sxx = Wbar Syx, i.e.
    V = Wbar (Syx Sxx^-1) Wbar^-1: the predictor's eigenvalues are those of Sxx^-1 Syx, the generalised
    rho's (for symmetric Syx).
  * MAE, at a fixed point with V Wbar of full rank: V Wbar = Syx Sxx^-1 (the regression solution).
Approximate: the learning order and critical times from the per-mode formulas applied to (lam_i, rho_i),
``approx="generalized"`` in the theory functions.  Its error, measured against the exact gradient flow
over random problems (benchmarks/bench_generalized.py -> benchmarks/results/generalized_validity.md),
grows with the normalised commutator

    c = || [Sxx, S] ||_F / (||Sxx||_F ||S||_F)   (0 for commuting pairs, at most sqrt(2)),          (3)

and ``VALIDITY`` holds what that map measured: the threshold above which the library warns and the
error envelope it reports.  ``generalized_eig``, ``normalized_commutator``, ``VALIDITY`` and the message for a
non-commuting pair live in ``commuting.py``, below the problem types that need them (re-exported here).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ...core.validation import check_choice, check_instance
from .commuting import VALIDITY, error_estimate, generalized_eig, noncommuting_message, normalized_commutator
from .problems import LinearProblem

__all__ = ["GeneralizedModes", "generalized_eig", "generalized_modes", "normalized_commutator", "commutator",
           "generalized_fixed_points", "GeneralizedFixedPoints", "check_approx", "approximation_info",
           "noncommuting_message", "VALIDITY", "APPROXIMATIONS", "ApproximationWarning"]

APPROXIMATIONS = ("generalized",)


class ApproximationWarning(UserWarning):
    """The generalised-mode approximation is used outside the range where the validity map found it
    reliable (its normalised commutator is above the measured threshold)."""


@dataclass(frozen=True)
class GeneralizedModes:
    """Generalised modes of a problem, sorted by decreasing rho (theory/generalized.md sec. 1).

    directions : (d, d) unit columns u_i;  lam : (d,) u_i^T S u_i;  rho : (d,) generalised eigenvalues;
    sigma2 : (d,) u_i^T Sxx u_i;  commutator : the normalised commutator (3).
    Unpacks as ``directions, lam, rho = generalized_modes(problem)``.
    """

    directions: np.ndarray
    lam: np.ndarray
    rho: np.ndarray
    sigma2: np.ndarray
    commutator: float

    def __repr__(self):
        short = lambda x: np.array2string(np.asarray(x, float), precision=4, threshold=8, edgeitems=3)  # noqa: E731
        return (f"GeneralizedModes(d = {np.size(self.lam)}, lam = {short(self.lam)}, rho = {short(self.rho)}, "
                f"commutator = {self.commutator:.3g})")

    def __iter__(self):
        return iter((self.directions, self.lam, self.rho))


def _check_problem(problem):
    return check_instance("problem", problem, LinearProblem, "an SSLProblem or a RegressionProblem")


def commutator(problem) -> float:
    """The normalised commutator (3) of a problem: exactly 0 for one built diagonalisable (from a
    spectrum, or from commuting covariances), without forming its dense matrices."""
    _check_problem(problem)
    if problem.diagonalisable:
        return 0.0
    return normalized_commutator(problem.Sxx, problem.Syx)


def generalized_modes(problem) -> GeneralizedModes:
    """The generalised modes of ``problem`` (an SSLProblem or RegressionProblem), equations (1)-(2).

    For a diagonalisable problem they are its own features, in its own order (basis, lam, rho): the
    generalised theory then *is* the exact theory.  Otherwise they are computed from the dense
    covariances (and are what a problem built with ``from_covariances(..., strict=False)`` or
    ``from_samples`` uses as its basis, so that its simulations record the same modes)."""
    _check_problem(problem)
    if problem.diagonalisable:
        return GeneralizedModes(directions=problem.basis, lam=np.asarray(problem.lam, float),
                                rho=np.asarray(problem.rho, float), sigma2=np.asarray(problem.sigma2, float),
                                commutator=0.0)
    U, lam, rho, sigma2 = generalized_eig(problem.Sxx, problem.Syx)
    return GeneralizedModes(directions=U, lam=lam, rho=rho, sigma2=sigma2,
                            commutator=normalized_commutator(problem.Sxx, problem.Syx))


@dataclass(frozen=True)
class GeneralizedFixedPoints:
    """What is exact at convergence for any covariances (theory/generalized.md sec. 2).

    objective : "jepa" or "mae".
    predictor_eigenvalues : (d,) JEPA: the eigenvalues of V at a fixed point with invertible V, i.e.
        those of Sxx^-1 Syx, sorted by decreasing real part (the generalised rho's for symmetric Syx).
    end_to_end : (d, d) MAE: V Wbar = Syx Sxx^-1 (the regression solution); for JEPA None (V Wbar is not
        determined by the covariances alone: V Wbar = Wbar Syx Sxx^-1 for whichever Wbar the flow reaches).
    relation : the fixed-point equation, in words.
    """

    objective: str
    predictor_eigenvalues: np.ndarray
    end_to_end: np.ndarray | None
    relation: str


def generalized_fixed_points(problem, objective="jepa") -> GeneralizedFixedPoints:
    """Exact fixed-point statements for any (also non-commuting) covariances; needs no ``approx``."""
    _check_problem(problem)
    check_choice("objective", objective, {"jepa", "mae"})
    Sxx, Syx = np.asarray(problem.Sxx, float), np.asarray(problem.Syx, float)
    M = np.linalg.solve(Sxx, Syx)               # Sxx^-1 Syx, similar to Syx Sxx^-1
    ev = np.linalg.eigvals(M)
    if np.all(np.abs(ev.imag) <= 1e-12 * max(1.0, float(np.abs(ev).max()))):
        ev = ev.real
    ev = ev[np.argsort(-ev.real, kind="stable")]
    if objective == "jepa":
        return GeneralizedFixedPoints("jepa", ev, None,
                                      "V Wbar Sxx = Wbar Syx: V = Wbar (Syx Sxx^-1) Wbar^-1 for invertible Wbar")
    E = np.linalg.solve(Sxx.T, Syx.T).T         # Syx Sxx^-1
    return GeneralizedFixedPoints("mae", ev, E, "V Wbar = Syx Sxx^-1 (the regression solution)")


def check_approx(approx):
    if approx is not None:
        check_choice("approx", approx, set(APPROXIMATIONS))
    return approx


def approximation_info(problem, what, stacklevel=4) -> dict:
    """The settings entry naming the approximation and its estimated error; warns above the thresholds."""
    c = commutator(problem)
    info = {"name": "generalized modes", "commutator": c, "threshold": VALIDITY["threshold"],
            "threshold_order": VALIDITY["threshold_order"], "error_estimate": error_estimate(c, problem.depth),
            "reliable": ("all" if c <= VALIDITY["threshold_order"] else
                         "first feature" if c <= VALIDITY["threshold"] else "none"),
            "source": VALIDITY["source"], "exact": bool(problem.diagonalisable)}
    if c > VALIDITY["threshold"]:
        warnings.warn(f"{what}: normalised commutator ||[Sxx, Syx]|| / (||Sxx|| ||Syx||) = {c:.3g} is above "
                      f"{VALIDITY['threshold']:g}, beyond which the validity map ({VALIDITY['source']}) found even "
                      "the first feature learned mispredicted: the generalised-mode order and times may be wrong; "
                      "simulate with method='flow' for the exact answer", ApproximationWarning, stacklevel=stacklevel)
    elif c > VALIDITY["threshold_order"]:
        warnings.warn(f"{what}: normalised commutator {c:.3g} is above {VALIDITY['threshold_order']:g}: the validity "
                      "map found the first feature learned and its time reliable here (estimated error "
                      f"{info['error_estimate']:.2g}), but not the order of the later features; simulate with "
                      "method='flow' for those", ApproximationWarning, stacklevel=stacklevel)
    return info
