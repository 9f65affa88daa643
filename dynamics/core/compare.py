"""Comparison of two results: :func:`crosscheck` for every family, one run or a batch.

Three outcomes, never a PASS on comparisons that did not happen:

* ``"passed"``: every comparison was made and is within tolerance;
* ``"failed"``: some comparison was made and is out of tolerance (or a critical time was reached by
  one result and not by the other within the same horizon);
* ``"inconclusive"``: nothing failed, but something was not compared -- a critical time that neither
  result reached while the theory says it comes later (a horizon too short), or no common times.
  The report says how far to run: the predicted time and the steps at the run's learning rate.

The primary field of the family (``Trajectory.primary_field``) is compared with one scale-aware error
norm, as in scipy and diffrax: a record passes when ``|a - b| <= rtol * scale`` with ``scale`` per
feature the reference's magnitude over the run, ``max_t |b|`` (:func:`scaled_errors`; a feature whose
reference is 0 throughout takes the field's largest scale), on the times both results share (``a`` is
interpolated linearly onto ``b``'s grid where the grids differ).  Not pointwise ``|b|``: a curve that
crosses zero or collapses to ~0 (a random init's mode) is compared against its own scale, and a time
shift there is not an arbitrarily large "relative error".  Critical times are the hitting times
of ``fraction`` of the fixed point, read off both curves the same way (``metrics.hitting_times``);
the family's exact critical times (where it has a theory) tell a horizon too short from a feature
that is never learned.
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .family import StatefulProblem, get_family
from .io import jsonable
from .metrics import hitting_times
from .steppers import GD, AbstractAdaptive
from .trajectory import Trajectory
from .validation import check_bool, check_fraction, check_instance, check_positive

__all__ = ["Reference", "Outcome", "closing_lines", "CrossCheck", "BatchCrossCheck", "crosscheck", "OUTCOMES", "verdict", "default_tolerances",
           "tolerance_policy", "scaled_errors", "reference_scale", "result_label", "flow_rtol", "FLOW_ERROR_FACTOR", "GD_TOLERANCES"]

OUTCOMES = ("passed", "failed", "inconclusive")


def verdict(outcome) -> str:
    """The word a report prints for an outcome: PASS, FAIL or INCONCLUSIVE."""
    return {"passed": "PASS", "failed": "FAIL", "inconclusive": "INCONCLUSIVE"}[outcome]


def closing_lines(reasons, advice) -> list:
    """The lines that close every check's summary: each reason, then the advice (what to do)."""
    return [f"  {r}" for r in reasons] + ([f"  {advice}"] if advice else [])


class Outcome:
    """Mixin of the check results that carry ``outcome`` ("passed" | "failed" | "inconclusive"), ``reasons``
    and ``advice`` (``StageCheck``, ``EndpointCheck``): ``passed``."""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass(frozen=True)
