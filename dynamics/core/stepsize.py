"""Gradient descent's discretisation error, measured against the exact flow, and the step size that
keeps it under a tolerance.

Gradient descent at step ``lr`` is the explicit Euler scheme of the gradient flow, so at a fixed
gradient-flow time its error is e(lr) = C lr + O(lr^2) (theory/flow.md).  :func:`gd_error` measures
e(lr) as ``crosscheck(gd, flow)`` on one record grid (the primary field's largest relative error and,
where the family has critical times, their largest relative error).  :func:`lr_for` *measures* C from
two gradient-descent runs (lr and lr / 2, each against the flow on its grid; their ratio checks that
the pair is in the first-order regime, else lr is halved and the pair measured again) and returns
lr = tol / C (extrapolated with the measured order where it is below 1, which is more cautious).
It is a measurement, not a bound: the constant depends on the horizon (errors in the timing of a
transition accumulate over the plateau before it), so ask for the horizon you will run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import frontend
from .compare import crosscheck
from .family import get_family
from .io import jsonable
from .keys import is_key_sequence, key_count
from .chunks import DivergenceError
from .resources import ResourceError, step_budget
from .validation import check_choice, check_int, check_positive

__all__ = ["gd_error", "lr_for", "StepSizeAdvice"]


@dataclass(frozen=True)
class StepSizeAdvice:
    """The result of :func:`lr_for`.

    lr : the advised learning rate (tol / C).   tol : the target error.   t_max : the horizon.
    lrs, errors : the measured pairs (each lr, its error against the flow).   order : log2 of the last
    pair's error ratio (1 in the first-order regime).   constant : C = error / lr of the smaller lr.
    steps : steps to reach t_max at ``lr``.   measure : what "error" is.
    """

    family: str
    tol: float
    lr: float
    t_max: float
    lrs: tuple
    errors: tuple
    order: float
    constant: float
    steps: int
    measure: str

    def summary(self) -> str:
        rows = "\n".join(f"    lr = {lr:<10.4g} error {e:.3e}" for lr, e in zip(self.lrs, self.errors))
        return (f"step size for {self.family}: lr = {self.lr:.4g} keeps the {self.measure} under {self.tol:g} "
                f"up to t = {self.t_max:g} ({self.steps:,} steps)\n  measured against the exact flow "
                f"(order {self.order:.2f}, error = {self.constant:.3g} x lr):\n{rows}")

    __str__ = summary

    def __repr__(self):
        return (f"StepSizeAdvice({self.family}: lr = {self.lr:.4g} for {self.measure} <= {self.tol:g} up to "
                f"t = {self.t_max:g}, order {self.order:.2f})")

    def to_dict(self) -> dict:
        return jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


def _measure(rep, measure):
    err = rep.max_rel_error
    ce = np.asarray(rep.critical_rel_error, float)
    ce = ce[np.isfinite(ce)]
    crit = float(ce.max()) if ce.size else 0.0
    return {"field": err, "critical": crit, "both": max(err, crit)}[measure]


def _family_for(family, problem):
    """The family, and the problem checked to be one it takes (a TypeError naming both, before any run)."""
    fam = get_family(family)
    if not isinstance(problem, fam.problem_type):
        types = fam.problem_type if isinstance(fam.problem_type, tuple) else (fam.problem_type,)
        raise TypeError(f"problem must be a {' or '.join(t.__name__ for t in types)} for family {fam.name!r}, "
                        f"got {type(problem).__name__}")
    return fam


def gd_error(family, problem, lr, *, t_max, options=None, records=100, measure="both", key=0, flow=None):
    """gd's error at ``lr`` against the exact flow up to ``t_max`` (see the module docstring).

    measure : "field" (the primary field's largest relative error), "critical" (critical times),
    "both" (the larger).  flow : a flow result on the same grid to reuse (else one is run).
    Returns (error, crosscheck report, flow result)."""
    fam = _family_for(family, problem)
    check_choice("measure", measure, {"field", "critical", "both"})
    t_max = check_positive("t_max", t_max)
    lr = check_positive("lr", lr)
    if lr > t_max:      # at least one step within t_max
        raise ValueError(f"lr = {lr:g} is longer than the horizon t_max = {t_max:g}: give lr <= t_max")
    records = check_int("records", records, minimum=2)
    if is_key_sequence(key):
        raise ValueError(f"key must be one key (an int seed or a jax.random.key): gd_error measures one run, "
                         f"got a sequence of {key_count(key)}")
    n = t_max / lr
    if not math.isfinite(n) or n > step_budget():
        raise ResourceError(f"t_max / lr = {t_max:g} / {lr:g} = {n:.3g} gradient-descent steps, more than the step "
                            f"budget of {step_budget():.3g} (a shorter t_max or a larger lr; DYNAMICS_STEP_BUDGET)")
    steps = int(math.ceil(n))
    every = max(1, steps // records)
    kw = dict(lr=lr, steps=steps, record_every=every, options=options, key=key)
    gd = frontend.simulate(fam, problem, method="gd", dtype=np.float64, **kw)
    if flow is None or np.shape(flow.t) != np.shape(gd.t) or not np.allclose(flow.t, gd.t, rtol=1e-12):
        flow = frontend.simulate(fam, problem, method="flow", **kw)
    rep = crosscheck(gd, flow)
    return _measure(rep, measure), rep, flow


def lr_for(family, problem, tol, *, t_max=None, lr=None, options=None, measure="both", records=100, key=0,
           max_halvings=6) -> StepSizeAdvice:
    """The learning rate at which gradient descent stays within ``tol`` of the exact flow up to
    ``t_max`` (default: 1.5 x the last finite critical time the family predicts), measured from two
    runs at ``lr`` and ``lr / 2`` (default lr: t_max / 200) against the flow.  If the pair is not in the
    first-order regime (error ratio outside [1.7, 2.3]) lr is halved and the pair measured again, at
    most ``max_halvings`` times.  Stability can bind before accuracy: the advice is never above the
    largest lr measured to be in the first-order regime; where a pair's errors are both at rounding level
    (1e-3 x tol: a horizon spent at the fixed point) it is the larger lr of that pair, measured within tol."""
    fam = _family_for(family, problem)
    tol = check_positive("tol", tol)
    if t_max is None:
        try:
            th = fam.theory(problem)
            tc = None if th is None or th.critical_times is None else th.critical_times(0.5)
        except ValueError as e:     # a problem outside the family's theory
            raise ValueError(f"t_max: {fam.name}'s theory gives no critical times here ({e}); give the horizon") from None
        tc = None if tc is None else np.asarray(tc, float)
        if tc is None or not np.any(np.isfinite(tc)):
            raise ValueError(f"t_max: {fam.name} predicts no critical time for this problem; give the horizon")
        t_max = 1.5 * float(tc[np.isfinite(tc)].max())
    t_max = check_positive("t_max", t_max)
    lr = t_max / 200 if lr is None else check_positive("lr", lr)
    lrs, errs = [], []
    lr0, diverged = lr, 0
    for _ in range(max_halvings + 1):
        try:
            e1, _, fl = gd_error(fam, problem, lr, t_max=t_max, options=options, records=records,
                                 measure=measure, key=key)
        except (FloatingPointError, DivergenceError):      # unstable at this lr: halve
            lr /= 2
            diverged += 1
            continue
        e2, _, _ = gd_error(fam, problem, lr / 2, t_max=t_max, options=options, records=records,
                            measure=measure, key=key, flow=fl)
        lrs += [lr, lr / 2]
        errs += [e1, e2]
        order = math.log2(e1 / e2) if e2 > 0 and e1 > 0 else float("nan")
        if 1.7 <= e1 / max(e2, 1e-300) <= 2.3:
            break
        if max(e1, e2) <= 1e-3 * tol:
            # both at rounding level (e.g. a horizon spent at the fixed point): accuracy does not bind here,
            # the largest lr measured within tol is the answer (no order to extrapolate with)
            return StepSizeAdvice(family=fam.name, tol=float(tol), lr=float(lr), t_max=float(t_max),
                                  lrs=tuple(lrs), errors=tuple(float(e) for e in errs), order=float("nan"),
                                  constant=float(e1 / lr), steps=int(math.ceil(t_max / lr)),
                                  measure={"field": f"{fam.primary} error", "critical": "critical-time error",
                                           "both": f"{fam.primary} and critical-time error"}[measure])
        lr /= 2
    else:
        if not errs:
            raise ValueError(f"lr_for: gradient descent diverged at every lr from {lr0:g} down to {2 * lr:g} over "
                             f"t_max = {t_max:g}: give a smaller starting lr (or a shorter t_max)")
        raise RuntimeError(f"lr_for: no pair of learning rates down to {lr:g} showed first-order convergence "
                           f"to the flow (errors {errs}); the run may be chaotic or dominated by rounding")
    C = errs[-1] / lrs[-1]
    # e(lr) = e2 (lr / lr2)^p with p = min(measured order, 1): at a measured order below 1 the ratio
    # e / lr still grows as lr shrinks, and the first-order extrapolation would promise too much
    p = min(order, 1.0)
    advice = lrs[-1] * (tol / errs[-1]) ** (1.0 / p)
    advice = min(advice, lrs[-2])
    return StepSizeAdvice(family=fam.name, tol=float(tol), lr=float(advice), t_max=float(t_max),
                          lrs=tuple(lrs), errors=tuple(float(e) for e in errs), order=float(order),
                          constant=float(C), steps=int(math.ceil(t_max / advice)),
                          measure={"field": f"{fam.primary} error", "critical": "critical-time error",
                                   "both": f"{fam.primary} and critical-time error"}[measure])
