"""Critical times of an adaptive-flow simulation located by the solver, not read off the record grid.

A critical time is the first time the primary field y_f reaches ``fraction * fixed_point_f``.  Read
off R records, linear interpolation between the two records around the crossing is wrong by
~ h^2 |y''| / (8 |y'|) for a record spacing h (1.6e-3 relative on 101 records of a depth-5 JEPA,
tests/test_compare.py), far above the flow's own accuracy (~1e-8).  Here the solver itself refines each bracket:

1. from the records, the bracket [x_{j-1}, x_j] of every (run, feature) that crosses (x: the solver's
   own time, gradient-flow time or tau);
2. the same runs are integrated again from t = 0 with ``points`` record times inside every bracket (one
   solve for all brackets of all runs; the recorded values are the solver's steps: the step controller
   lands on record times, ``core.flow``), and each bracket shrinks to the sub-interval that crosses;
3. repeated until every bracket is below ``width`` relative to its time (default 1e-7: the log-linear
   interpolation inside it, as :func:`~dynamics.core.metrics.hitting_times` does, is then exact to
   ~1e-14 relative, below the solver's error), at most ``rounds`` times.

The answer is then the flow's crossing to the flow's own tolerance; each round costs one integration
from 0 to the last bracket.  ``resolve(x) -> (t, y)`` is the simulation's own integrator on a new grid
``x`` (increasing, from 0): ``t`` (R, T) in the trajectory's time, ``y`` (R, T, F) its primary field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .metrics import crossing_time

__all__ = ["locate_crossings", "Reintegration"]


@dataclass(frozen=True, eq=False)
class Reintegration:
    """What an adaptive-flow Trajectory keeps in memory (not saved) to integrate its runs again.

    x : (T,) the solver times of its records.   fn : ``fn(x_new) -> (t (R', T'), y (R', T', F))`` for an
    increasing grid from 0 (the primary field of every run of the call).   runs : R'.
    pick : the run this trajectory is (``Trajectory.run(i)``), None for all of them.
    """

    x: np.ndarray
    fn: Callable
    runs: int
    pick: int | None = None

    def __call__(self, x_new):
        t, y = self.fn(x_new)
        if self.pick is not None:
            t, y = t[self.pick:self.pick + 1], y[self.pick:self.pick + 1]
        return t, y

    def run(self, i):
        return Reintegration(x=self.x, fn=self.fn, runs=self.runs, pick=i)


def _first_at_or_above(y, theta):
    """Index of the first entry of ``y`` (T,) with y >= theta, or -1."""
    idx = np.nonzero(y >= theta)[0]
    return int(idx[0]) if idx.size else -1


def locate_crossings(x, t, y, fixed_point, fraction, resolve, *, points=31, width=1e-7, rounds=6):
    """(R, F) first times at which y reaches ``fraction * fixed_point``, located by the solver.

    x : (T,) the solver's record times (from 0 or later).   t : (R, T) the trajectory's times.
    y : (R, T, F) the recorded primary field.   fixed_point : (R, F).   resolve : see the module.
    Features not learned (fixed point not above the initial value) or not reached: inf; reached at the
    first record: its time (as :func:`~dynamics.core.metrics.hitting_times`).
    """
    x = np.asarray(x, float)
    t, y, fp = np.asarray(t, float), np.asarray(y, float), np.asarray(fixed_point, float)
    R, T, F = y.shape
    theta = fraction * fp
    out = np.full((R, F), np.inf)
    brackets = {}               # (r, f) -> [x0, x1, t0, t1, y0, y1]
    for r in range(R):
        for f in range(F):
            if not fp[r, f] > y[r, 0, f]:
                continue
            j = _first_at_or_above(y[r, :, f], theta[r, f])
            if j == 0:
                out[r, f] = t[r, 0]
            elif j > 0:
                brackets[r, f] = [x[j - 1], x[j], t[r, j - 1], t[r, j], y[r, j - 1, f], y[r, j, f]]
    for _ in range(rounds):
        open_ = {k: b for k, b in brackets.items() if b[3] - b[2] > width * max(abs(b[3]), abs(b[2]))}
        if not open_:
            break
        inner = {k: np.linspace(b[0], b[1], points + 2)[1:-1] for k, b in open_.items()}
        grid = np.unique(np.concatenate([[0.0], *inner.values()]))
        t_new, y_new = resolve(grid)
        t_new, y_new = np.asarray(t_new, float), np.asarray(y_new, float)
        if y_new.shape[1] < grid.size:       # the re-integration stopped early: keep the brackets reached
            grid = grid[:y_new.shape[1]]
        for (r, f), pts in inner.items():
            at = np.searchsorted(grid, pts)
            ok = (at < grid.size)
            at, pts = at[ok], pts[ok]
            if not at.size:
                continue
            b = brackets[r, f]
            xs = np.concatenate([[b[0]], grid[at], [b[1]]])
            ts = np.concatenate([[b[2]], t_new[r, at], [b[3]]])
            ys = np.concatenate([[b[4]], y_new[r, at, f], [b[5]]])
            j = _first_at_or_above(ys, theta[r, f])
            if j <= 0:          # the refined curve disagrees with the records (not monotone there): keep it
                continue
            brackets[r, f] = [xs[j - 1], xs[j], ts[j - 1], ts[j], ys[j - 1], ys[j]]
    for (r, f), b in brackets.items():
        out[r, f] = crossing_time(b[2], b[3], b[4], b[5], theta[r, f])
    return out