class CrossCheck:
    """Agreement of two single-run trajectories (typically simulation ``a`` against reference ``b``).

    field : the compared field.   t : (T,) the compared times.
    rel_error : (T, F) error of ``field`` relative to the reference's scale, |a - b| / max_t |b| per feature
        (:func:`scaled_errors`);  max_rel_error : its maximum (per feature: ``per_feature``).
    critical_a, critical_b : (F,) hitting times of ``fraction`` of the fixed point;
    critical_rel_error : (F,) (nan where not compared);  critical_status : (F,) "compared",
    "never" (neither learns it, as the theory predicts) or "not reached" (inconclusive).
    outcome : "passed" | "failed" | "inconclusive";  passed : outcome == "passed".
    reasons : why it failed or is inconclusive;  advice : how far to run when inconclusive.
    """

    t: np.ndarray
    a: Trajectory
    b: Trajectory
    rel_error: np.ndarray
    max_rel_error: float
    per_feature: np.ndarray
    fraction: float
    critical_a: np.ndarray
    critical_b: np.ndarray
    critical_rel_error: np.ndarray
    rtol: float
    ctol: float
    passed: bool
    outcome: str = "passed"
    field: str = "modes"
    critical_status: tuple = ()
    reasons: tuple = ()
    advice: str = ""
    policy: str = ""

    @property
    def inconclusive(self) -> bool:
        return self.outcome == "inconclusive"

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    def summary(self) -> str:
        def name(x):
            return f"{x.kind}/{x.model}" + (f" {x.method}" if x.method else "")
        la, lb = result_label(self.a), result_label(self.b)
        if la == lb:
            la, lb = f"{la} (a)", f"{lb} (b)"
        lines = [f"crosscheck {name(self.a)} (a) vs {name(self.b)} (b): {verdict(self.outcome)}",
                 f"  max error of {self.field}, |a - b| / max_t |b| per feature: {self.max_rel_error:.3e} "
                 f"(tolerance rtol {self.rtol:g})"]
        if self.policy:
            lines.append(f"  tolerances: {self.policy}")
        if self.critical_b.size:
            lines.append(f"  critical times at {self.fraction:g} of the fixed point, |t_a - t_b| / t_b "
                         f"(tolerance ctol {self.ctol:g}):")
            w = max(len(la), len(lb))
            for i, (ca, cb, e) in enumerate(zip(self.critical_a, self.critical_b, self.critical_rel_error)):
                st = self.critical_status[i] if self.critical_status else "compared"
                note = f"rel. error {e:.3e}" if st == "compared" else st
                lines.append(f"    feature {i}: {la:>{w}} {ca:<12.6g} {lb:>{w}} {cb:<12.6g} {note}")
        return "\n".join(lines + closing_lines(self.reasons, self.advice))

    __str__ = summary

    def __repr__(self):
        return (f"CrossCheck({verdict(self.outcome)}: {self.a.model} {self.field}, {result_label(self.a)} vs "
                f"{result_label(self.b)}, max error {self.max_rel_error:.3e}, tolerance {self.rtol:g})")

    def to_dict(self) -> dict:
        return jsonable({"outcome": self.outcome, "passed": self.passed, "field": self.field,
                         "max_rel_error": self.max_rel_error, "per_feature": self.per_feature,
                         "fraction": self.fraction, "critical_a": self.critical_a,
                         "critical_b": self.critical_b, "critical_rel_error": self.critical_rel_error,
                         "critical_status": list(self.critical_status), "rtol": self.rtol, "ctol": self.ctol,
                         "reasons": list(self.reasons), "advice": self.advice, "policy": self.policy})

    def plot(self, ax=None):
        from ..plot import plot_crosscheck
        return plot_crosscheck(self, ax=ax)


@dataclass(frozen=True)
class BatchCrossCheck:
    """One :class:`CrossCheck` per run of a batch. ``passed`` only if every run passed; ``outcome``
    "failed" if any run failed, else "inconclusive" if any run was, else "passed"."""

    checks: tuple
    rtol: float
    ctol: float

    @property
    def outcome(self) -> str:
        outs = [c.outcome for c in self.checks]
        return "failed" if "failed" in outs else ("inconclusive" if "inconclusive" in outs else "passed")

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def max_rel_error(self) -> float:
        return max(c.max_rel_error for c in self.checks)

    @property
    def outcomes(self) -> list:
        return [c.outcome for c in self.checks]

    def __len__(self):
        return len(self.checks)

    def __getitem__(self, i) -> CrossCheck:
        return self.checks[i]

    def summary(self) -> str:
        lines = [f"crosscheck of a batch of {len(self.checks)} runs: {verdict(self.outcome)} (tolerance rtol "
                 f"{self.rtol:g} on |a - b| / max_t |b|, ctol {self.ctol:g} on the critical times)",
                 f"{'run':>5} {'outcome':>13} {'max error':>15}"]
        for i, c in enumerate(self.checks):
            lines.append(f"{i:>5} {verdict(c.outcome):>13} {c.max_rel_error:>15.3e}")
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self):
        counts = ", ".join(f"{self.outcomes.count(o)} {o}" for o in OUTCOMES if o in self.outcomes)
        return (f"BatchCrossCheck({verdict(self.outcome)}: {len(self.checks)} runs ({counts}), max error "
                f"{self.max_rel_error:.3e}, tolerance {self.rtol:g})")

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "passed": self.passed, "runs": [c.to_dict() for c in self.checks]}

    def plot(self, ax=None):
        from ..plot import plot_crosscheck
        return plot_crosscheck(self.checks[0], ax=ax)


