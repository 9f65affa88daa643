"""The exact gradient flow of any model: adaptive ODE integration of the engine's own gradient.

Gradient descent at step ``lr`` (``core.engine``) is the explicit Euler discretisation of

    d theta / dt = -grad L(theta),        d aux / dt = r(theta, aux)                          (F)

and differs from it by O(lr) at a fixed gradient-flow time t = lr * step (theory/flow.md).  This module
integrates (F) itself, for the *same* parameters and the *same* gradient function the engine steps
(``Model.grad``), with an error-controlled Runge-Kutta method from diffrax:

* solver: ``"tsit5"`` (default; Tsitouras' 5(4) explicit pair with a 4th-order dense output, FSAL:
  six gradient evaluations per step).  The flows of this library are smooth and mildly stiff at most
  (at a fixed point, and in the u*v dual form at tiny init scale, where Tsit5's steps grow like
  log(1/alpha)); ``"dopri8"`` (8th order) pays off at very tight tolerances; ``"kvaerno5"`` (L-stable
  ESDIRK, Jacobian by autodiff) is offered but, measured, fails on the dual form's jumps with diffrax's
  default chord root finder (theory/flow.md sec. 2).
* step-size control: diffrax's ``PIDController`` as a PI controller (pcoeff = icoeff = 0.3: steady
  where stability rather than accuracy bounds the step, as at a fixed point; theory/flow.md) on the
  RMS norm of the scaled local error ``err / (atol + rtol |y|)``; the steps land on the record times
  (``ClipStepSizeController(step_ts=...)``), so the recorded values are the solver's own steps, not
  interpolants.
* the auxiliary state (an EMA target) moves at the continuous rate of the engine's per-step update:
  ``d/dh update_aux(theta, aux, h)`` at h = 0 when the update takes the step size (``uses_lr``), else
  ``(update_aux(theta, aux) - aux) / lr`` -- an EMA with decay m per step of size lr has rate
  (1 - m) / lr in gradient-flow time, so the flow of such a model is defined by the run's ``lr``.
* ``Model.grad`` with ``uses_lr`` is evaluated at step size 0 (the limit of its own scheme, e.g. the
  RK4 increment of the dual form, which at h = 0 is the vector field itself).

A batch of R runs is integrated under ``jax.vmap`` (each run with its own adaptive steps), laid out over
devices exactly as the engine does (``engine.batch_layout``); the record grid is integrated in chunks
so that a progress bar advances and Ctrl-C keeps what was recorded, and every dispatched chunk is at
most :data:`CHUNK_STEPS` solver steps per run (a run that spends them before its next record goes on
from where it stopped, with its own time: Ctrl-C is honoured within about one chunk and the process can
exit, measured 0.9 s on a flow to t = 1e9 that did not stop in 300 s before); a run whose state or loss turns
non-finite, or whose solver fails (too many steps: the flow is stiff or blows up), stops with a
:class:`~dynamics.core.chunks.DivergenceError` naming the time.  Statistics per run: accepted and
rejected steps and the gradient evaluations they cost.
"""

from __future__ import annotations

import functools
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from .distributed import process_index, to_host
from .cache import cacheable
from .chunks import EngineOutput, finish, run_chunks
from .engine import Model, batch_layout
from .steppers import SOLVERS, AbstractAdaptive, Flow
from .resources import check_memory
from .validation import check_choice, check_int, check_positive

__all__ = ["integrate", "flow_times"]

_PCOEFF, _ICOEFF = 0.3, 0.3
#: most solver steps of one run in one dispatched chunk (the bound on a chunk's time on the devices)
CHUNK_STEPS = 2048


