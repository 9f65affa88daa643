"""The alpha -> 0 limit of u * v models: the stage (saddle-to-saddle) algorithm and its comparison.

As alpha -> 0, beta(t / log(1/alpha)) is piecewise constant (theory/rank_growth.md sec. 3):
:func:`stages` computes the plateaus beta^k, the jump times T_k in rescaled time, the active sets and
ties; :class:`Stages` is the reference a simulation is compared with (``crosscheck(sim, stages)``).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ...core.compare import BatchCrossCheck, Outcome, Reference, closing_lines, verdict
from ...core.io import jsonable
from ...core.trajectory import Trajectory
from ...core.validation import check_array, check_int, check_positive, check_instance
from .model import HadamardProblem

__all__ = ["Stages", "StageCheck", "stages", "crosscheck_stages", "fast_flow", "default_tau_max"]


@dataclass(frozen=True)
class Stages(Reference):
    """The alpha -> 0 limit: plateaus beta^k on tau in (times[k], times[k+1]).

    times (K+1,) rescaled jump times (times[0] = 0); points (K+1, p) plateau betas (points[0] = 0);
    losses (K+1,); active: list of index tuples; entered / left: coordinates that became active /
    deactivated at each jump; ties: groups of coordinates whose events coincided (within tol);
    s (K+1, p) the dual variable at each jump; extra: per-family data (e.g. ranks).
    """

    times: np.ndarray
    points: np.ndarray
    losses: np.ndarray
    active: list
    entered: list
    left: list
    ties: list
    s: np.ndarray
    converged: bool
    message: str
    extra: dict = field(default_factory=dict)

    def __getattr__(self, name):
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)

    @property
    def n_stages(self) -> int:
        return len(self.times) - 1

    def __repr__(self):
        jumps = ", ".join(f"{x:.4g}" for x in self.times[1:6]) + (", ..." if self.n_stages > 5 else "")
        return (f"Stages({self.n_stages} stage(s), jumps at tau = [{jumps}], final loss {self.losses[-1]:.3g}; "
                f"{'converged' if self.converged else 'not converged'}; .summary() for the table)")

    def __str__(self):
        return self.summary()

    def plateau_index(self, tau):
        """Which plateau each rescaled time (>= 0) falls on."""
        tau = check_array("tau", tau)
        if np.any(tau < 0):
            raise ValueError(f"tau must be >= 0 (rescaled time since the init), got {tau[tau < 0][:5]}")
        return np.searchsorted(self.times, tau, side="right") - 1

    def predict(self, tau) -> Trajectory:
        """The piecewise-constant predicted trajectory on any grid of rescaled times."""
        tau = check_array("tau", tau, ndim=1)
        k = self.plateau_index(tau)
        return Trajectory(t=tau, fields={"tau": tau, "beta": self.points[k], "loss": self.losses[k]},
                          kind="theory", model="stages", settings={"units": "rescaled"}, method="stages",
                          primary="beta")

    def crosscheck(self, sim, *, rtol=None):
        """Compare a simulated run (or each run of a batch) with these stages: see
        :func:`crosscheck_stages`."""
        return crosscheck_stages(sim, self, **({} if rtol is None else {"rtol": rtol}))

    def midpoints(self, tau_end=None):
        """Middle of each plateau; the last one ends at tau_end (default times[-1] + 1), and its
        midpoint is nan if tau_end does not exceed times[-1]."""
        last = self.times[-1] + 1.0 if tau_end is None else float(tau_end)
        ends = np.append(self.times[1:], last if last > self.times[-1] else np.nan)
        return 0.5 * (self.times + ends)

    def to_dict(self):
        return jsonable({"times": self.times, "points": self.points, "losses": self.losses,
                          "active": [list(a) for a in self.active], "entered": self.entered,
                          "left": self.left, "ties": self.ties, "converged": self.converged,
                          "message": self.message, **self.extra})

    def summary(self) -> str:
        lines = [f"{self.n_stages} stage(s); {self.message}",
                 f"{'k':>3} {'T_k':>10} {'loss':>12}  entered / left"]
        for k in range(len(self.times)):
            lines.append(f"{k:>3} {self.times[k]:>10.5g} {self.losses[k]:>12.5g}  "
                         f"{self.entered[k]} / {self.left[k]}")
        return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def _fast_flow_fns(loss_fn):
    """Jitted right-hand side dr/dt = -2 sign g(beta) and its Jacobian, in log coordinates."""
    grad = jax.grad(loss_fn)

    def rhs(r, sign, support, template, data):
        beta = template.at[support].set(sign * jnp.exp(r))
        return -2.0 * sign * grad(beta, data)[support]

    return jax.jit(rhs), jax.jit(jax.jacfwd(rhs))


def fast_flow(problem, beta, support, *, seed=1e-6, t_chunk=1e3, max_chunks=60, gtol=1e-10,
              drop=1e-9):
    """The jump: d beta/dt = -2 |beta| grad L(beta) on ``support`` (signs fixed) to its limit.

    Integrated in log coordinates r (beta_i = sign_i e^(r_i), dr_i/dt = -2 sign_i g_i) with LSODA
    and the exact (autodiff) Jacobian; ``beta`` gives the signs and the starting values (zeros are
    seeded at ``seed``; the caller sets entering coordinates to +-1 to give their sign).
    Coordinates that decay below ``drop`` deactivate (set to 0). Stops when max |g| on the
    surviving support is below ``gtol``. Returns (beta, converged).
    """
    beta = np.array(beta, dtype=float)
    support = np.asarray(sorted(support), dtype=int)
    sign = np.sign(beta[support])
    if np.any(sign == 0):
        raise ValueError("fast_flow needs the sign of every support coordinate")
    mag = np.where(np.abs(beta[support]) >= seed, np.abs(beta[support]), seed)
    r = np.log(mag)
    rhs_j, jac_j = _fast_flow_fns(type(problem).loss_fn)
    data = jax.tree_util.tree_map(jnp.asarray, problem.data)
    sup_j, sign_j, zero_j = jnp.asarray(support), jnp.asarray(sign), jnp.zeros(beta.size)
    rhs = lambda t, rr: np.asarray(rhs_j(jnp.asarray(rr), sign_j, sup_j, zero_j, data))  # noqa: E731
    jac = lambda t, rr: np.asarray(jac_j(jnp.asarray(rr), sign_j, sup_j, zero_j, data))  # noqa: E731
    converged = False
    from scipy.integrate import solve_ivp   # imported when first used (import dynamics stays light)

    for _ in range(max_chunks):
        sol = solve_ivp(rhs, (0.0, t_chunk), r, method="LSODA", jac=jac, rtol=1e-10, atol=1e-12)
        r = sol.y[:, -1]
        alive = np.exp(r) > drop
        b = np.zeros_like(beta)
        b[support[alive]] = sign[alive] * np.exp(r[alive])
        g = problem.grad(b)
        if np.all(np.abs(g[support[alive]]) < gtol):
            converged = True
            break
    out = np.zeros_like(beta)
    keep = np.exp(r) > drop
    out[support[keep]] = sign[keep] * np.exp(r[keep])
    return out, converged


def stages(problem, *, jump=None, max_stages=200, tol=1e-9, tie_tol=1e-7):
    """The stage (saddle-to-saddle) algorithm of theory/rank_growth.md sec. 3.

    From beta = 0, s = 0: g = grad L(beta) with g = 0 on the active set; the next event is the first
    coordinate whose s_i - Delta g_i reaches +1 (if a_i > 0) or -1 (if b_i > 0); advance s, then jump:
    ``jump(beta, s, entering) -> beta`` (default: ``problem.jump`` if the family has a closed form,
    else :func:`fast_flow` on the active set plus the entering coordinates, seeded with sign(s)).
    Events within ``tie_tol`` (relative, in [0, 0.1)) of each other are taken together and reported as
    ties (with a warning). Gradients below ``tol`` (relative, in (0, 0.1)) count as 0. Stops at a
    stationary point of L.  Both tolerances are relative to the problem's own scales -- the gradient at
    the init g_ref = max |grad L(0)| and the time 1 / g_ref -- so that the stages of X, c y (c X) are those
    of X, y with beta scaled by c (1/c) and tau by 1/c: the units of the data do not change the answer.
    """
    check_int("max_stages", max_stages, minimum=1)
    tol = check_positive("tol", tol, upper=0.1)
    tie_tol = check_positive("tie_tol", tie_tol, strict=False, upper=0.1)
    check_instance("problem", problem, HadamardProblem, "a DLNProblem or AttentionProblem")
    if jump is None:
        jump = getattr(problem, "jump", None)
    p = problem.p
    a = (problem.u0 + problem.v0) ** 2
    b = (problem.u0 - problem.v0) ** 2
    beta = np.zeros(p)
    s = np.zeros(p)
    T = 0.0
    times, points, losses, actives, entered, left, ties, ss = [0.0], [beta.copy()], [problem.loss(beta)], \
        [()], [[]], [[]], [], [s.copy()]
    converged, message = False, f"stopped after max_stages={max_stages} stages"
    g_ref = float(np.abs(problem.grad(beta)).max())
    if not np.isfinite(g_ref):
        raise ValueError(f"the gradient at beta = 0 is not finite ({g_ref}): rescale the data")
    tau_ref = 1.0 / g_ref if g_ref > 0 else 1.0
    for _ in range(max_stages):
        g = problem.grad(beta)
        active = beta != 0
        g = np.where(active, 0.0, g)
        g = np.where(np.abs(g) < tol * g_ref, 0.0, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where((g < 0) & (a > 0), (1.0 - s) / -g, np.inf)
            down = np.where((g > 0) & (b > 0), (1.0 + s) / g, np.inf)
        delta = np.minimum(up, down)
        delta = np.where(delta < 0, 0.0, delta)
        if not np.any(np.isfinite(delta)):
            converged, message = True, "converged: no inactive coordinate has a gradient"
            break
        dmin = delta.min()
        group = np.nonzero(delta <= dmin + tie_tol * max(tau_ref, dmin))[0]
        if group.size > 1:
            ties.append({"stage": len(times), "coordinates": group.tolist(), "time": T + dmin})
            warnings.warn(f"stage {len(times)}: coordinates {group.tolist()} reach |s| = 1 together at "
                          f"tau = {T + dmin:.6g} (a tie): they enter in one jump, which may raise the "
                          "rank by more than one", RuntimeWarning, stacklevel=2)
        T += dmin
        s = s - dmin * g
        s[group] = np.sign(s[group])            # exactly on the boundary (removes rounding)
        new = beta.copy()
        new[group] = np.sign(s[group])
        if jump is None:
            nb, ok = fast_flow(problem, new, np.nonzero(new)[0])
            if not ok:
                warnings.warn(f"stage {len(times)}: the fast flow did not converge to a stationary point",
                              RuntimeWarning, stacklevel=2)
        else:
            nb = jump(beta, s, group)
        before = set(np.nonzero(beta)[0].tolist())
        after = set(np.nonzero(nb)[0].tolist())
        beta = nb
        times.append(T)
        points.append(beta.copy())
        losses.append(problem.loss(beta))
        actives.append(tuple(sorted(after)))
        entered.append(sorted(after - before))
        left.append(sorted(before - after))
        ss.append(s.copy())
    st = Stages(times=np.array(times), points=np.array(points), losses=np.array(losses),
                active=actives, entered=entered, left=left, ties=ties, s=np.array(ss),
                converged=converged, message=message)
    extras = getattr(problem, "stage_extras", None)
    return dataclasses.replace(st, extra=extras(st)) if extras is not None else st


def default_tau_max(problems):
    """Past the last predicted stage: 1.15 x the last jump time + 0.3 (the largest over a batch)."""
    return max(1.15 * float(stages(p).times[-1]) + 0.3 for p in problems)


@dataclass(frozen=True)
class StageCheck(Outcome):
    """Simulation vs stage prediction, at the middle of each plateau and at the jumps.

    tau_mid (K+1,), beta_error (K+1,) max |beta_sim - beta^k| there (nan past the run's end),
    loss_error (K+1,); jump_sim (K,): when the simulated loss crosses halfway between consecutive
    plateau losses, jump_pred (K,) = times[1:]; jump_error = jump_sim - jump_pred (nan where not crossed).
    outcome : "passed" (every plateau middle and jump inside the run compared and within tolerance),
    "failed", or "inconclusive" (some predicted plateau or jump lies beyond the run: ``advice`` says how
    far to run), or the differences may be the finite alpha's (1 / log(1/alpha) > FINITE_ALPHA_SHARE x rtol:
    the stages are the alpha -> 0 limit).  Tolerance: beta errors <= rtol * max |beta^k|, jump errors <= rtol * T_k (the data's own scales);
    at finite alpha both shrink like 1/log(1/alpha).
    """

    tau_mid: np.ndarray
    beta_error: np.ndarray
    loss_error: np.ndarray
    jump_sim: np.ndarray
    jump_pred: np.ndarray
    jump_error: np.ndarray
    rtol: float = 0.05
    outcome: str = "passed"
    reasons: tuple = ()
    advice: str = ""

    def __repr__(self):
        return f"StageCheck({verdict(self.outcome)}, tolerance {self.rtol:g}; .summary() for the table)"

    def summary(self):
        lines = [f"crosscheck simulation vs stages: {verdict(self.outcome)} (tolerance {self.rtol:g})",
                 f"{'k':>3} {'tau_mid':>9} {'|beta err|':>11} {'loss err':>10} {'jump sim':>10} {'jump pred':>10}"]
        for k in range(len(self.tau_mid)):
            js = f"{self.jump_sim[k - 1]:>10.4g}" if k else " " * 10
            jp = f"{self.jump_pred[k - 1]:>10.4g}" if k else " " * 10
            lines.append(f"{k:>3} {self.tau_mid[k]:>9.4g} {self.beta_error[k]:>11.3e} "
                         f"{self.loss_error[k]:>10.3e} {js} {jp}")
        return "\n".join(lines + closing_lines(self.reasons, self.advice))

    __str__ = summary

    def to_dict(self):
        return jsonable({"outcome": self.outcome, "passed": self.passed, "rtol": self.rtol,
                         "beta_error_mid": self.beta_error, "loss_error_mid": self.loss_error,
                         "jump_sim": self.jump_sim, "jump_pred": self.jump_pred, "reasons": list(self.reasons),
                         "advice": self.advice})


#: a stage check FAILs only where the finite-alpha distance 1 / log(1/alpha) is below this share of rtol;
#: above it a difference beyond the tolerance is INCONCLUSIVE (alpha too large to tell), with the reason
FINITE_ALPHA_SHARE = 0.25


def crosscheck_stages(sim: Trajectory, st: Stages, *, rtol=0.05):
    """Compare a simulated run (``sim.tau``, ``sim.beta``, ``sim.loss``) with the stage prediction;
    for a batch, one :class:`StageCheck` per run (a ``BatchCrossCheck``)."""
    rtol = check_positive("rtol", rtol)
    check_instance("sim", sim, Trajectory, "a Trajectory (a u*v simulation)")
    check_instance("st", st, Stages, "a Stages (from dy.stages)")
    if getattr(sim, "batched", False):
        return BatchCrossCheck(checks=tuple(crosscheck_stages(sim.run(i), st, rtol=rtol) for i in range(sim.n_runs)),
                               rtol=rtol, ctol=rtol)
    tau = np.asarray(sim.tau, float)
    if tau.ndim != 1:
        raise ValueError("crosscheck_stages compares one run: pick it with traj.run(i)")
    mids = st.midpoints(tau_end=tau[-1])
    inside = np.isfinite(mids) & (mids <= tau[-1])
    beta_err = np.full(len(mids), np.nan)
    loss_err = np.full(len(mids), np.nan)
    for k in np.nonzero(inside)[0]:
        bk = np.array([np.interp(mids[k], tau, sim.beta[:, i]) for i in range(sim.beta.shape[1])])
        beta_err[k] = np.abs(bk - st.points[k]).max()
        loss_err[k] = abs(np.interp(mids[k], tau, sim.loss) - st.losses[k])
    jumps = np.full(st.n_stages, np.nan)
    for k in range(st.n_stages):
        level = 0.5 * (st.losses[k] + st.losses[k + 1])
        lo = st.times[k] if not np.isfinite(mids[k]) else mids[k]
        idx = np.nonzero((tau >= lo) & (sim.loss <= level))[0]
        if idx.size and idx[0] > 0:
            j = idx[0]
            l0, l1 = sim.loss[j - 1], sim.loss[j]
            w = (l0 - level) / (l0 - l1) if l0 != l1 else 0.0
            jumps[k] = tau[j - 1] + w * (tau[j] - tau[j - 1])
    pred = st.times[1:]
    reasons, failed, missing = [], False, []
    # relative to the stages' own scales (the units of the data do not change a verdict)
    beta_scale = float(np.abs(st.points).max()) if st.points.size else 0.0
    btol = rtol * (beta_scale if beta_scale > 0 else 1.0)
    for k in np.nonzero(inside)[0]:
        if not beta_err[k] <= btol:
            failed = True
            reasons.append(f"plateau {k}: |beta - beta^{k}| = {beta_err[k]:.3e} > {btol:.3g} (= rtol {rtol:g} x max "
                           f"|beta^k|) at tau = {mids[k]:.4g}")
    for k in range(st.n_stages):
        jtol = rtol * pred[k]
        if np.isfinite(jumps[k]):
            if not abs(jumps[k] - pred[k]) <= jtol:
                failed = True
                reasons.append(f"jump {k + 1}: simulated at tau = {jumps[k]:.4g}, predicted {pred[k]:.4g}")
        elif tau[-1] > pred[k] + jtol and k + 1 < len(mids) and np.isfinite(mids[k + 1]) and inside[k + 1]:
            failed = True
            reasons.append(f"jump {k + 1}: predicted at tau = {pred[k]:.4g}, not seen by tau = {tau[-1]:.4g}")
        else:
            missing.append(k + 1)
    missing_plateaus = [k for k in range(len(mids)) if not inside[k]]
    advice = ""
    if missing or missing_plateaus:
        last = max([pred[k - 1] for k in missing] + [st.times[k] for k in missing_plateaus])
        named = ", ".join(f"{k} at tau = {pred[k - 1]:.4g} (loss {st.losses[k - 1]:.3g} -> {st.losses[k]:.3g})"
                          for k in missing)
        reasons.append(f"jump(s) {named or 'none'} / plateau(s) {missing_plateaus} lie beyond the run (tau <= "
                       f"{tau[-1]:.4g}): not compared")
        advice = f"run to tau >= {1.15 * last + 0.1:.4g} (tau_max=...) to reach every predicted stage"
    outcome = "failed" if failed else ("inconclusive" if (missing or missing_plateaus) else "passed")
    alpha = sim.settings.get("init_scale")
    finite = None if alpha is None else 1.0 / np.log(1.0 / float(alpha))
    if failed and finite is not None and finite > FINITE_ALPHA_SHARE * rtol:
        # the stages are the alpha -> 0 limit: at this alpha the run's distance from them (O(1 / log(1/alpha)))
        # can exceed the tolerance without anything being wrong; a FAIL must mean something is wrong
        outcome = "inconclusive"
        reasons.append(f"finite alpha: at alpha = {float(alpha):.3g} the run is 1/log(1/alpha) = {finite:.3g} from the "
                       f"alpha -> 0 limit the stages describe (in tau), more than {FINITE_ALPHA_SHARE:g} x rtol, so "
                       "these differences are not evidence against it")
        need = float(np.exp(-1.0 / (FINITE_ALPHA_SHARE * rtol)))
        advice = (f"compare at alpha <= {need:.1e} (method='dual' reaches 1e-100), or watch the differences shrink "
                  "as alpha decreases" + (f"; {advice}" if advice else ""))
    return StageCheck(tau_mid=mids, beta_error=beta_err, loss_error=loss_err, jump_sim=jumps,
                      jump_pred=pred, jump_error=jumps - pred, rtol=rtol, outcome=outcome,
                      reasons=tuple(reasons), advice=advice)