class Reference(abc.ABC):
    """A reference that is not a trajectory and compares a simulation on its own terms (the rank-growth
    ``Stages``: errors at plateau middles and at the jumps).  ``crosscheck(sim, ref)`` dispatches to
    ``ref.crosscheck(sim, rtol=...)``; the trajectory-only arguments are refused, not dropped."""

    @abc.abstractmethod
    def crosscheck(self, sim, *, rtol=None):
        """A CrossCheck (or BatchCrossCheck) of ``sim`` against this reference."""


def _check_same_structure(a, b):
    """Refuse two results whose problems differ in structure (their depth): no tolerance makes a depth-2
    run and a depth-3 theory comparable, and a verdict on them would only mislead."""
    keys = []
    for x in (a, b):
        p = x.problem
        keys.append(p.summary().get("depth") if isinstance(p, StatefulProblem) else None)
    if keys[0] is not None and keys[1] is not None and keys[0] != keys[1]:
        raise ValueError(f"a is for a depth-{keys[0]} problem and b for a depth-{keys[1]} one: compare results of the "
                         "same network (problem.with_depth(...) builds the other)")


def flow_rtol(traj):
    """The solver tolerance of an adaptive simulation (its stepper a ``Flow`` or ``Dual``: the rtol the
    user asked for), or None for a fixed-step one (``GD``, ``DualRK4``) and for a theory."""
    stepper = traj.stepper
    return float(stepper.rtol) if isinstance(stepper, AbstractAdaptive) else None


def result_label(traj) -> str:
    """A short name for a result in a report: "theory", or the simulation's method ("gd", "flow", ...)."""
    if traj.kind == "theory":
        return "theory"
    return traj.method or traj.kind


def _has_step_error(traj) -> bool:
    """True for a fixed-step simulation (gradient descent): its error is O(lr)."""
    return traj.kind == "simulation" and flow_rtol(traj) is None


#: the global error of the adaptive flow, measured in tests/test_flow.py, stays below this multiple
#: of its local tolerance rtol on every family's rotated problems (at most ~3e-8 at rtol = 1e-10)
FLOW_ERROR_FACTOR = 1e3

#: (rtol, ctol) whenever gradient descent is one side of a comparison: 5 % on the curves, 2 % on the
#: critical times.  Gradient descent is explicit Euler on the flow, so its error is C lr (theory/flow.md);
#: a time shift dt of a sigmoidal transition shows in the curves amplified by its steepness
#: (rel. error ~ (d ln y / dt) dt), in the critical times as dt / t itself, hence the looser curve
#: tolerance.  At the steps the specs use (>= ~150 steps per transition) the measured errors stay below
#: these (the demo's worst: 3.8e-2 and 8.9e-3); ``lr_for`` gives the step for a tighter target.
GD_TOLERANCES = (5e-2, 2e-2)


#: gradient descent against its exact discrete map at the same lr (the deep linear families' ``solve_*(...,
#: lr=lr)``, theory/discrete.md): the same arithmetic in another order (a dense rotated network against a
#: scalar per mode), so rounding only; measured <= 2e-14 relative per record over 1,500-3,500 steps
#: (tests/test_discrete.py), so 1e-10 leaves a margin of 5,000 for longer runs
DISCRETE_MAP_RTOL = 1e-10


