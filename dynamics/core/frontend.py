"""The one simulation front-end and the one theory front-end every family uses.

``simulate(family, problem, ...)`` resolves the run arguments the same way for every family:

* a batch of R runs from a list of problems of one shape, an array of learning rates, ``runs`` seeds,
  a sequence of keys and per-run options (each 1 or R);
* keys by ``core.keys`` (run i: ``fold_in(key, i)``; initial state from ``fold_in(run_key, 0)``);
* one default record count (:data:`DEFAULT_RECORDS`), linear or log-spaced schedules;
* dtype (float64 by default; float32 with the family's resolution warning);
* the engine run (sharded over devices, progress, divergence, Ctrl-C);
* one settings record (keys, devices, versions, timings) and one conversion to a Trajectory.

``solve(fn, problem, times)`` evaluates a theory on the times of any result: a 1-D grid, or the
(R, T) times of a batch with several learning rates, for one problem or a list (one per run).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import engine, flow
from .family import Family
from .io import versions
from .keys import init_key, key_count, key_data, run_keys, step_key
from .resources import check_memory, nbytes_of
from .trajectory import Trajectory, stack_runs
from .validation import check_array, check_choice, check_int, check_positive

__all__ = ["DEFAULT_RECORDS", "simulate", "solve", "resolve_batch", "check_dtype"]

DEFAULT_RECORDS = 500


def check_dtype(dtype, default=np.float64):
    dtype = np.dtype(default if dtype is None else dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError("float64 needs jax_enable_x64 (dynamics enables it at import; something "
                           "turned it off): jax.config.update('jax_enable_x64', True)")
    return dtype


def resolve_batch(family: Family, problem, lr, runs, key, per_run=None):
    """(problems (R,), lrs (R,), R, batched, per_run {name: (R, ...)}) from the run arguments."""
    problems = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    if not problems:
        raise ValueError("problem: an empty list of problems")
    for i, p in enumerate(problems):
        if not isinstance(p, family.problem_type):
            want = family.problem_type
            want = " or ".join(t.__name__ for t in want) if isinstance(want, tuple) else want.__name__
            raise TypeError(f"problem{'' if len(problems) == 1 else f'[{i}]'} must be a {want} for "
                            f"{family.name}, got {type(p).__name__}")
    shapes = {family.shape(p) for p in problems}
    if len(shapes) != 1:
        raise ValueError(f"a batch of problems must share {family.shape_name}; got {family.shape_name} in "
                         f"{sorted(map(str, shapes))}")
    lr_arr = check_array("lr", lr)
    if lr_arr.ndim > 1:
        raise ValueError(f"lr must be a scalar or a 1-D array of learning rates, got shape {lr_arr.shape}")
    if lr_arr.size == 0 or np.any(lr_arr <= 0):
        raise ValueError(f"lr must be > 0, got {lr_arr}")
    runs = check_int("runs", runs, minimum=1)
    per_run = {k: np.asarray(v) for k, v in (per_run or {}).items()}
    sizes = {"problems": len(problems), "learning rates": lr_arr.size if lr_arr.ndim else 1,
             "keys": key_count(key), "runs": runs, **{k: len(v) for k, v in per_run.items()}}
    distinct = set(sizes.values()) - {1}
    if len(distinct) > 1:
        raise ValueError("the batch sizes disagree: " + ", ".join(f"{v} {k}" for k, v in sizes.items())
                         + "; each must be 1 or the batch size R")
    R = distinct.pop() if distinct else 1
    batched = (R > 1 or lr_arr.ndim == 1 or isinstance(problem, (list, tuple)) or key_count(key) > 1
               or any(v.ndim >= 1 for v in per_run.values()))
    lrs = np.broadcast_to(lr_arr, (R,)).astype(float)
    probs = problems * R if len(problems) == 1 else problems
    per_run = {k: np.broadcast_to(v, (R,) + v.shape[1:]) if len(v) == 1 else v for k, v in per_run.items()}
    return probs, lrs, R, batched, per_run


def _to_device(trees, dtype, *, stack=True):
    """Device arrays of a list of pytrees: stacked along a new runs axis (or the only tree as it is
    with ``stack=False``); floating leaves cast to ``dtype``, integer leaves kept."""
    def conv(*xs):
        a = np.stack([np.asarray(x) for x in xs]) if stack else np.asarray(xs[0])
        return jnp.asarray(a, dtype=dtype if np.issubdtype(a.dtype, np.floating) else None)
    return jax.tree_util.tree_map(conv, *trees)


def _check_batch_memory(model, state, ctx, R, n_records, itemsize, shared):
    """Refuse (``ResourceError``) a batch whose parameters or records would not fit the memory budget,
    from one run's state and the shapes of one observation (``jax.eval_shape``: nothing is run)."""
    params, aux = state
    per_run = nbytes_of(params, itemsize) + nbytes_of(aux, itemsize)
    check_memory(f"{R:,} runs' parameters ({per_run:,} bytes each, several copies during a step)",
                 4 * R * per_run + (nbytes_of(ctx, itemsize) * (1 if shared else R)),
                 hint="run fewer runs at once")
    tree = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.float64), (params, aux, ctx))
    obs = jax.eval_shape(lambda p, a, c: model.observe(p, a, c), *tree)
    check_memory(f"the records ({R:,} runs x {n_records:,} records x {nbytes_of(obs, itemsize):,} bytes)",
                 2 * R * n_records * nbytes_of(obs, itemsize),
                 hint="record less often (record_every, record_log, or a coarser times grid) or run fewer runs")