def flow_times(*, times=None, t_max=None, record_every=None, record_log=None, records=500):
    """The record grid of a flow run (gradient-flow time, starting at 0).

    times : an increasing grid of times >= 0 (0 is prepended when missing: the solve starts at the
        initial state; ``dy.simulate`` then returns exactly the times asked for).
    t_max : the horizon, with ``record_every`` (a time step: 0, every, 2 every, ..., t_max),
        ``record_log`` (that many log-spaced times in [t_max * 1e-6, t_max], plus 0) or neither
        (``records`` equal steps).
    """
    if times is not None:
        if t_max is not None:
            raise ValueError("give times (a grid) or t_max (a horizon), not both")
        t = np.asarray(times, dtype=float)
        if t.ndim != 1 or t.size == 0:
            raise ValueError(f"times must be a non-empty 1-D grid, got shape {t.shape}")
        if not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) <= 0):
            raise ValueError(f"times must be finite, >= 0 and strictly increasing, got {t[:5]}...")
        return t if t[0] == 0 else np.concatenate([[0.0], t])
    t_max = check_positive("t_max", t_max)
    if record_every is not None and record_log is not None:
        raise ValueError("give at most one of record_every (a time step) and record_log (a count)")
    if record_log is not None:
        n = check_int("record_log", record_log, minimum=2)
        check_memory(f"the record grid (record_log = {n:,} times)", 8 * n, hint="fewer records")
        return np.concatenate([[0.0], np.geomspace(t_max * 1e-6, t_max, n)])
    if record_every is None:
        records = check_int("records", records, minimum=1)
        every = t_max / records
    else:
        every = check_positive("record_every", record_every)
    n = t_max / every
    check_memory(f"the record grid (t_max / record_every = {n:.3g} records)", 8 * (n + 2),
                 hint="record less often (a larger record_every, or records)")
    t = np.arange(0.0, t_max * (1 + 1e-12), every)
    if t[-1] < t_max * (1 - 1e-12):
        t = np.append(t, t_max)
    t[-1] = t_max
    return t


def _aux_rate(model: Model):
    """d aux / dt of the engine's per-step auxiliary update (see the module docstring)."""
    if model.update_aux is None:
        return lambda p, a, c, lr: jax.tree_util.tree_map(jnp.zeros_like, a)
    if model.uses_lr:
        def rate(p, a, c, lr):
            h0 = jnp.zeros((), dtype=lr.dtype)
            return jax.jvp(lambda h: model.update_aux(p, a, c, h), (h0,), (jnp.ones_like(h0),))[1]
        return rate

    def rate(p, a, c, lr):
        new = model.update_aux(p, a, c)
        return jax.tree_util.tree_map(lambda x, y: (x - y) / lr, new, a)
    return rate


@functools.lru_cache(maxsize=64)
def _compiled_flow(model: Model, solver_name: str, max_steps: int, ctx_batched: bool):
    """The jitted, vmapped solve from t0 to the last of ``ts`` for one (model, solver)."""
    import diffrax

    solver = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8,
              "kvaerno5": diffrax.Kvaerno5}[solver_name]()
    rate = _aux_rate(model)

    def field(t, y, args):
        p, a = y
        c, lr, key = args
        extra = (jnp.zeros((), dtype=lr.dtype),) if model.uses_lr else ()
        _, g = model.grad(p, a, c, key, *extra)
        return (jax.tree_util.tree_map(jnp.negative, g), rate(p, a, c, lr))

    def observe(t, y, args):
        return model.observe(y[0], y[1], args[0])

    def one(y0, c, lr, key, rtol, atol, t0, ts):
        # this run continues from its own t0 (where its previous chunk stopped); record times before it
        # are clipped to it (saved, not used: the host keeps the records it already has)
        ts = jnp.maximum(ts, t0)
        pid = diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=_PCOEFF, icoeff=_ICOEFF)
        controller = diffrax.ClipStepSizeController(pid, step_ts=ts)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field), solver, t0, ts[-1], None, y0, args=(c, lr, key),
            saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=observe), diffrax.SubSaveAt(t1=True)]),
            stepsize_controller=controller, max_steps=max_steps, throw=False,
            adjoint=diffrax.ForwardMode())
        obs, final = sol.ys
        y1 = jax.tree_util.tree_map(lambda x: x[-1], final)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(y1)]))
        # 0: reached ts[-1]; 1: this chunk's step budget spent (go on from t_end); 2: failed
        code = jnp.where(sol.result == diffrax.RESULTS.successful, 0,
                         jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 1, 2))
        code = jnp.where(finite, code, 2)
        t_end = sol.ts[1][-1]       # where the solver stopped (ts[-1] unless the budget ran out or it failed)
        return y1, obs, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"], code, t_end

    cx = 0 if ctx_batched else None
    return cacheable(jax.jit(jax.vmap(one, in_axes=(0, cx, 0, 0, None, 0, 0, None))))


