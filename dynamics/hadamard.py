"""Models that see their parameters only through beta = u * v: simulators and the stage algorithm.

Shared by diagonal linear networks (``diagonal.py``) and diagonal attention (``transformer.py``);
derivations in theory/rank_growth.md.  With g = grad L(beta) and theta(0) = alpha (u0, v0):

    u' = -g * v,  v' = -g * u       =>   u_i^2 - v_i^2 is conserved,
    beta_i = (alpha^2 / 4) [a_i e^(2 S_i) - b_i e^(-2 S_i)],  a = (u0 + v0)^2,  b = (u0 - v0)^2,
    dS/dt = -g(beta(S))                                                               (E)

In rescaled time tau = t / log(1/alpha) and s = S / log(1/alpha), (E) reads ds/dtau = -g with
beta_i = (1/4) [a_i alpha^(2(1 - s_i)) - b_i alpha^(2(1 + s_i))]: integrating s (``method="dual"``)
reaches alpha = 1e-32 and below without underflow.  ``method="gd"`` is plain gradient descent on (u, v).
As alpha -> 0 beta is piecewise constant in tau; :func:`stages` computes the plateaus and jump times.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from . import engine
from .results import Trajectory, _jsonable, records_to_fields, versions
from .validation import check_array, check_choice, check_int, check_positive

__all__ = ["HadamardProblem", "Stages", "StageCheck", "beta_from_dual", "simulate_hadamard", "stages",
           "crosscheck_stages", "fast_flow"]


class HadamardProblem:
    """Mixin for u * v problems. A subclass (a frozen dataclass) provides ``data`` (dict of arrays),
    unit-scale init directions ``u0``, ``v0`` (p,), ``init_scale`` alpha in (0, 1), a ``name``, and the
    pure JAX function ``loss_fn(beta, data)`` as a staticmethod; theta(0) = alpha (u0, v0)."""

    name = "hadamard"

    @property
    def p(self) -> int:
        return self.u0.size

    @property
    def log_inv_alpha(self) -> float:
        return float(np.log(1.0 / self.init_scale))

    def with_init_scale(self, init_scale):
        """The same problem at another alpha."""
        return dataclasses.replace(self, init_scale=_check_alpha(init_scale))

    def loss(self, beta):
        return float(_loss_jit(type(self).loss_fn)(jnp.asarray(beta, dtype=jnp.float64), self.data))

    def grad(self, beta):
        return np.asarray(_grad_jit(type(self).loss_fn)(jnp.asarray(beta, dtype=jnp.float64), self.data))


def _check_alpha(alpha):
    return check_positive("init_scale", alpha, upper=1.0)


@functools.lru_cache(maxsize=None)
def _loss_jit(loss_fn):
    return jax.jit(loss_fn)


@functools.lru_cache(maxsize=None)
def _grad_jit(loss_fn):
    return jax.jit(jax.grad(loss_fn))


def beta_from_dual(s, a, b, log_inv_alpha):
    """beta = (1/4) [a alpha^(2(1-s)) - b alpha^(2(1+s))], exponents clipped at 700 (no overflow)."""
    e1 = jnp.minimum(-2.0 * log_inv_alpha * (1.0 - s), 700.0)
    e2 = jnp.minimum(-2.0 * log_inv_alpha * (1.0 + s), 700.0)
    return 0.25 * (a * jnp.exp(e1) - b * jnp.exp(e2))


# --------------------------------------------------------------------------------------- simulate
@functools.lru_cache(maxsize=32)
def _engine_model(loss_fn, method):
    vg = jax.value_and_grad(loss_fn)

    if method == "gd":
        def grad(params, aux, ctx, key):
            beta = params["u"] * params["v"]
            loss, g = vg(beta, ctx["data"])
            return loss, {"u": g * params["v"], "v": g * params["u"]}

        def observe(params, aux, ctx):
            beta = params["u"] * params["v"]
            return {"beta": beta, "loss": loss_fn(beta, ctx["data"])}
    else:
        def slope(s, ctx):
            return -jax.grad(loss_fn)(beta_from_dual(s, ctx["a"], ctx["b"], ctx["lam"]), ctx["data"])

        def grad(params, aux, ctx, key):
            # classical RK4 for ds/dtau = -g(beta(s)); the engine's SGD step with lr = h applies it
            s, h = params["s"], ctx["h"]
            k1 = slope(s, ctx)
            k2 = slope(s + 0.5 * h * k1, ctx)
            k3 = slope(s + 0.5 * h * k2, ctx)
            k4 = slope(s + h * k3, ctx)
            loss = loss_fn(beta_from_dual(s, ctx["a"], ctx["b"], ctx["lam"]), ctx["data"])
            return loss, {"s": -(k1 + 2 * k2 + 2 * k3 + k4) / 6.0}

        def observe(params, aux, ctx):
            beta = beta_from_dual(params["s"], ctx["a"], ctx["b"], ctx["lam"])
            return {"beta": beta, "loss": loss_fn(beta, ctx["data"])}

    return engine.Model(grad=grad, observe=observe)


def simulate_hadamard(problem, *, method="gd", lr=None, steps=None, tau_max=None, dtau=None,
                      record_every=None, record_log=None, optimizer="sgd", progress=None,
                      on_divergence="raise", key=0):
    """Train a u * v model: ``method="gd"`` (gradient descent on (u, v) with step ``lr``, ``steps``
    steps or up to rescaled time ``tau_max``) or ``method="dual"`` (RK4 on (E) in rescaled time with
    step ``dtau``, default 0.02 / log(1/alpha), up to ``tau_max``).

    ``problem`` may be a list of problems of one shape (e.g. several alphas): one batched run.
    Returns a Trajectory with .t (original time), .tau = t / log(1/alpha), .beta (T, p), .loss (T,).
    """
    check_choice("method", method, {"gd", "dual"})
    probs = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    for i, pb in enumerate(probs):
        if not isinstance(pb, HadamardProblem):
            raise TypeError(f"problem[{i}] must be a DLNProblem or AttentionProblem, got {type(pb).__name__}")
    if len({(type(pb), pb.p) for pb in probs}) != 1:
        raise ValueError("a batch of problems must share the model type and the number of coordinates")
    R = len(probs)
    lams = np.array([pb.log_inv_alpha for pb in probs])
    if method == "gd":
        if lr is None:
            raise ValueError("method='gd' needs lr > 0")
        lr = check_positive("lr", lr)
        if steps is None:
            if tau_max is None:
                raise ValueError("give steps or tau_max")
            steps = int(np.ceil(check_positive("tau_max", tau_max) * lams.max() / lr))
        lrs = np.full(R, lr)
        params = {"u": np.stack([pb.init_scale * pb.u0 for pb in probs]),
                  "v": np.stack([pb.init_scale * pb.v0 for pb in probs])}
    else:
        if optimizer != "sgd":
            raise ValueError("method='dual' integrates the flow with RK4; optimizer must be 'sgd'")
        if tau_max is None:
            raise ValueError("method='dual' needs tau_max (rescaled time to integrate to)")
        tau_max = check_positive("tau_max", tau_max)
        h = 0.02 / lams.max() if dtau is None else check_positive("dtau", dtau)
        steps = int(np.ceil(tau_max / h))
        lrs = np.full(R, h)
        params = {"s": np.zeros((R, probs[0].p))}
    steps = check_int("steps", steps, minimum=1)
    if record_every is None and record_log is None:
        record_every = max(1, steps // 1000)
    rec = engine.record_schedule(steps, every=record_every, log=record_log)
    ctx = {"data": jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                                          *[pb.data for pb in probs]),
           "a": jnp.asarray(np.stack([(pb.u0 + pb.v0) ** 2 for pb in probs])),
           "b": jnp.asarray(np.stack([(pb.u0 - pb.v0) ** 2 for pb in probs])),
           "lam": jnp.asarray(lams), "h": jnp.asarray(lrs)}
    model = _engine_model(type(probs[0]).loss_fn, method)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(0), i) for i in range(R)])
    settings = {"method": method, "lr": float(lrs[0]), "steps": steps, "record_every": record_every,
                "record_log": record_log, "optimizer": optimizer if isinstance(optimizer, str) else "custom",
                "init_scale": [pb.init_scale for pb in probs] if R > 1 else probs[0].init_scale,
                "units": "gf", **versions()}

    def to_traj(out):
        x = lrs[:, None] * out.steps[None, :]
        t, tau = (x, x / lams[:, None]) if method == "gd" else (x * lams[:, None], x)
        if R == 1:
            t, tau = t[0], tau[0]
        elif np.unique(lams).size == 1:
            t, tau = t[0], tau[0]
        fields = records_to_fields(out.records, R > 1)
        fields["tau"] = tau
        return Trajectory(t=t, fields=fields, kind="simulation", model=probs[0].name,
                          problem=None, settings={**settings, "wall_time_s": out.wall_time},
                          status=out.status, message=out.message, runs=R if R > 1 else None)

    out = engine.simulate(model, params, {}, ctx, jnp.asarray(lrs), record_steps=rec, key=keys,
                          optimizer=optimizer, progress=progress, on_divergence=on_divergence,
                          desc=f"{probs[0].name} {method}", make_partial=to_traj)
    return to_traj(out)


# --------------------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class Stages:
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

    def plateau_index(self, tau):
        """Which plateau each rescaled time falls on."""
        return np.searchsorted(self.times, np.asarray(tau, float), side="right") - 1

    def predict(self, tau) -> Trajectory:
        """The piecewise-constant predicted trajectory on any grid of rescaled times."""
        tau = check_array("tau", tau, ndim=1)
        k = self.plateau_index(tau)
        return Trajectory(t=tau, fields={"tau": tau, "beta": self.points[k], "loss": self.losses[k]},
                          kind="theory", model="stages", settings={"units": "rescaled"})

    def midpoints(self, tau_end=None):
        """Middle of each plateau; the last one ends at tau_end (default times[-1] + 1), and its
        midpoint is nan if tau_end does not exceed times[-1]."""
        last = self.times[-1] + 1.0 if tau_end is None else float(tau_end)
        ends = np.append(self.times[1:], last if last > self.times[-1] else np.nan)
        return 0.5 * (self.times + ends)

    def to_dict(self):
        return _jsonable({"times": self.times, "points": self.points, "losses": self.losses,
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
    else :func:`fast_flow` on the active set plus the entering coordinates, seeded with sign(s)). Events within ``tie_tol`` (relative) of each other
    are taken together and reported as ties (with a warning). Stops at a stationary point of L.
    """
    check_int("max_stages", max_stages, minimum=1)
    if not isinstance(problem, HadamardProblem):
        raise TypeError(f"problem must be a DLNProblem or AttentionProblem, got {type(problem).__name__}")
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
    for _ in range(max_stages):
        g = problem.grad(beta)
        active = beta != 0
        g = np.where(active, 0.0, g)
        scale = max(1.0, np.abs(g).max())
        g = np.where(np.abs(g) < tol * scale, 0.0, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where((g < 0) & (a > 0), (1.0 - s) / -g, np.inf)
            down = np.where((g > 0) & (b > 0), (1.0 + s) / g, np.inf)
        delta = np.minimum(up, down)
        delta = np.where(delta < 0, 0.0, delta)
        if not np.any(np.isfinite(delta)):
            converged, message = True, "converged: no inactive coordinate has a gradient"
            break
        dmin = delta.min()
        group = np.nonzero(delta <= dmin + tie_tol * max(1.0, dmin))[0]
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


# --------------------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class StageCheck:
    """Simulation vs stage prediction, at the middle of each plateau and at the jumps.

    tau_mid (K+1,), beta_error (K+1,) max |beta_sim - beta^k| there, loss_error (K+1,);
    jump_sim (K,): when the simulated loss crosses halfway between consecutive plateau losses,
    jump_pred (K,) = times[1:]; jump_error = jump_sim - jump_pred (nan where not crossed).
    """

    tau_mid: np.ndarray
    beta_error: np.ndarray
    loss_error: np.ndarray
    jump_sim: np.ndarray
    jump_pred: np.ndarray
    jump_error: np.ndarray

    def summary(self):
        lines = [f"{'k':>3} {'tau_mid':>9} {'|beta err|':>11} {'loss err':>10} {'jump sim':>10} {'jump pred':>10}"]
        for k in range(len(self.tau_mid)):
            js = f"{self.jump_sim[k - 1]:>10.4g}" if k else " " * 10
            jp = f"{self.jump_pred[k - 1]:>10.4g}" if k else " " * 10
            lines.append(f"{k:>3} {self.tau_mid[k]:>9.4g} {self.beta_error[k]:>11.3e} "
                         f"{self.loss_error[k]:>10.3e} {js} {jp}")
        return "\n".join(lines)


def crosscheck_stages(sim: Trajectory, st: Stages) -> StageCheck:
    """Compare one simulated run (``sim.tau``, ``sim.beta``, ``sim.loss``) with the stage prediction."""
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
    return StageCheck(tau_mid=mids, beta_error=beta_err, loss_error=loss_err, jump_sim=jumps,
                      jump_pred=st.times[1:], jump_error=jumps - st.times[1:])