def _discrete_map_match(a, b):
    """(map, gd, why) when one side is an exact discrete map of gradient descent and the other a plain
    gradient-descent simulation ("sgd"), else None; ``why`` is "" when the map describes that run exactly
    (same lr, the aligned init on population moments, float64), else what differs."""
    maps = [x for x in (a, b) if x.kind == "theory" and x.method == "discrete"]
    if len(maps) != 1:
        return None
    other = b if maps[0] is a else a
    stepper = other.stepper
    if other.kind != "simulation" or not isinstance(stepper, GD) or stepper.optimizer != "sgd":
        return None
    lr_map, lr_gd = np.asarray(maps[0].settings.get("lr"), float), np.asarray(other.settings.get("lr"), float)
    try:
        same = bool(np.allclose(lr_map, lr_gd, rtol=1e-12, atol=0))
    except ValueError:
        same = False
    st = other.settings
    why = [] if same else [f"the map is of lr = {maps[0].settings.get('lr')}, the run's lr = {st.get('lr')}"]
    if st.get("init", "aligned") != "aligned":
        why.append(f"the map starts from the aligned init, the run from init={st.get('init')!r}")
    if st.get("batch_size") is not None or st.get("n_data") is not None:
        why.append("the map is on population moments, the run on samples (batch_size / data)")
    if st.get("dtype", "float64") != "float64":
        why.append(f"the run is in {st.get('dtype')}")
    return maps[0], other, "; ".join(why)


def tolerance_policy(a, b):
    """(rtol, ctol, why): the default tolerances for comparing ``a`` with ``b`` and the rule that set them.

    One policy, tied to the methods compared:

    * an approximate theory (``settings["approximation"]``, e.g. generalised modes, small-init stages): its
      estimated error, at least gradient descent's (on the curves its ``curve_error`` where it gives one);
    * adaptive flows and exact theories only: ``FLOW_ERROR_FACTOR`` x the solver's rtol (1e-7 at the
      default 1e-10) for both, since neither has a step-size error;
    * gradient descent against its exact discrete map at the same lr: :data:`DISCRETE_MAP_RTOL`
      (rounding only);
    * gradient descent on either side: :data:`GD_TOLERANCES` (its O(lr) step error).
    """
    match = _discrete_map_match(a, b)
    if match is not None and not match[2]:
        return (DISCRETE_MAP_RTOL, DISCRETE_MAP_RTOL,
                f"gradient descent against its exact discrete map at the same lr: rounding only ({DISCRETE_MAP_RTOL:g}; "
                "theory/discrete.md)")
    if match is not None:
        return (*GD_TOLERANCES, f"gradient descent against a discrete map that is not its own ({match[2]}): compared "
                f"as gradient descent ({GD_TOLERANCES[0]:g} / {GD_TOLERANCES[1]:g}); solve with the run's lr from "
                "its aligned init to compare exactly")
    approx = [x.settings["approximation"] for x in (a, b)
              if x.kind == "theory" and isinstance(x.settings.get("approximation"), dict)
              and not x.settings["approximation"].get("exact", False)]
    if approx:      # an approximate theory: its estimated error, at least gd's -- on the critical times its
        # "error_estimate", on the curves its "curve_error" where it states one (a time shift of a steep rise is a
        # larger error of the curve at that time)
        ctol = max(GD_TOLERANCES[0], max(x["error_estimate"] for x in approx))
        rtol = max(GD_TOLERANCES[0], max(x.get("curve_error", x["error_estimate"]) for x in approx))
        src = approx[0].get("source_page", "theory/generalized.md")
        curve = f", on the curves {rtol:.2g}" if rtol != ctol else ""
        return rtol, ctol, f"approximate theory (estimated error {ctol:.2g}{curve}; {src})"
    ra, rb = flow_rtol(a), flow_rtol(b)
    exact = [r for r in (ra, rb) if r is not None]
    kinds_ok = all(flow_rtol(x) is not None or x.kind == "theory" for x in (a, b))
    if exact and kinds_ok:
        tol = FLOW_ERROR_FACTOR * max(exact)
        return tol, tol, f"adaptive flow at rtol {max(exact):g}: {FLOW_ERROR_FACTOR:g} x rtol, no step-size error"
    return (*GD_TOLERANCES, f"gradient descent: its step error is O(lr); default "
            f"{GD_TOLERANCES[0]:g} on the curves, {GD_TOLERANCES[1]:g} on the critical times")


def default_tolerances(a, b):
    """(rtol, ctol) for comparing ``a`` with ``b`` when not given (:func:`tolerance_policy`)."""
    return tolerance_policy(a, b)[:2]