def _step_schedule(steps, record_every, record_log):
    """(steps, record_every, record step indices) with the default of :data:`DEFAULT_RECORDS` records."""
    steps = check_int("steps", steps, minimum=1)
    if record_every is None and record_log is None:
        record_every = max(1, steps // DEFAULT_RECORDS)
    return steps, record_every, engine.record_schedule(steps, every=record_every, log=record_log)


def simulate(family: Family, problem, *, lr=None, steps=None, record_every=None, record_log=None, runs=1,
             key=0, dtype=None, progress=None, on_divergence="raise", optimizer="sgd", method="gd",
             options=None, per_run=None, desc=None, times=None, t_max=None, rtol=None, atol=None,
             solver=None) -> Trajectory:
    """Simulate ``family`` on ``problem`` (see the module docstring for the run arguments).

    options : the family's own options (shared by every run).   per_run : options with one value per
    run (e.g. dense attention's init scales), each of length 1 or R.

    Step methods (``family.methods``, e.g. "gd") take ``lr`` and ``steps``.  ODE methods
    (``family.ode_methods``: "flow", the exact gradient flow of the same parameters, and the u*v
    "dual" form) are integrated adaptively (``core.flow``) on the record grid ``times``, or up to
    ``t_max`` (``record_every`` a time step, ``record_log`` a count), or -- with neither -- on the
    grid ``lr * step`` that "gd" with the same ``lr`` and ``steps`` records (so the two compare
    point by point).  ``rtol`` / ``atol`` / ``solver`` configure :class:`~dynamics.core.flow.FlowSolver`;
    ``lr`` (default 1) then only sets an EMA target's rate and a step-counting family's time unit.
    """
    ode = method in family.ode_methods
    check_choice("method", method, set(family.methods) | set(family.ode_methods))
    check_choice("on_divergence", on_divergence, {"raise", "stop"})
    if ode and optimizer != "sgd":
        raise ValueError(f"method={method!r} integrates the gradient flow itself: there is no optimizer "
                         f"(optimizer must be 'sgd', got {optimizer!r}); use method='gd' for {optimizer!r}")
    if not family.optimizers and optimizer != "sgd":
        raise ValueError(f"{family.name} integrates its flow with plain gradient steps: optimizer must be "
                         f"'sgd', got {optimizer!r}")
    if not ode and (times is not None or t_max is not None or rtol is not None or atol is not None
                    or solver is not None):
        raise ValueError(f"times, t_max, rtol, atol and solver are for the ODE methods {family.ode_methods}, "
                         f"not method={method!r} (which takes lr and steps)")
    if lr is None:
        if not ode:
            raise ValueError(f"method={method!r} needs lr > 0 (the step size)")
        lr = 1.0
    probs, lrs, R, batched, per_run = resolve_batch(family, problem, lr, runs, key, per_run)
    solver_cfg = grid_steps = None
    if ode:
        rtol = rtol_requested = check_positive("rtol", flow.DEFAULT_RTOL if rtol is None else rtol, upper=0.1)
        rtol, atol = family.flow_tolerances(probs, method, rtol, atol)
        solver_cfg = flow.FlowSolver(rtol=rtol, atol=atol, solver="tsit5" if solver is None else solver)
        if times is None and t_max is None:     # gd's grid: lr * its record steps
            if steps is None:
                raise ValueError(f"method={method!r} needs times (a grid), t_max (a horizon) or lr and steps")
            if np.unique(lrs).size > 1:
                raise ValueError(f"method={method!r} on a batch of learning rates: give times (one grid)")
            steps, record_every, grid_steps = _step_schedule(steps, record_every, record_log)
            grid = float(lrs[0]) * grid_steps.astype(float)
        else:
            grid = flow.flow_times(times=times, t_max=t_max, record_every=record_every, record_log=record_log,
                                   records=DEFAULT_RECORDS)
    else:
        if steps is None:
            raise ValueError(f"method={method!r} needs steps (an int >= 1)")
        steps, record_every, rec = _step_schedule(steps, record_every, record_log)
    base = family.base_method(method)
    dtype = check_dtype(dtype, np.float64 if ode else family.default_dtype)
    if ode and dtype == np.float32 and solver_cfg.rtol < 1e-6:
        raise ValueError(f"rtol={solver_cfg.rtol:g} is below float32's resolution: simulate the flow in "
                         "float64 (the default) or give rtol >= 1e-6")
    options = family.check_options(probs, method, dict(options or {}))
    run_options = [{**options, **{k: v[i] for k, v in per_run.items()}} for i in range(R)]
    if dtype == np.float32:
        family.warn_float32(probs, lrs, options)

    keys = run_keys(key, R)
    shared = len({id(p) for p in probs}) == 1       # one problem for every run: share its matrices
    model = family.model(probs[0], base, options)
    first = family.initial_state(probs[0], init_key(keys[0]), base, run_options[0])
    ctx0 = family.context(probs[0], base, options)
    n_records = grid.size if ode else rec.size
    _check_batch_memory(model, first, ctx0, R, n_records, np.dtype(dtype).itemsize, shared)
    states = [first] + [family.initial_state(p, init_key(k), base, o)
                        for p, k, o in zip(probs[1:], keys[1:], run_options[1:])]
    params = _to_device([s[0] for s in states], dtype)
    aux = _to_device([s[1] for s in states], dtype)
    ctxs = [ctx0] + ([] if shared else [family.context(p, base, options) for p in probs[1:]])
    ctx = _to_device(ctxs, dtype, stack=not shared)
    fixed = [family.fixed_point(p, o) for p, o in zip(probs, run_options)]
    settings = {"family": family.name, "method": method, "lr": lrs.tolist() if batched else float(lrs[0]),
                "steps": steps if not ode else None, "record_every": record_every, "record_log": record_log,
                "runs": R,
                **({"flow": {**solver_cfg.to_dict(), "rtol_requested": rtol_requested}} if ode else {}),
                "optimizer": optimizer if isinstance(optimizer, str) else "custom", "dtype": str(dtype),
                "units": family.time_units, "key": key_data(keys),
                **family.settings(probs[0], method, options),
                **{k: v.tolist() for k, v in per_run.items()}, **versions()}

    def to_traj(out: engine.EngineOutput) -> Trajectory:
        if ode:     # flow time x as (fractional) steps at each run's lr: the family's clock does the rest
            x = np.asarray(out.extra["times"], float)
            # on gd's grid the clock gets gd's integer steps (the same times, bit for bit)
            per = [family.times([p], lrs[i:i + 1], x / lrs[i] if grid_steps is None else grid_steps[:x.size],
                                base) for i, p in enumerate(probs)]
            t = np.concatenate([q[0] for q in per], axis=0)
            extra = {k: np.concatenate([q[1][k] for q in per], axis=0) for k in per[0][1]}
            stats = {k: out.extra[k].tolist() if batched else int(out.extra[k][0])
                     for k in ("accepted", "rejected", "evaluations")}
        else:
            t, extra = family.times(probs, lrs, out.steps, base)
            stats = {}
        same_t = bool(np.all(t == t[:1])) if t.size else True
        fields = {**{k: v for k, v in out.records.items()}, **extra}
        if not batched:
            fields = {k: v[0] for k, v in fields.items()}
            t = t[0]
        elif same_t:
            t = t[0]
        fp = None if any(f is None for f in fixed) else np.stack([np.asarray(f, float) for f in fixed])
        if fp is not None and not batched:
            fp = fp[0]
        return Trajectory(t=t, fields=fields, kind="simulation", model=family.name, method=method,
                          primary=family.primary,
                          problem=probs if (batched and not shared) else probs[0],
                          settings={**settings, "wall_time_s": out.wall_time, "compile_time_s": out.compile_time,
                                    "devices": out.extra["devices"],
                                    **({"solver_stats": stats} if ode else {"step_index": out.steps.tolist()})},
                          fixed_point=fp, status=out.status, message=out.message, runs=R if batched else None)

    run_keys_ = jnp.stack([step_key(k) for k in keys])
    if ode:
        out = flow.integrate(model, params, aux, ctx, jnp.asarray(lrs, dtype=dtype), times=grid,
                             solver=solver_cfg, key=run_keys_, progress=progress,
                             desc=desc or f"{family.name} {method}", on_divergence=on_divergence,
                             make_partial=to_traj, ctx_batched=not shared)
    else:
        out = engine.simulate(model, params, aux, ctx, jnp.asarray(lrs, dtype=dtype), record_steps=rec,
                              key=run_keys_, optimizer=optimizer,
                              progress=progress, desc=desc or f"{family.name} {method}",
                              on_divergence=on_divergence, make_partial=to_traj, ctx_batched=not shared)
    return to_traj(out)


def solve(fn, problem, times, *, what="times"):
    """Evaluate the theory ``fn(problem, times_1d) -> Trajectory`` on the times of any result.

    times : (T,) one grid, or (R, T) one grid per run (a batch with several learning rates).
    problem : one problem, or a list of R (a batch of problems).  A batch in either gives a batched
    trajectory (``runs`` = R, fields (R, T, ...)); its ``t`` is (T,) when every run shares it.
    """
    t = check_array(what, times)
    probs = list(problem) if isinstance(problem, (list, tuple)) else None
    if t.ndim not in (1, 2) or (t.ndim == 2 and t.shape[0] < 2):
        raise ValueError(f"{what} must have 1 dimension (one grid) or be the (R, T) times of a batch of "
                         f"R >= 2 runs, got shape {t.shape}")
    if t.ndim == 1 and probs is None:
        return fn(problem, t)
    R = t.shape[0] if t.ndim == 2 else len(probs)
    if probs is not None and len(probs) != R:
        raise ValueError(f"{len(probs)} problems for {R} time grids: give one problem or one per run")
    probs = probs if probs is not None else [problem] * R
    grids = t if t.ndim == 2 else np.broadcast_to(t, (R, t.size))
    return stack_runs([fn(p, g) for p, g in zip(probs, grids)],
                      problem=probs if isinstance(problem, (list, tuple)) else problem)
