"""A family's analytic answers for one problem: the theory half of the family contract.

``Family.theory(problem, config)`` returns a :class:`Theory` (or None where the family has no theory).
Each answer is optional: a family fills in what its mathematics gives and leaves the rest None, and
the library's theory functions (``dy.critical_times``, ``dy.max_stable_lr``, ``crosscheck``, a
result's ``fixed_point``) say so by name where an answer is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Theory"]


@dataclass(frozen=True, eq=False)
class Theory:
    """The analytic answers of one family for one problem (see each family's theory/ page).

    trajectory : ``trajectory(times)`` -> the reference on the 1-D grid ``times`` (a Trajectory, or a
        ``core.compare.Reference`` such as the rank-growth ``Stages``), or None.
    fixed_point : (F,) asymptote of the primary field, or None.
    critical_times : ``critical_times(fraction, **family_options)`` -> (F,) times at which the primary
        field reaches ``fraction`` of its fixed point (inf: never); None where the family has none.  A
        problem outside the family's theory raises ValueError naming why.
    stability_limit : ``stability_limit(init)`` -> the largest stable lr of plain gradient descent (a
        ``core.stability.StabilityLimit``) along the theory's path (``init`` None) or at ``init``; or None.
    resolution : ``resolution(lr)`` -> the smallest relative change per step of the primary field that
        the theory predicts for the first steps at ``lr`` (float32 rounds a change below its epsilon
        away; the driver warns), or None: the driver's generic probe (one gradient) decides.
    """

    trajectory: Callable[[Any], Any] | None = None
    fixed_point: Any = None
    critical_times: Callable[..., Any] | None = None
    stability_limit: Callable[[Any], Any] | None = None
    resolution: Callable[[float], float | None] | None = None

    def __repr__(self):
        import numpy as np
        known = [n for n in ("trajectory", "critical_times", "stability_limit", "resolution")
                 if getattr(self, n) is not None]
        fp = "" if self.fixed_point is None else ", fixed point " + np.array2string(
            np.asarray(self.fixed_point, float), precision=4, threshold=8, edgeitems=3)
        return f"Theory({', '.join(known) or 'no answers'}{fp})"