def _step_advice(a, b, err, tol):
    """Where gradient descent is compared with a reference that has no step error and fails: the lr
    that the first-order error law (error ~ lr) puts under the tolerance, with a safety factor 2."""
    match = _discrete_map_match(a, b)
    if match is not None and not match[2]:
        if np.isfinite(err) and err <= tol:
            return ""
        return ("gradient descent and its exact discrete map differ beyond rounding: the map assumes the aligned "
                "balanced init on population moments (init='aligned', no batch_size or data) and float64; "
                "check the simulation's settings; or lr is above the full network's stability limit "
                "(dy.max_stable_lr: the network then leaves the aligned path the map follows)")
    if match is not None:
        return "" if np.isfinite(err) and err <= tol else (
            f"the discrete map does not describe this run ({match[2]}): a smaller lr would not close the gap")
    gd = [x for x in (a, b) if _has_step_error(x)]
    if len(gd) != 1 or not (np.isfinite(err) and err > tol):
        return ""
    lr = gd[0].settings.get("lr")
    if not isinstance(lr, (int, float)) or lr <= 0:
        return ""
    suggest = lr * tol / err / 2
    return (f"gradient descent's step error is first order in lr: if it causes this failure, lr = {suggest:.3g} "
            f"(now {lr:g}) brings an error of {err:.2g} under {tol:g}; halving lr should halve the error "
            f"(dy.lr_for measures it)")


#: inits that a family's theory describes (the papers' aligned balanced init, and its gauge transform)
ALIGNED_INITS = (None, "aligned", "aligned_gauge")


def _failure_cause(a, b):
    """(why, remedy) for a comparison that failed, from what the two results are: the cause where it is
    known from their settings ("" if none), and the next thing to do, so that no FAIL comes without one."""
    theory = [x for x in (a, b) if x.kind == "theory"]
    sims = [x for x in (a, b) if x.kind == "simulation"]
    single = [x for x in sims if x.settings.get("dtype") == "float32"]
    if theory and sims:
        init = sims[0].settings.get("init")
        if init not in ALIGNED_INITS and theory[0].settings.get("init") in ALIGNED_INITS:
            return (f"the theory describes the aligned init; the {result_label(sims[0])} run starts from init={init!r}, "
                    "which it does not describe (the simulation is not wrong: the reference does not apply)",
                    "compare with the exact flow from the same init and key (method='flow'), the reference for any "
                    "init (theory/flow.md)")
    if single:
        return (f"the {result_label(single[0])} run is in float32 (resolution 1.2e-7), the likely suspect: a feature "
                "whose change per step is below the rounding of the largest weights stalls or drifts, and a smaller "
                "lr makes those changes smaller still (not gradient descent's step error)",
                "rerun in float64 (dtype='float64', the default) to tell rounding from a real disagreement")
    if theory and sims:
        if flow_rtol(sims[0]) is not None:
            return ("", f"the exact flow and the theory disagree beyond {FLOW_ERROR_FACTOR:g} x the solver's rtol: check "
                    "that the theory is of this problem and configuration (depth, objective, options); "
                    "rerun the flow at rtol=1e-12 to rule out the solver")
    if len(sims) == 2 and all(flow_rtol(x) is not None for x in sims):
        return ("", "two adaptive flows differ beyond their tolerance: check that they share the problem, init, key "
                "and configuration; rerun both at rtol=1e-12")
    return ("", "check that both results are of the same problem, init, key and configuration (their settings)")