def integrate(model: Model, params, aux, ctx, lr, *, times, solver: AbstractAdaptive | None = None, key=None,
              progress=None, desc="flow", on_divergence="raise", shard=None, make_partial=None,
              ctx_batched=True, n_chunks=None, bar=None) -> EngineOutput:
    """Integrate the gradient flow (F) of R runs and record observations at ``times``.

    params, aux, ctx, ctx_batched : as for :func:`dynamics.core.engine.simulate`.
    lr : (R,) the runs' step sizes (only an EMA target's rate depends on it).   key : (R,) keys (the
        gradient must not use them: a stochastic model has no flow).
    times : (T,) increasing record times starting at 0 (see :func:`flow_times`).
    solver : an adaptive stepper (:class:`~dynamics.core.steppers.Flow` or ``Dual``): its rtol, atol,
        solver and max_steps, as the solver should get them (a family's rescaling already applied).
    Returns an :class:`~dynamics.core.chunks.EngineOutput` whose ``steps`` are the record indices and
    whose ``extra`` holds ``times`` and per-run ``accepted`` / ``rejected`` steps and ``evaluations``.
    bar : an open progress bar to update (the caller's, shared by several calls; not closed here).
    """
    check_choice("on_divergence", on_divergence, {"raise", "stop"})
    solver = Flow() if solver is None else solver
    if model.stochastic:
        raise ValueError("this model's gradient is stochastic (minibatches or fresh samples): its gradient "
                         "flow is not defined; use method='gd', or the full-batch (population) options")
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0 or times[0] != 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be increasing record times starting at 0")
    lr = jnp.asarray(lr)
    R = lr.shape[0]
    dtype = lr.dtype
    key = jnp.stack([jax.random.PRNGKey(0)] * R) if key is None else key
    if solver.atol is None:
        scale = jax.vmap(lambda p: jnp.max(jnp.stack(
            [jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(p)])))(params)
        atol = jnp.maximum(solver.rtol * 1e-3 * scale, jnp.finfo(dtype).tiny).astype(dtype)
    else:
        atol = jnp.full((R,), solver.atol, dtype=dtype)

    state = (params, aux)
    state, (ctx, (lr_d, key_d, atol_d)), ndev, pad, shard = batch_layout(
        state, (ctx, (lr, key, atol)), R, shard=shard, ctx_batched=ctx_batched)

    T = times.size
    if n_chunks is None:
        n_chunks = int(min(T, 50))
    per = int(math.ceil(T / n_chunks))     # every window padded to one length: one compiled program
    bounds = list(range(0, T, per)) + [T]
    n_chunks = len(bounds) - 1
    if progress is None:
        progress = sys.stderr.isatty() and R * T >= 20_000
    progress = progress and process_index() == 0      # one bar for several processes
    recs, accepted, rejected = [], np.zeros(R + pad, np.int64), np.zeros(R + pad, np.int64)
    done, diverged_at, bad_runs = 0, None, []
    rtol = jnp.asarray(solver.rtol, dtype=dtype)
    # each dispatched chunk is at most CHUNK_STEPS solver steps per run (a bounded time on the devices, so
    # that Ctrl-C is honoured within about a chunk and the process can exit); a run that spends them
    # before the window's last record time goes on from where it stopped in the next chunk
    budget = min(solver.max_steps, CHUNK_STEPS)
    run = _compiled_flow(model, solver.solver, budget, bool(ctx_batched))
    t_run = lr_d * 0                        # each run's time (laid out as the runs are)
    window = {"dispatched": 0, "c": 0, "filled": np.zeros(R + pad, np.int64), "buf": None,
              "since": np.zeros(R + pad, np.int64), "fail": None}

    def dispatch():
        c = window["c"]
        if c >= n_chunks:
            return None
        ts = times[bounds[c]:bounds[c + 1]]
        padded = np.concatenate([ts, np.full(per - ts.size, ts[-1])])   # repeated last time: no work
        out = run(state, ctx, lr_d, key_d, rtol, atol_d, t_run, np.asarray(padded, dtype=dtype))
        window["dispatched"] += 1
        return ts, out

    def collect(queue):
        """The chunk's records on the host, run by run up to where each run's solver stopped; the window
        is done when every run has all its records.  A run whose records turn non-finite or whose solver
        failed stops the integration there (the records before it kept)."""
        nonlocal state, t_run, done, diverged_at, bad_runs
        ts, (new, obs, acc, rej, code, t_end) = queue[0]
        code = to_host(code)        # waits for the chunk (an interrupt here still collects it)
        host = jax.tree_util.tree_map(lambda x: to_host(x)[:, :ts.size], obs)
        t_host = to_host(t_end)
        acc, rej = to_host(acc), to_host(rej)
        queue.pop(0)
        accepted[:], rejected[:] = accepted + acc, rejected + rej
        if window["buf"] is None:
            window["buf"] = jax.tree_util.tree_map(lambda x: np.full_like(x, np.nan), host)
        buf, filled = window["buf"], window["filled"]
        # records this chunk reached: at times up to where each run stopped (all of them when it finished)
        reached = np.where(code == 0, ts.size, np.searchsorted(ts, t_host, side="right"))
        finite_obs = np.ones((R + pad, ts.size), bool)
        for leaf in jax.tree_util.tree_leaves(host):
            finite_obs &= np.isfinite(leaf.reshape(leaf.shape[0], ts.size, -1)).all(axis=-1)
        old = filled.copy()
        for r in range(R + pad):
            a, b = old[r], reached[r]
            if b > a:
                for x, y in zip(jax.tree_util.tree_leaves(buf), jax.tree_util.tree_leaves(host)):
                    x[r, a:b] = y[r, a:b]
        filled[:] = np.maximum(old, reached)
        window["since"] = np.where(filled > old, 0, window["since"] + acc + rej)
        # a run fails at its first non-finite record of this chunk, strictly before where its solver failed,
        # or at its next record when it spent max_steps without reaching it (a run that lags behind another
        # one's failure is still watched: it may fail too)
        failed = [] if window["fail"] is None else window["fail"][1]
        rows, firsts = list(failed), [] if window["fail"] is None else [window["fail"][0]]
        for r in range(R):
            if r not in failed:
                seg = finite_obs[r, old[r]:reached[r]]
                if not seg.all():
                    first = old[r] + int(np.argmin(seg))
                elif code[r] == 2:
                    first = min(int(reached[r]), int(np.searchsorted(ts, t_host[r], side="left")))
                elif window["since"][r] >= solver.max_steps:
                    first = int(filled[r])
                else:
                    continue
                rows.append(r)
                firsts.append(max(first, 0))
        if rows:
            window["fail"] = (min(firsts), rows)
        if window["fail"] is not None:
            # every record before the first failure is kept, for every run: the healthy runs that lag
            # behind it go on until they have them
            n_keep, rows = window["fail"]
            if all(filled[r] >= n_keep for r in range(R) if r not in rows):
                recs.append(jax.tree_util.tree_map(lambda x: x[:, :n_keep], buf))
                done += n_keep
                bad_runs = rows
                diverged_at = float(ts[min(n_keep, ts.size - 1)])
                window["buf"] = None
                return n_keep, True
            state, t_run = new, t_end
            return 0, False
        state, t_run = new, t_end
        if np.all(filled >= ts.size):       # every run has this window's records: the next window
            recs.append(buf)
            done += ts.size
            window.update(c=window["c"] + 1, buf=None)
            filled[:] = 0
            return ts.size, False
        return 0, False

    def keep_partial():
        """At an interrupt: the records every run has of the current window (t = 0 included)."""
        nonlocal done
        buf = window["buf"]
        if buf is not None:
            n = int(window["filled"][:R].min())
            if n > 0:
                recs.append(jax.tree_util.tree_map(lambda x: x[:, :n], buf))
                done += n
            window["buf"] = None

    status, message, wall, compile_time = run_chunks(
        dispatch, collect, depth=1, where=lambda: f"at t = {float(times[max(done - 1, 0)]):.6g}", total=T,
        desc=desc, unit="record", progress=progress, bar=bar)
    if status == 1:
        keep_partial()
    records = ({k: np.concatenate([r[k] for r in recs], axis=1)[:R] for k in recs[0]} if recs else {})
    evals = SOLVERS[solver.solver] * (accepted + rejected)[:R] + 2 * window["dispatched"]
    final_params = jax.tree_util.tree_map(lambda x: to_host(x)[:R], state[0])
    final_aux = jax.tree_util.tree_map(lambda x: to_host(x)[:R], state[1])
    extra = {"devices": ndev if shard else 1, "runs": R, "times": times[:done],
             "accepted": accepted[:R], "rejected": rejected[:R], "evaluations": evals}
    if diverged_at is not None:
        status = -1
        message = (f"the flow failed near t = {diverged_at:.6g} in run(s) {bad_runs[:10]}: the state or the loss "
                   f"turned non-finite, or the solver needed more than {solver.max_steps:,} steps between two "
                   "records (the flow blows up there, or is stiff: try solver='kvaerno5', a smaller init "
                   f"scale or a shorter horizon: t_max, times, or lr x steps on gradient descent's grid). The {done} "
                   "records before it are kept.")
    out = EngineOutput(steps=np.arange(done, dtype=np.int64), records=records, final_params=final_params,
                       final_aux=final_aux, status=status, message=message, wall_time=wall,
                       compile_time=compile_time, extra=extra)
    return finish(out, on_divergence, make_partial)
