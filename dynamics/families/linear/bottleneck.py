"""Networks of any shape: which features a narrow network keeps, and the exact theory of the kept ones.

A network whose narrowest layer has m < F units (F features: d for SSL, min(d_in, d_out) for a
regression) can carry at most m features.  From the init aligned to a set K of m features
(``network.init_params``: feature K_j runs through hidden unit j) every feature decouples as in the
square network: the kept ones follow the square theory's per-mode solution exactly, the others stay at
exactly zero (they have no path), and the loss adds their constant part (theory/saxe.md, "Any shape").

Which set a small random init ends in (``kept_features``; measured in
``benchmarks/results/kept_features.md``):

* Saxe regression and MAE (target T = I): the loss is a regression of y on x through a rank-m map, whose
  global minimum is reduced-rank regression (the m features of largest lam_i rho_i = lam_i^2 / sigma2_i, the
  loss each removes; Eckart-Young in Sxx's metric); every other rank-m critical point is a saddle, so the flow
  from a small random init ends there (greedy low-rank learning, Li, Luo & Lyu 2021; Jacot et al. 2021).
* JEPA (target SG(Wbar)): not the gradient of any loss, but its fixed points' stability is simple.  With
  w_i = Wbar u_i (feature i's embedding) the flow reads dw_i/dt = P[V^T (lam_i - sigma2_i V) w_i] (P the
  depth's positive preconditioner) and dV/dt = sum_i (lam_i - sigma2_i V) w_i w_i^T: V's eigenvalue along a
  direction held by feature i settles at rho_i, where another feature j grows iff lam_j rho_i (1 - rho_i / rho_j)
  > 0, i.e. iff rho_j > rho_i.  Only the m features of largest rho hold their directions against every
  invader, so JEPA keeps the m features of largest regression coefficient rho (MAE: largest lam rho)
  (theory/jepa.md, "A narrow encoder").  The invasion starts from the invader's tiny embedding and is slow
  (a power law at depth >= 2), and a direction along which the predictor's eigenvalue is <= 0 loses every
  feature for good (a dimensional collapse, seed-dependent): a run keeps a subset of this set.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .problems import LinearProblem

__all__ = ["kept_features", "kept_mask", "square_part", "constant_loss"]


def kept_features(objective, problem: LinearProblem) -> np.ndarray:
    """The indices of the features the network carries (sorted): every feature where the network is wide
    enough, ``problem.kept`` where given, else the prediction of the module docstring for ``objective``."""
    if problem.kept is not None:
        return np.array(sorted(problem.kept), dtype=np.int64)
    F, m = problem.d, problem.capacity
    if m >= F:
        return np.arange(F)
    if objective.target == "identity":          # reduced-rank regression: largest lam rho
        score = np.where(problem.lam > 0, problem.lam * problem.rho, -np.inf)
        order = np.argsort(-score, kind="stable")
    else:                                       # JEPA: largest rho (module docstring)
        order = np.argsort(np.where(problem.lam > 0, -problem.rho, np.inf), kind="stable")
    return np.sort(order[:m])


def kept_mask(objective, problem: LinearProblem) -> np.ndarray:
    mask = np.zeros(problem.d, bool)
    mask[kept_features(objective, problem)] = True
    return mask


def square_part(problem: LinearProblem, K) -> LinearProblem:
    """The square, plain problem of features ``K`` alone (their spectrum, same depth and init scale): the
    exact theory of a shaped network's kept features is this problem's."""
    K = np.asarray(K, np.int64)
    prob = dataclasses.replace(problem, Sxx=None, Syx=None, Syy=None, basis=None, right_basis=None,
                               sigma2=np.asarray(problem.sigma2)[K], lam=np.asarray(problem.lam)[K],
                               syy=np.asarray(problem.syy_diag)[K], samples=None, widths=None,
                               embed_dim=None, kept=None)
    return prob


def constant_loss(objective, problem: LinearProblem, mask) -> float:
    """The loss the features outside ``mask`` and the target's directions outside every feature add: with
    T = I, 1/2 syy_i for each feature held at zero and 1/2 (tr Syy - sum_i syy_i) for a target of more
    dimensions than features (a rectangular regression); 0 for JEPA (its target is the encoder itself)."""
    if objective.target != "identity":
        return 0.0
    syy = np.asarray(problem.syy_diag, float)
    out = 0.5 * float(np.sum(syy[~mask]))
    if problem.d_out != problem.d:
        out += 0.5 * (float(np.trace(problem.Syy)) - float(np.sum(syy)))
    return out