def crosscheck(a, b, *, fraction=0.5, rtol=None, ctol=None, interpolate=False):
    """Compare result ``a`` with reference ``b`` (simulation vs theory, gd vs another method, ...).

    ``b`` may also be a reference object with its own comparison (the rank-growth ``Stages``: then
    this is ``b.crosscheck(a)``, errors at plateau middles and at the jumps, default rtol 0.05).
    rtol : tolerance of the pointwise relative error;  ctol : of the critical times (defaults, one
    policy tied to the methods, :func:`tolerance_policy`: 5 % and 2 % where gradient descent is
    involved, 1e3 x the solver's rtol for an adaptive flow against the theory; the report states
    which rule applied, and a failure of gradient descent suggests the lr that its first-order error
    puts under the tolerance; ``crosscheck(gd, flow)`` measures gd's discretisation error).
    For a batch in ``a``
    or ``b`` (a single result is broadcast over the other's runs) the result is a
    :class:`BatchCrossCheck` with one row per run.  See the module docstring for the outcomes.

    The two results must share their time grid (``solve_jepa(problem, times=sim.t)``) unless
    ``interpolate=True`` (e.g. gradient descent against the dual flow, recorded on other grids):
    then ``a`` is interpolated linearly onto ``b``'s times within ``a``'s range.
    """
    interpolate = check_bool("interpolate", interpolate)
    fraction = check_fraction("fraction", fraction)
    if isinstance(b, Reference):
        given = [k for k, v in (("fraction", fraction != 0.5), ("ctol", ctol is not None),
                                ("interpolate", bool(interpolate))) if v]
        if given:
            raise ValueError(f"{', '.join(given)} given with a {type(b).__name__} reference, which compares on its "
                             "own terms (rtol only): drop them, or compare with a Trajectory")
        return b.crosscheck(a, rtol=rtol)
    for name, x in (("a", a), ("b", b)):
        check_instance(name, x, Trajectory)
    _check_same_structure(a, b)
    rtol_d, ctol_d, why = tolerance_policy(a, b)
    policy = why if rtol is None and ctol is None else (
        "given" if rtol is not None and ctol is not None else f"partly given; default: {why}")
    rtol = rtol_d if rtol is None else rtol
    ctol = ctol_d if ctol is None else ctol
    fraction = check_fraction("fraction", fraction)
    rtol = check_positive("rtol", rtol)
    ctol = check_positive("ctol", ctol)
    for traj in (a, b):
        if traj.settings.get("dtype") == "float32" and rtol < 1e-5:
            warnings.warn(f"rtol={rtol:g} is beyond float32's accuracy (~1e-6 relative at best) for the "
                          f"{traj.kind} run; simulate with dtype=float64", RuntimeWarning, stacklevel=2)
    if a.batched or b.batched:
        if a.batched and b.batched and a.n_runs != b.n_runs:
            raise ValueError(f"a has {a.n_runs} runs and b has {b.n_runs}: compare batches of one size "
                             "(or one run against a batch)")
        R = a.n_runs if a.batched else b.n_runs
        return BatchCrossCheck(checks=tuple(
            _crosscheck_one(a.run(i) if a.batched else a, b.run(i) if b.batched else b, fraction, rtol, ctol,
                            interpolate, policy) for i in range(R)), rtol=rtol, ctol=ctol)
    return _crosscheck_one(a, b, fraction, rtol, ctol, interpolate, policy)


def reference_scale(b):
    """The scale of each feature of a reference ``b`` (T, F): its magnitude over the run, max_t |b|; a
    feature that is 0 throughout takes the largest scale of the field (then the smallest normal float)."""
    b = np.abs(np.asarray(b, float))
    scale = b.max(axis=0) if b.shape[0] else np.zeros(b.shape[1:])
    whole = float(scale.max()) if scale.size else 0.0
    return np.where(scale > 0, scale, max(whole, np.finfo(float).tiny))


