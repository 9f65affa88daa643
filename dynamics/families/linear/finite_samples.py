"""Finite samples: how far the learning order and critical times of a finite data set stray from the
population theory (theory/generalized.md sec. 3).

For each sample size n, ``resamples`` data sets of n Gaussian pairs are drawn from the population
problem; on each, the exact gradient flow of the full network runs on the data set's second moments
(what full-batch gradient descent on those n pairs follows), and the encoder's gain ||Wbar u_i|| on each
*population* feature u_i is recorded; its critical time is when the gain reaches ``fraction`` of the
population fixed point.  The result holds, per n, the critical times over resamples (mean, standard
deviation) and the fraction of data sets that learn the features in the population theory's order.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import jax
import numpy as np

from ...core import frontend
from ...core.family import get_family
from ...core.io import jsonable
from ...core.keys import as_key
from ...core.metrics import hitting_times
from ...core.validation import check_array, check_choice, check_fraction, check_int, check_positive, check_instance
from .problems import LinearProblem
from .theory import critical_times_linear

__all__ = ["FiniteSampleStudy", "finite_sample_study"]


@dataclass(frozen=True)
class FiniteSampleStudy:
    """ns : (N,) sample sizes.  critical : (N, R, d) simulated critical times per data set (inf: not
    reached within the horizon).  population : (d,) the population theory's critical times.
    order_match : (N, R) whether the data set learned the features in the population order.
    objective, fraction, depth, init_scale, horizon : the settings."""

    ns: np.ndarray
    critical: np.ndarray
    population: np.ndarray
    order_match: np.ndarray
    objective: str
    fraction: float
    settings: dict

    @property
    def mean(self):
        """(N, d) mean critical time over the data sets (nan where some data set never reached it)."""
        c = np.where(np.isfinite(self.critical), self.critical, np.nan)
        return np.mean(c, axis=1)

    @property
    def std(self):
        """(N, d) standard deviation over the data sets (ddof = 1)."""
        c = np.where(np.isfinite(self.critical), self.critical, np.nan)
        return np.std(c, axis=1, ddof=1) if c.shape[1] > 1 else np.zeros(c.shape[::2])

    @property
    def order_fraction(self):
        """(N,) fraction of data sets that learn the features in the population order."""
        return np.mean(self.order_match, axis=1)

    def summary(self) -> str:
        d = self.population.size
        lines = [f"finite-sample study ({self.objective}, {self.critical.shape[1]} data sets per n; critical "
                 f"times at {self.fraction:g} of the population fixed point, mean +- std)",
                 f"{'n':>8} " + " ".join(f"{'feature ' + str(i):>21}" for i in range(d)) + "  population order",
                 f"{'theory':>8} " + " ".join(f"{t:>21.5g}" for t in self.population)]
        for k, n in enumerate(self.ns):
            cells = " ".join(f"{m:>12.5g} +- {s:<6.2g}" for m, s in zip(self.mean[k], self.std[k]))
            lines.append(f"{int(n):>8} {cells}  {self.order_fraction[k]:.0%}")
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self):
        return (f"FiniteSampleStudy({self.objective}: n = {[int(n) for n in self.ns]}, {self.critical.shape[1]} data "
                f"sets each, population order kept in {[f'{f:.0%}' for f in self.order_fraction]}; .summary())")

    def to_dict(self):
        return jsonable({"ns": self.ns, "critical": self.critical, "population": self.population,
                         "order_match": self.order_match, "mean": self.mean, "std": self.std,
                         "order_fraction": self.order_fraction, "objective": self.objective,
                         "fraction": self.fraction, "settings": self.settings})


def finite_sample_study(problem, ns, *, resamples=8, objective="jepa", fraction=0.5, key=0, horizon=2.0,
                        records=600, rtol=1e-8, init="aligned"):
    """Critical times and learning order over ``resamples`` Gaussian data sets of each size in ``ns``
    drawn from ``problem`` (a diagonalisable SSLProblem: the population), against its exact theory.
    The flow for one n runs every data set at once (a batch of problems).  See the module docstring."""
    check_instance("problem", problem, LinearProblem, "an SSLProblem")
    problem.require_diagonalisable("finite_sample_study (the population problem)")
    check_choice("objective", objective, {"jepa", "mae"})
    ns = check_array("ns", ns, ndim=1)
    if ns.size == 0 or np.any(ns != np.round(ns)) or np.any(ns <= problem.d):
        raise ValueError(f"ns must be a non-empty list of integers > d = {problem.d} (pairs per data set), got {ns}")
    ns = ns.astype(int)
    resamples = check_int("resamples", resamples, minimum=1, maximum=10_000)
    fraction = check_fraction("fraction", fraction)
    horizon = check_positive("horizon", horizon)
    records = check_int("records", records, minimum=10, maximum=100_000)
    family = get_family(objective)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        population = critical_times_linear(family.objective, problem, fraction=fraction)
    fin = population[np.isfinite(population)]
    if not fin.size:
        raise ValueError("the population problem learns no feature (every critical time is inf)")
    grid = np.concatenate([[0.0], np.geomspace(1e-2 * fin.min(), horizon * fin.max(), records)])
    fp = family.objective.fixed_point(problem.rho, problem.depth)
    order_pop = np.argsort(np.where(np.isfinite(population), population, np.inf), kind="stable")
    base = as_key(key)
    crit = np.empty((ns.size, resamples, problem.d))
    for a, n in enumerate(ns):
        probs = []
        for r in range(resamples):
            x, y = problem.sample(int(n), key=jax.random.fold_in(jax.random.fold_in(base, int(n)), r))
            # the population's features (basis, spectrum) observed; the data set's moments drive the flow
            probs.append(dataclasses.replace(problem, Sxx=x.T @ x / n, Syx=y.T @ x / n, Syy=y.T @ y / n,
                                             basis=problem.basis, diagonalisable=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sim = frontend.simulate(family, probs if resamples > 1 else probs[0], method="flow", times=grid,
                                    rtol=rtol, key=0, progress=False,
                                    options={"init": init})
        gains = np.asarray(sim.gains).reshape(resamples, grid.size, -1)
        for r in range(resamples):
            crit[a, r] = hitting_times(grid, gains[r], fp, fraction)
    learned = np.isfinite(population)
    match = np.array([[bool(np.all(np.isfinite(c[learned]))
                            and np.array_equal(np.argsort(c, kind="stable")[:learned.sum()], order_pop[:learned.sum()]))
                       for c in crit[a]] for a in range(ns.size)])
    return FiniteSampleStudy(ns=ns, critical=crit, population=population, order_match=match,
                             objective=objective, fraction=fraction,
                             settings={"depth": problem.depth, "init_scale": problem.init_scale, "horizon": horizon,
                                       "records": records, "rtol": rtol, "init": init, "resamples": resamples})