def scaled_errors(a, b):
    """The one error norm of every comparison: ``|a - b| / scale`` (T, F), with ``scale`` the reference's
    :func:`reference_scale` per feature; a record passes when it is <= rtol, i.e. |a - b| <= rtol * scale.
    Scale-aware as scipy's and diffrax's error norms are, with the scale taken over the reference's whole
    run: a curve crossing zero (a random init's mode) or collapsing to ~0 is measured against its own size."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b) / reference_scale(b)


def _family(traj):
    try:
        return get_family(traj.model)
    except ValueError:
        return None


def _on_grid(ta, ya, tb):
    """a's curves on b's times (exact when the grids agree; linear interpolation inside a's range)."""
    if ta.shape == tb.shape and np.allclose(ta, tb, rtol=1e-12, atol=0):
        return ya, np.ones(tb.size, bool)
    inside = (tb >= ta[0] - 1e-12 * max(1.0, abs(ta[0]))) & (tb <= ta[-1] * (1 + 1e-12))
    flat = ya.reshape(ya.shape[0], -1)
    out = np.stack([np.interp(tb, ta, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return out.reshape((tb.size,) + ya.shape[1:]), inside


def _crosscheck_one(a, b, fraction, rtol, ctol, interpolate, policy=""):
    fa, fb = a.primary_field, b.primary_field
    if fa not in a.fields or fb not in b.fields or fa != fb:
        raise ValueError(f"a and b record different primary fields ({fa!r} and {fb!r}): they are not "
                         "results of one family")
    if a.model != b.model:
        fam_a, fam_b = _family(a), _family(b)
        if fam_a is None or fam_b is None or fam_a.primary != fam_b.primary:
            raise ValueError(f"a is a {a.model} result and b a {b.model} result: nothing to compare")
    ta, tb = np.asarray(a.t, float), np.asarray(b.t, float)
    if not interpolate and (ta.shape != tb.shape or not np.allclose(ta, tb, rtol=1e-12, atol=0)):
        raise ValueError(f"a and b must share their time grid (shapes {ta.shape}, {tb.shape}); evaluate the "
                         "theory at times=a.t, or pass interpolate=True")
    ya, yb = np.asarray(a.fields[fa], float), np.asarray(b.fields[fb], float)
    for name, y in (("a", ya), ("b", yb)):
        if not np.all(np.isfinite(y)):
            bad = int(np.size(y) - np.count_nonzero(np.isfinite(y)))
            raise ValueError(f"crosscheck: {name}.{fa} has {bad} non-finite value(s) of {np.size(y)}: there is "
                             "nothing meaningful to compare (a diverged run's .partial holds its finite records)")
    if ya.shape[1:] != yb.shape[1:]:
        raise ValueError(f"a.{fa} and b.{fb} differ in shape: {ya.shape} vs {yb.shape}")
    if ya.ndim == 1:
        ya, yb = ya[:, None], yb[:, None]
    reasons, advice = [], ""
    ya_b, inside = _on_grid(ta, ya, tb) if ta.size and tb.size else (ya, np.zeros(tb.size, bool))
    t = tb[inside]
    ya_b, yb_c = ya_b[inside], yb[inside]
    fam = _family(b) or _family(a)
    flat_a = ya_b.reshape(ya_b.shape[0], -1) if ya_b.size else np.zeros((0, int(np.prod(yb.shape[1:]))))
    flat_b = yb_c.reshape(yb_c.shape[0], -1) if yb_c.size else flat_a
    rel = scaled_errors(flat_a, flat_b)
    max_rel = float(rel.max()) if rel.size else float("nan")
    compared_curves = t.size >= 2
    failed = False
    if not compared_curves:
        reasons.append(f"the results share {t.size} time(s): no curve comparison")
    elif not (np.isfinite(max_rel) and max_rel <= rtol):
        failed = True
        reasons.append(f"{fa}: max error |a - b| / max_t |b| {max_rel:.3e} > rtol {rtol:g}")
    if t.size < tb.size:
        reasons.append(f"a covers t <= {ta[-1]:.6g} of b's t <= {tb[-1]:.6g}; compared there only")

    # critical times
    fp_a = a.fixed_point if a.fixed_point is not None else b.fixed_point
    fp_b = b.fixed_point if b.fixed_point is not None else a.fixed_point
    if fp_b is None or yb.ndim != 2:
        ca = cb = cerr = np.zeros(0)
        status = ()
    else:
        ca = hitting_times(ta, ya, fp_a, fraction) if ta.size else np.full(yb.shape[1], np.inf)
        cb = hitting_times(tb, yb, fp_b, fraction) if tb.size else np.full(yb.shape[1], np.inf)
        predicted = None
        prob = b.problem if b.problem is not None else a.problem
        aligned = all(x.settings.get("init") in (None, "aligned") for x in (a, b))
        # the family's critical times are its theory's, from the aligned init: they say nothing about how far
        # a run from another init has to go, so they are not used (or advised) for one
        if fam is not None and prob is not None and not isinstance(prob, (list, tuple)) and aligned:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    th = fam.theory(prob)
                    predicted = None if th is None or th.critical_times is None else th.critical_times(fraction)
                except (ValueError, TypeError):
                    predicted = None
        t_end = min(ta[-1] if ta.size else 0.0, tb[-1] if tb.size else 0.0)
        cerr = np.full(ca.size, np.nan)
        status = []
        missing = []
        for i in range(ca.size):
            if np.isfinite(ca[i]) and np.isfinite(cb[i]):
                cerr[i] = 0.0 if ca[i] == cb[i] else abs(ca[i] - cb[i]) / abs(cb[i])
                status.append("compared")
                if not cerr[i] <= ctol:
                    failed = True
                    reasons.append(f"feature {i}: critical time {ca[i]:.6g} vs {cb[i]:.6g} "
                                   f"(rel. error {cerr[i]:.3e} > ctol {ctol:g})")
            elif np.isfinite(ca[i]) or np.isfinite(cb[i]):
                # one reached the threshold, the other did not, over the horizon both cover
                reached = ca[i] if np.isfinite(ca[i]) else cb[i]
                if reached <= t_end:
                    cerr[i] = np.inf
                    status.append("compared")
                    failed = True
                    reasons.append(f"feature {i}: reached by {'a' if np.isfinite(ca[i]) else 'b'} at "
                                   f"t = {reached:.6g}, never by {'b' if np.isfinite(ca[i]) else 'a'}")
                else:
                    status.append("not reached")
                    missing.append((i, reached))
            else:
                pred = None if predicted is None else float(predicted[i])
                if pred is not None and not np.isfinite(pred):
                    status.append("never")          # neither learns it, as the theory predicts
                else:
                    status.append("not reached")
                    missing.append((i, pred))
        status = tuple(status)
        if missing:
            known = [p for _, p in missing if p is not None and np.isfinite(p)]
            feats = [i for i, _ in missing]
            if known:
                t_need = 1.2 * max(known)
                sim = a if a.kind == "simulation" else b
                lr = sim.settings.get("lr")
                steps = ""
                if flow_rtol(sim) is not None:
                    steps = " (t_max for the flow)"
                elif isinstance(lr, (int, float)) and lr > 0:
                    steps = f" ({math.ceil(t_need / lr):,} steps at lr = {lr:g})"
                advice = (f"run to t >= {t_need:.6g}{steps}: the theory puts the critical time of feature(s) "
                          f"{feats} at {', '.join(f'{p:.6g}' for p in known)}")
            else:
                advice = (f"run to t > {t_end:.6g} (no predicted time is known here): feature(s) {feats} did not "
                          f"reach {fraction:g} of the fixed point")
            reasons.append(f"critical time of feature(s) {feats} not reached within t <= {t_end:.6g}: not compared")
    not_compared = (not compared_curves) or any(s == "not reached" for s in status)
    outcome = "failed" if failed else ("inconclusive" if not_compared else "passed")
    if failed:      # the remedy of the failure first (a known cause, else the step, else what to check)
        worst_c = float(np.nanmax(cerr)) if cerr.size and np.any(np.isfinite(cerr)) else 0.0
        fix = (_step_advice(a, b, max_rel, rtol) if np.isfinite(max_rel) and max_rel > rtol
               else _step_advice(a, b, worst_c, ctol))
        why, remedy = _failure_cause(a, b)
        if why:     # a known cause: its remedy (beside the discrete map's own word, which names the mismatch)
            reasons.append(why)
            fix = f"{fix}; {remedy}" if fix and _discrete_map_match(a, b) is not None else remedy
        advice = (fix or remedy) + (f"; and {advice}" if advice else "")
    return CrossCheck(t=t, a=a, b=b, rel_error=rel, max_rel_error=max_rel,
                      per_feature=rel.max(axis=0) if rel.size else np.zeros(0), fraction=fraction,
                      critical_a=ca, critical_b=cb, critical_rel_error=cerr, rtol=float(rtol), ctol=float(ctol),
                      passed=outcome == "passed", outcome=outcome, field=fa, critical_status=status,
                      reasons=tuple(reasons), advice=advice, policy=policy)
