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

import dataclasses
import functools
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from . import distributed, engine, flow
from .chunks import DivergenceError, EngineOutput, progress_bar
from .config import Config
from .family import Family, default_family, families, get_family
from .steppers import DEFAULT_RTOL, AbstractStepper, DualRK4, Flow, GD
from .io import versions
from .locate import Reintegration
from .keys import derive_run_keys, is_key_sequence, key_count
from .resources import check_memory, check_steps, device_budget, memory_budget, nbytes_of
from .trajectory import Trajectory, stack_runs
from .validation import check_array, check_choice, check_fraction, check_instance, check_int

__all__ = ["DEFAULT_RECORDS", "simulate", "run", "make_config", "critical_times", "family_of", "stepper_from_keywords", "solve", "resolve_batch", "check_dtype"]

DEFAULT_RECORDS = 500


def check_dtype(dtype, default=np.float64):
    try:
        dtype = np.dtype(default if dtype is None else dtype)
    except (TypeError, ValueError):
        raise TypeError(f"dtype must be float64 or float32 (a numpy dtype or its name), got "
                        f"{type(dtype).__name__}: {dtype!r:.60}") from None
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
    shapes = [family.shape(p) for p in problems]
    for i, sh in enumerate(shapes):
        diff = [k for k in shapes[0] if sh.get(k) != shapes[0][k]]
        if diff:
            labels = list(shapes[0])
            what = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
            raise ValueError(f"a batch of problems must share {what}: problem[{i}] "
                             f"has {', '.join(f'{k} = {sh[k]!r}' for k in diff)} where problem[0] has "
                             f"{', '.join(f'{k} = {shapes[0][k]!r}' for k in diff)} (the numbers -- rates, "
                             "init scales, spectra -- may differ)")
    lr_arr = check_array("lr", lr)
    if lr_arr.ndim > 1:
        raise ValueError(f"lr must be a scalar or a 1-D array of learning rates, got shape {lr_arr.shape}")
    if lr_arr.size == 0 or np.any(lr_arr <= 0):
        raise ValueError(f"lr must be > 0, got {lr_arr}")
    runs = check_int("runs", runs, minimum=1)
    if key_count(key) == 0:
        raise ValueError("key: an empty sequence of keys; give an int seed, a jax.random.key, or one key per run")
    per_run = {k: np.asarray(v) for k, v in (per_run or {}).items()}
    sizes = {"problems": len(problems), "learning rates": lr_arr.size if lr_arr.ndim else 1,
             "keys": key_count(key), "runs": runs, **{k: len(v) for k, v in per_run.items()}}
    distinct = set(sizes.values()) - {1}
    if len(distinct) > 1:
        raise ValueError("the batch sizes disagree: " + ", ".join(f"{v} {k}" for k, v in sizes.items())
                         + "; each must be 1 or the batch size R")
    R = distinct.pop() if distinct else 1
    # the host arrays of a batch (learning rates, keys, settings) before any state: ~1 kB a run
    check_memory(f"a batch of {R:,} runs", 1024 * R, hint="fewer runs (runs, or shorter sequences of problems, "
                 "learning rates or keys)")
    # one rule: any sequence argument (problems, learning rates, keys, per-run values) makes a batch, even of one
    batched = (R > 1 or lr_arr.ndim == 1 or isinstance(problem, (list, tuple)) or is_key_sequence(key)
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


@functools.lru_cache(maxsize=64)
def _observation_shape(model, treedef, shapes):
    """The shapes of one run's observation (``jax.eval_shape`` of ``model.observe``: nothing is run),
    cached per model and input shapes (tracing observe again costs ~5 ms a call)."""
    tree = jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(sh, np.float64) for sh in shapes])
    return jax.eval_shape(lambda p, a, c: model.observe(p, a, c), *tree)


def _batch_group(model, state, ctx, R, n_records, itemsize, shared, *, budget=None):
    """How many runs to lay out at once (``R``, or fewer: the batch then runs in sequential groups).

    From one run's state and the shapes of one observation (``jax.eval_shape``: nothing is run):
    the whole result (every run's records) must fit the memory budget on the host, else
    ``ResourceError``; on the devices, each run in flight holds its parameters (several copies during a
    step), its context and a chunk of records: when R runs do not fit, the largest group that does.
    """
    host = memory_budget() if budget is None else budget
    budget = min(host, device_budget()) if budget is None else budget
    params, aux = state
    per_run = nbytes_of(params, itemsize) + nbytes_of(aux, itemsize)
    leaves, treedef = jax.tree_util.tree_flatten((params, aux, ctx))
    obs = nbytes_of(_observation_shape(model, treedef, tuple(np.shape(x) for x in leaves)), itemsize)
    check_memory(f"the records ({R:,} runs x {n_records:,} records x {obs:,} bytes)", 2 * R * n_records * obs,
                 hint="record less often (record_every, record_log, or a coarser times grid) or run fewer runs",
                 budget=host)
    ctx_bytes = nbytes_of(ctx, itemsize)
    chunk = min(n_records, 2 * max(1, -(-n_records // 50)))          # records a dispatched chunk holds
    per_dev = 4 * per_run + (0 if shared else ctx_bytes) + 2 * chunk * obs
    fixed = ctx_bytes if shared else 0
    check_memory(f"one run's parameters and records in flight ({per_dev:,} bytes{' + the shared context' if shared else ''})",
                 per_dev + fixed, hint="a smaller problem, or fewer records per chunk", budget=budget)
    return int(max(1, min(R, (budget - fixed) // per_dev)))


def _merge_outputs(outs, sizes):
    """One EngineOutput from those of sequential groups of runs (records concatenated along the runs,
    cut to the records every group has; the worst status; each group's message with its runs)."""
    n = min(o.steps.size for o in outs)
    records = {k: np.concatenate([o.records[k][:, :n] for o in outs], axis=0) for k in outs[0].records}
    cat = lambda xs: None if any(x is None for x in xs) else jax.tree_util.tree_map(  # noqa: E731
        lambda *a: np.concatenate(a, axis=0), *xs)
    status = -1 if any(o.status == -1 for o in outs) else max(o.status for o in outs)
    offsets = np.cumsum([0] + list(sizes))
    msgs = [f"group of runs {offsets[i]}-{offsets[i + 1] - 1} (run indices below within the group): {o.message}"
            for i, o in enumerate(outs) if o.status != 0]
    extra = {"devices": outs[0].extra["devices"], "runs": int(sum(sizes)), "groups": len(outs),
             "group_size": int(sizes[0])}
    for k in ("accepted", "rejected", "evaluations"):
        if k in outs[0].extra:
            extra[k] = np.concatenate([o.extra[k] for o in outs])
    if "times" in outs[0].extra:
        extra["times"] = outs[0].extra["times"][:n]
    return EngineOutput(steps=outs[0].steps[:n], records=records, final_params=cat([o.final_params for o in outs]),
                               final_aux=cat([o.final_aux for o in outs]), status=status,
                               message="; ".join(msgs) if msgs else "finished",
                               wall_time=sum(o.wall_time for o in outs), compile_time=outs[0].compile_time,
                               extra=extra)


@functools.lru_cache(maxsize=64)
def _compiled_grad(model):
    """``model.grad`` compiled (cached per model, like the engine's programs)."""
    return jax.jit(model.grad)


def _warn_float32_resolution(family, model, state, ctx, lr, step_key):
    """For a family without its own check: warn when float32 cannot resolve the first steps, i.e. when
    the relative update lr ||g|| / ||theta|| of some parameter block is below float32's resolution
    (the update is then rounded away and that block never moves).  One float64 gradient, on the host."""
    params, aux = state
    extra = (lr,) if model.uses_lr else ()
    try:    # compiled as one program: run op by op, a model's gradient compiles dozens of small programs
        _, g = _compiled_grad(model)(params, aux, ctx, step_key, *extra)
    except Exception:      # pragma: no cover - a gradient that cannot be traced as a whole: op by op
        try:
            _, g = model.grad(params, aux, ctx, step_key, *extra)
        except Exception:  # a model whose gradient needs the engine's batching
            return
    eps = float(np.finfo(np.float32).eps)
    worst, name = np.inf, None
    for path, p in jax.tree_util.tree_leaves_with_path(params):
        gp = np.asarray(_leaf_at(g, path), float)
        pn = float(np.linalg.norm(np.asarray(p, float)))
        if pn > 0:
            rel = lr * float(np.linalg.norm(gp)) / pn
            if rel < worst:
                worst, name = rel, jax.tree_util.keystr(path)
    if worst < 2 * eps:
        warnings.warn(f"float32 cannot resolve this run: the first steps change the parameters {name} of "
                      f"{family.name} by a relative {worst:.2g} per step, below float32's resolution {eps:.2g}; "
                      "its updates are rounded away. Use dtype=float64 (the default) or a larger init scale.",
                      RuntimeWarning, stacklevel=4)


def _leaf_at(tree, path):
    """The leaf of ``tree`` at a key path from ``tree_leaves_with_path``."""
    for k in path:
        tree = tree[getattr(k, "key", getattr(k, "idx", None))]
    return tree


def _warn_float32(family, theories, lr, probe):
    """Warn where float32 cannot resolve the run: the theory's own criterion (the smallest relative change
    per step it predicts, ``Theory.resolution``) where it has one, else the generic ``probe`` (one
    float64 gradient)."""
    changes = [th.resolution(lr) for th in theories if th is not None and th.resolution is not None]
    changes = [c for c in changes if c is not None]
    if not changes:
        probe()
        return
    worst, eps = min(changes), float(np.finfo(np.float32).eps)
    if worst < 2 * eps:
        warnings.warn(f"float32 cannot resolve this run: the first steps change the slowest feature of {family.name} "
                      f"by a relative {worst:.2g} per step, below float32's resolution {eps:.2g}; its updates are "
                      "rounded away. Use dtype=float64 (the default).", RuntimeWarning, stacklevel=5)


def _same_tree(a, b) -> bool:
    """Whether two contexts hold the same arrays (the same objects, or equal values)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(x is y or (np.shape(x) == np.shape(y) and np.array_equal(x, y)) for x, y in zip(la, lb))


def _config_settings(probs, configs, shared, per_run=()):
    """The configuration's settings entries of a batch: one value where every run has it, else one per run
    (a batch over a problem's or the configuration's numbers records each run's, not run 0's); a number
    given per run is recorded per run even where the values agree."""
    rows = [c.record(p) for p, c in (zip(probs[:1], configs[:1]) if shared else zip(probs, configs))]
    out = {}
    for k, v in rows[0].items():
        vals = [r.get(k) for r in rows]
        out[k] = v if all(x == v for x in vals[1:]) and k not in per_run else vals
    return out


def _optimizer_name(stepper):
    """The settings record's optimizer: GD's (its name, or "custom" for a callable); "sgd" for the others
    (their records always said so)."""
    if isinstance(stepper, GD):
        return stepper.optimizer if isinstance(stepper.optimizer, str) else "custom"
    return "sgd"


def _stepper_lr(stepper):
    """The step size a stepper gives each run (GD's lr, DualRK4's dtau, Flow's rate unit; 1 for Dual)."""
    if isinstance(stepper, (GD, Flow)):
        return stepper.lr
    if isinstance(stepper, DualRK4):
        return stepper.dtau
    return 1.0


def _step_schedule(steps, record_every, record_log):
    """(steps, record_every, record step indices) with the default of :data:`DEFAULT_RECORDS` records."""
    steps = check_int("steps", steps, minimum=1)
    if record_every is None and record_log is None:
        record_every = max(1, steps // DEFAULT_RECORDS)
    return steps, record_every, engine.record_schedule(steps, every=record_every, log=record_log)


def stepper_from_keywords(family: Family, *, method=None, lr=None, steps=None, optimizer=None, rtol=None,
                          atol=None, solver=None, times=None, t_max=None):
    """The stepper that the keyword form ``method=..., lr=..., steps=...`` names (the one translation of
    the ``simulate_*`` keywords into a :mod:`~dynamics.core.steppers` object).

    Returns (stepper, gd_grid): ``gd_grid`` = (lr, steps) for an adaptive method recorded "on gd's grid"
    lr * step (``lr`` and ``steps`` given, neither ``times`` nor ``t_max``), else None.
    Arguments that the method does not take are errors naming them, never ignored.
    """
    method = "gd" if method is None else method
    check_choice("method", method, {cls.method for cls in family.steppers})
    cls = next(c for c in family.steppers if c.method == method)
    if cls.adaptive:
        if optimizer not in (None, "sgd"):
            raise ValueError(f"method={method!r} integrates the gradient flow itself: there is no optimizer "
                             f"(optimizer must be 'sgd', got {optimizer!r}); use method='gd' for {optimizer!r}")
        kw = {"rtol": DEFAULT_RTOL if rtol is None else rtol, "atol": atol,
              "solver": "tsit5" if solver is None else solver}
        if cls is Flow:
            kw["lr"] = 1.0 if lr is None else lr
        elif lr is not None and (times is not None or t_max is not None):
            raise ValueError(f"lr={lr!r} and method={method!r} with a record grid (times or t_max): the dual flow "
                             "has no step size; give lr (with steps) only to record on gd's grid lr * step")
        if times is None and t_max is None:
            if lr is None or steps is None:
                raise ValueError(f"method={method!r} needs times (a grid), t_max (a horizon) or lr and steps")
            if np.unique(check_array("lr", lr)).size > 1:
                raise ValueError(f"method={method!r} on a batch of learning rates: give times (one grid)")
            return cls(**kw), (lr, steps)
        if steps is not None:
            raise ValueError(f"steps={steps!r} and {'times' if times is not None else 't_max'}: method={method!r} "
                             "records on the grid it is given; give steps (with lr) only to record on gd's grid")
        return cls(**kw), None
    extras = {k: v for k, v in (("times", times), ("t_max", t_max), ("rtol", rtol), ("atol", atol),
                                ("solver", solver)) if v is not None}
    if extras:
        takes = "lr and steps" if cls is GD else "dtau and steps"
        raise ValueError(f"{', '.join(extras)} given: times, t_max, rtol, atol and solver are for the ODE methods "
                         f"{tuple(c.method for c in family.steppers if c.adaptive)}, not method={method!r} "
                         f"(which takes {takes})")
    if lr is None:
        raise ValueError(f"method={method!r} (no stepper given) needs lr > 0 (the step size)")
    if steps is None:
        raise ValueError(f"method={method!r} (no stepper given) needs steps (an int >= 1)")
    if cls is GD:
        return GD(lr=lr, steps=steps, optimizer="sgd" if optimizer is None else optimizer), None
    if optimizer not in (None, "sgd"):
        raise ValueError(f"method={method!r} is a fixed RK4 integrator: there is no optimizer (got {optimizer!r})")
    return cls(dtau=lr, steps=steps), None


def simulate(family, problem, stepper: AbstractStepper | None = None, *, runs=1, key=0, times=None, t_max=None,
             record_every=None, record_log=None, dtype=None, progress=None, on_divergence="raise",
             options=None, per_run=None, config=None, desc=None, lr=None, steps=None, method=None,
             optimizer=None, rtol=None, atol=None, solver=None, **family_options) -> Trajectory:
    """Simulate ``family`` on ``problem`` with ``stepper``: the one driver of every family.

    family : a registered name ("jepa", "mae", "saxe", "dln", "attention", "dense_attention", "byol",
        "identity_head", "stepwise") or a :class:`~dynamics.core.family.Family`.
    problem : the family's problem, or a list of problems of one shape (a batch).
    stepper : how time advances (:mod:`dynamics.core.steppers`): ``GD(lr, steps, optimizer)``,
        ``Flow(rtol, atol, solver)``, and for the u * v families ``Dual(...)`` / ``DualRK4(dtau, steps)``.
        Instead of a stepper, the keyword form ``lr=, steps=, method=, optimizer=, rtol=, atol=,
        solver=`` of the ``simulate_*`` functions names one (:func:`stepper_from_keywords`); giving
        both is an error naming them.
    runs, key : a batch of ``runs`` seeds, or one key per run (run i: ``fold_in(key, i)``; the initial
        state from ``fold_in(run_key, 0)``: ``dynamics.core.keys``).
    times, t_max, record_every, record_log : where an adaptive stepper records (a grid in its time:
        gradient-flow time t, or tau for ``Dual``; or a horizon with a record step or a log-spaced
        count); ``record_every`` / ``record_log`` are step counts for the fixed-step steppers (default:
        :data:`DEFAULT_RECORDS` records).
    dtype : float64 (default) or float32.   progress : a tqdm bar (None: when stderr is a terminal).
    on_divergence : "raise" (``DivergenceError`` naming the step, the records before it in
        ``.partial``) or "stop" (a result with status -1).
    config : the family's configuration (``family.config``, e.g. ``dy.LinearConfig(init="gaussian",
        ema=0.9)``); or its fields as keywords (``**family_options``) or as a dict ``options``.  Its
        numbers may have one value per run (a 1-D sequence of length R: a batch); per_run : {name:
        values} of numbers given one per run (each of length 1 or R), merged into it.

    ``dy.simulate("jepa", p, dy.GD(lr=0.02, steps=2000))`` is ``dy.simulate_jepa(p, lr=0.02,
    steps=2000)``, bit for bit: the ``simulate_*`` functions are short aliases of this one.
    """
    family = get_family(family)
    given = {k: v for k, v in (("lr", lr), ("steps", steps), ("method", method), ("optimizer", optimizer),
                               ("rtol", rtol), ("atol", atol), ("solver", solver)) if v is not None}
    gd_grid = None
    if stepper is None and not given:
        raise ValueError(f"stepper: give a stepper ({', '.join(c.__name__ for c in family.steppers)}, e.g. "
                         "dy.GD(lr=0.01, steps=1000)) or the keywords lr and steps (method, ...)")
    if stepper is None:
        stepper, gd_grid = stepper_from_keywords(family, **given, times=times, t_max=t_max)
    else:
        check_instance("stepper", stepper, AbstractStepper, "a stepper (dy.GD, dy.Flow, dy.Dual, dy.DualRK4)")
        if given:
            raise ValueError(f"stepper={stepper.describe()} and {', '.join(f'{k}={v!r}' for k, v in given.items())}: "
                             "the stepper carries the step size, the horizon and the solver; give one or the other")
    if type(stepper) not in family.steppers:
        raise ValueError(f"stepper: {family.name} takes {', '.join(c.__name__ for c in family.steppers)}, "
                         f"got {type(stepper).__name__}")
    config = make_config(family, config, options, family_options, per_run)
    return run(family, problem, stepper, gd_grid=gd_grid, runs=runs, key=key, times=times, t_max=t_max,
               record_every=record_every, record_log=record_log, dtype=dtype, progress=progress,
               on_divergence=on_divergence, config=config, desc=desc)


def make_config(family: Family, config=None, options=None, keywords=None, per_run=None) -> Config:
    """The family's configuration from a ``config`` object, or from its fields as a dict ``options``
    and keywords, with ``per_run`` numbers merged in (the one translation; conflicts are errors naming
    both, an unknown name an error listing the family's fields)."""
    cls = family.config
    for name, value in (("options", options), ("per_run", per_run)):
        if value is not None:
            check_instance(name, value, dict, "a dict {option name: value}")
    options, keywords, per_run = dict(options or {}), dict(keywords or {}), dict(per_run or {})
    if config is not None:
        check_instance("config", config, cls, f"a {cls.__name__} (the configuration of {family.name})")
        given = sorted(set(options) | set(keywords))
        if given:
            raise ValueError(f"config={config!r} and {', '.join(given)}: give the options in the config or as "
                             "keywords, not both")
    for a, b, what in ((keywords, options, "a keyword and in options"), (per_run, {**options, **keywords},
                                                                           "per_run and as an option")):
        clash = sorted(set(a) & set(b))
        if clash:
            raise ValueError(f"{', '.join(clash)} given both as {what}")
    fields = {**options, **keywords}
    for where, given in (("", fields), ("per_run: ", per_run)):
        unknown = sorted(set(given) - set(cls.names()), key=str)
        if unknown:
            raise ValueError(f"{where}{', '.join(map(str, unknown))}: not an option of {family.name} (its options: "
                             f"{', '.join(cls.names()) or 'none'})")
    structural = sorted(set(per_run) - set(cls.numbers()))
    if structural:
        raise ValueError(f"per_run: {', '.join(structural)} is not a number of {family.name}'s configuration "
                         f"(one value for every run of a call; its per-run numbers: "
                         f"{', '.join(cls.numbers()) or 'none'})")
    per_run = {k: tuple(np.atleast_1d(np.asarray(v, dtype=float)).tolist()) if not isinstance(v, (str, bool))
               else v for k, v in per_run.items()}
    if config is None:
        return cls(**fields, **per_run)
    defaults = cls()
    clash = sorted(k for k in per_run if getattr(config, k) != getattr(defaults, k))
    if clash:
        raise ValueError(f"{', '.join(clash)} given both in config={config!r} and per_run: give it in one")
    return dataclasses.replace(config, **per_run) if per_run else config


def run(family: Family, problem, stepper: AbstractStepper, *, gd_grid=None, runs=1, key=0, times=None,
        t_max=None, record_every=None, record_log=None, dtype=None, progress=None, on_divergence="raise",
        config=None, desc=None) -> Trajectory:
    """The driver behind :func:`simulate` (arguments as there, the stepper and the configuration
    resolved): batches, keys, record schedules, dtype, memory groups, the engine or the adaptive
    integrator, settings and the Trajectory.

    gd_grid : (lr, steps) for an adaptive stepper: record on the grid lr * step that gradient descent at
        that lr records with ``record_every`` / ``record_log`` (the same times, bit for bit).
    """
    ode = stepper.adaptive
    method = stepper.method
    check_choice("on_divergence", on_divergence, {"raise", "stop"})
    config = family.config() if config is None else config
    if not ode and (times is not None or t_max is not None):
        raise ValueError(f"times and t_max are record grids of the adaptive steppers, not of "
                         f"{stepper.describe()} (which records every record_every steps)")
    lr = _stepper_lr(stepper) if gd_grid is None else gd_grid[0]
    probs, lrs, R, batched, per_run = resolve_batch(family, problem, lr, runs, key, config.per_run())
    solver_cfg = grid_steps = None
    if ode:
        rtol, atol = family.flow_tolerances(probs, stepper.form, stepper.rtol, stepper.atol)
        solver_cfg = dataclasses.replace(stepper, rtol=rtol, atol=atol)
        if gd_grid is not None:     # gd's grid: lr * its record steps
            if times is not None or t_max is not None:
                raise ValueError("gd_grid and a record grid (times or t_max): give one")
            steps, record_every, grid_steps = _step_schedule(gd_grid[1], record_every, record_log)
            grid = float(lrs[0]) * grid_steps.astype(float)
        else:
            steps = None
            if times is None and t_max is None:
                raise ValueError(f"stepper={stepper.describe()} needs a record grid: times (a grid) or t_max (a horizon)")
            grid = flow.flow_times(times=times, t_max=t_max, record_every=record_every, record_log=record_log,
                                   records=DEFAULT_RECORDS)
    else:
        check_steps(stepper.steps, R)
        steps, record_every, rec = _step_schedule(stepper.steps, record_every, record_log)
    # a grid of times that does not start at 0: the solve starts there, the result has exactly those times
    drop_first = ode and times is not None and gd_grid is None and grid.size > np.size(times)
    base = stepper.form
    dtype = check_dtype(dtype)
    if ode and dtype == np.float32 and solver_cfg.rtol < 1e-6:
        raise ValueError(f"rtol={solver_cfg.rtol:g} with dtype=float32 is below float32's resolution: simulate "
                         "the flow in float64 (the default) or give rtol >= 1e-6")
    config = config.check(family, probs, stepper)
    run_configs = config.split(R)

    keys = derive_run_keys(key, R)
    one_problem = len({id(p) for p in probs}) == 1
    model = family.model(probs[0], base, config.structure())
    first = family.initial_states(probs[:1], keys.init_keys(slice(0, 1)), base, run_configs[:1])[0]
    ctx0 = family.context(probs[0], base, run_configs[0])
    ctxs = [ctx0]
    if one_problem and per_run:     # per-run numbers: their contexts, unless the numbers do not enter them
        ctxs += [family.context(p, base, c) for p, c in zip(probs[1:], run_configs[1:])]
        if all(_same_tree(c, ctx0) for c in ctxs[1:]):
            ctxs = [ctx0]
    shared = one_problem and len(ctxs) == 1     # one context for every run: share its matrices
    n_records = grid.size if ode else rec.size
    group = _batch_group(model, first, ctx0, R, n_records, np.dtype(dtype).itemsize, shared)
    distinct = {}                               # one Theory per distinct (problem, configuration)
    for p, c in zip(probs, run_configs):
        if (id(p), id(c)) not in distinct:
            distinct[id(p), id(c)] = family.theory(p, c)
    theories = [distinct[id(p), id(c)] for p, c in zip(probs, run_configs)]
    if dtype == np.float32 and not ode:
        _warn_float32(family, theories, float(np.min(lrs)), probe=functools.partial(
            _warn_float32_resolution, family, model, first, ctx0, float(np.min(lrs)), keys.step_key(0)))
    states = [first] + family.initial_states(probs[1:], keys.init_keys(slice(1, R)), base, run_configs[1:])
    params = _to_device([s[0] for s in states], dtype)
    aux = _to_device([s[1] for s in states], dtype)
    if not shared and len(ctxs) == 1:
        ctxs += [family.context(p, base, c) for p, c in zip(probs[1:], run_configs[1:])]
    ctx = _to_device(ctxs, dtype, stack=not shared)
    fixed = [None if th is None else th.fixed_point for th in theories]
    settings = {"family": family.name, "method": method, "lr": lrs.tolist() if batched else float(lrs[0]),
                "steps": steps if not ode else None, "record_every": record_every, "record_log": record_log,
                "runs": R,
                "stepper": stepper.to_dict(),
                **({"solver": solver_cfg.to_dict()} if ode else {}),
                "optimizer": _optimizer_name(stepper), "dtype": str(dtype),
                "units": "gf", "key": keys.run_data(),
                **_config_settings(probs, run_configs, shared and not per_run, tuple(per_run)), **versions()}

    def to_traj(out: EngineOutput, refined=False) -> Trajectory:
        """The Trajectory of an engine output (refined: a re-integration on another grid of solver times,
        by :func:`resolve`, with no record dropped and no gd grid)."""
        n = int(out.extra.get("runs", R))       # fewer than R: a grouped batch interrupted early
        probs_, lrs_, fixed_ = probs[:n], lrs[:n], fixed[:n]
        if ode:     # flow time x as (fractional) steps at each run's lr: the family's clock does the rest
            x = np.asarray(out.extra["times"], float)
            # on gd's grid the clock gets gd's integer steps (the same times, bit for bit)
            per = [family.times([p], lrs_[i:i + 1], x / lrs_[i] if grid_steps is None or refined
                                else grid_steps[:x.size], base) for i, p in enumerate(probs_)]
            t = np.concatenate([q[0] for q in per], axis=0)
            extra = {k: np.concatenate([q[1][k] for q in per], axis=0) for k in per[0][1]}
            stats = {k: out.extra[k].tolist() if batched else int(out.extra[k][0])
                     for k in ("accepted", "rejected", "evaluations")}
        else:
            t, extra = family.times(probs_, lrs_, out.steps, base)
            stats = {}
        fields = {**{k: v for k, v in out.records.items()}, **extra}
        if drop_first and not refined:      # the solver starts at t = 0; the result has the times asked for
            t, fields = t[:, 1:], {k: v[:, 1:] for k, v in fields.items()}
        same_t = bool(np.all(t == t[:1])) if t.size else True
        if not batched:
            fields = {k: v[0] for k, v in fields.items()}
            t = t[0]
        elif same_t:
            t = t[0]
        fp = None if any(f is None for f in fixed_) else np.stack([np.asarray(f, float) for f in fixed_])
        if fp is not None and not batched:
            fp = fp[0]
        return Trajectory(t=t, fields=fields, kind="simulation", model=family.name, method=method,
                          primary=family.primary,
                          problem=probs_ if (batched and not one_problem) else probs[0],
                          settings={**settings, "wall_time_s": out.wall_time, "compile_time_s": out.compile_time,
                                    "devices": out.extra["devices"],
                                    **({"groups": out.extra["groups"], "group_size": out.extra["group_size"]}
                                       if "groups" in out.extra else {}),
                                    **({"solver_stats": stats} if ode else {"step_index": out.steps.tolist()})},
                          fixed_point=fp, status=out.status, message=out.message, runs=n if batched else None,
                          reintegration=None if not ode or refined else Reintegration(
                              x=np.asarray(out.extra["times"], float)[1 if drop_first else 0:], fn=resolve, runs=n))

    run_keys_ = keys.step_keys()
    lr_dev = jnp.asarray(lrs, dtype=dtype)
    desc = desc or f"{family.name} {method}"

    rule = stepper.optimizer if isinstance(stepper, GD) else engine.RK4

    def run_group(sl, *, bar=None, stop=False, times=None, show=None):
        part = lambda tree: jax.tree_util.tree_map(lambda x: x[sl], tree)  # noqa: E731
        c = ctx if shared else part(ctx)
        kw = dict(progress=progress if show is None else show, desc=desc,
                  on_divergence="stop" if stop else on_divergence, make_partial=to_traj, ctx_batched=not shared,
                  bar=bar)
        if ode:
            return flow.integrate(model, part(params), part(aux), c, lr_dev[sl],
                                  times=grid if times is None else times, solver=solver_cfg,
                                  key=run_keys_[sl], **kw)
        return engine.simulate(model, part(params), part(aux), c, lr_dev[sl], record_steps=rec,
                               key=run_keys_[sl], optimizer=rule, **kw)

    def resolve(x):
        """The same runs integrated again on the solver times ``x`` (from 0): (t (R, T), primary (R, T, F)),
        for :meth:`Trajectory.critical_times` located by the solver (``core.locate``)."""
        outs = [run_group(slice(a, min(R, a + group)), stop=True, times=np.asarray(x, float), show=False)
                for a in range(0, R, group)]
        tr = to_traj(_merge_outputs(outs, [min(R, a + group) - a for a in range(0, R, group)]), refined=True)
        y = np.asarray(tr.fields[family.primary], float)
        t = np.asarray(tr.t, float)
        if not tr.batched:
            y, t = y[None], t[None]
        return np.broadcast_to(t, y.shape[:2]), y

    if group >= R:
        return to_traj(run_group(slice(0, R)))
    # larger than the memory budget at once: sequential groups of runs, one progress bar.  A group that
    # diverges stops there (the later groups still run, so that every run has its records up to the
    # divergence, as in one batch); a Ctrl-C keeps the groups done so far (a result with fewer runs).
    starts = list(range(0, R, group))
    show = (sys.stderr.isatty() if progress is None else bool(progress)) and distributed.process_index() == 0
    per_group = grid.size if ode else int(rec[-1])
    bar = progress_bar(per_group * len(starts), f"{desc} ({len(starts)} groups of <= {group} runs)",
                              show, unit="record" if ode else "step")
    outs = []
    try:
        for a in starts:
            outs.append(run_group(slice(a, min(R, a + group)), bar=bar, stop=True))
            if outs[-1].status == 1:       # interrupted: keep what ran
                break
    finally:
        if bar is not None:
            bar.close()
    out = _merge_outputs(outs, [min(R, a + group) - a for a in starts[:len(outs)]])
    traj = to_traj(out)
    if out.status == -1 and on_divergence == "raise":
        raise DivergenceError(out.message, partial=traj, step=None)
    return traj


def family_of(problem, objective=None) -> Family:
    """The family a theory call means: ``objective`` (a registered name or a Family), else the family
    registered as the default for the problem's type (jepa for an SSLProblem, saxe for a
    RegressionProblem), else the first registered family that takes it."""
    if objective is not None:
        if not isinstance(objective, Family):     # a name: one of the families that take this problem
            takes = {n for n, f in families().items() if isinstance(problem, f.problem_type)}
            check_choice("objective", objective, takes or set(families()))
        family = get_family(objective)
        if not isinstance(problem, family.problem_type):
            raise TypeError(f"problem must be a {_type_names(family.problem_type)} for objective {family.name!r}, "
                            f"got {type(problem).__name__}")
        return family
    family = default_family(problem)
    if family is not None:
        return family
    for family in families().values():
        if isinstance(problem, family.problem_type):
            return family
    raise TypeError(f"problem: no registered family takes a {type(problem).__name__}")


def _type_names(types):
    return " or ".join(t.__name__ for t in types) if isinstance(types, tuple) else types.__name__


def critical_times(problem, objective=None, fraction=0.5, **theory_options):
    """Exact times (F,) at which each feature's primary field reaches ``fraction`` of its fixed point
    (inf: never learned; 0: already past), for every family that has them -- one name for one idea.

    objective : the family ("jepa", "mae", "saxe", "stepwise", ...); default: the problem's own family
        (:func:`family_of`: "jepa" for an SSLProblem); or an objective of the problem's family where its
        configuration has one (policy_gradient: "rl", "sft", "sft_then_rl" with ``sft_time=``).
    theory_options : the family's own (deep linear families: ``units="gf" | "paper"`` and
        ``approx="generalized"``; stepwise: ``approximate=True`` for the paper's tiny-init formula).
    The formulas are in each family's theory page (theory/jepa.md sec. 4, theory/saxe.md,
    theory/stepwise.md).  A family without them, or a problem outside its theory, is an error that
    says so (the u * v families' stage times are ``dy.stages(problem).times``).
    """
    config = None
    if isinstance(objective, str) and objective not in families():
        # an objective of a family's configuration (policy_gradient's "rl", "sft", ...): that family's theory
        # under it, the configuration's own fields among theory_options going into it
        own = family_of(problem)
        if "objective" in own.config.names():
            fields = {k: theory_options.pop(k) for k in list(theory_options) if k in own.config.names()}
            config, objective = own.config(objective=objective, **fields), own
    family = family_of(problem, objective)
    fraction = check_fraction("fraction", fraction)
    th = family.theory(problem) if config is None else family.theory(problem, config)
    if th is None or th.critical_times is None:
        raise ValueError(f"{family.name} has no critical times for this problem (no analytic theory: compare a "
                         f"simulation's own with traj.critical_times(fraction))")
    try:
        tc = th.critical_times(fraction, **theory_options)
    except TypeError as e:      # an option this family's theory does not take
        if theory_options and "unexpected keyword" in str(e):
            raise ValueError(f"{', '.join(theory_options)}: not an option of {family.name}'s critical times "
                             f"({e})") from None
        raise
    return tc


def max_stable_lr(family, problem, init=None):
    """The largest learning rate at which plain gradient descent ("sgd") is stable: 2 Re(mu) / |mu|^2
    for the eigenvalue mu of the Jacobian of the full network's gradient field that binds (2 / lambda_max
    of the loss Hessian where there is one), the smallest along the theory's path from its init
    (``init=None``), or at the given ``init`` (a name or a dict of parameters).  theory/discrete.md sec. 3.

    family : a registered name ("jepa", "mae", "saxe", "dln", "attention", "stepwise", "byol") or a Family;
        None: the problem's own family.
    Returns a ``StabilityLimit`` (``float()`` of it is the lr; ``.t`` where on the path it binds).
    Above it, gradient descent leaves the path the theory describes along some direction, even when
    rounding keeps it there for a while (a problem in its own basis has exact zeros off the diagonal)."""
    try:
        fam = family_of(problem, family)
    except (ValueError, TypeError) as e:       # family_of names its argument "objective"
        raise type(e)(str(e).replace("objective", "family")) from None
    th = fam.theory(problem)
    out = None if th is None or th.stability_limit is None else th.stability_limit(init)
    if out is None:
        raise ValueError(f"{fam.name} has no stability limit yet (jepa, mae, saxe, dln, attention, stepwise and "
                         "byol have one); measure it with a short run at a few lr")
    return out


def solve(fn, problem, times, *, what="times", per_run=None):
    """Evaluate the theory ``fn(problem, times_1d, **kwargs) -> Trajectory`` on the times of any result.

    times : (T,) one grid, or (R, T) one grid per run (a batch with several learning rates).
    problem : one problem, or a list of R (a batch of problems).  A batch in either gives a batched
    trajectory (``runs`` = R, fields (R, T, ...)); its ``t`` is (T,) when every run shares it.
    per_run : {name: value} passed to ``fn`` as keywords; a 1-d array of R values gives run i its i-th
    (e.g. one ``lr`` per run of a batch), a scalar is passed to every run.
    """
    t = check_array(what, times)
    per_run = dict(per_run or {})
    varying = {k: np.asarray(v) for k, v in per_run.items() if v is not None and np.ndim(v) == 1}
    fixed = {k: v for k, v in per_run.items() if k not in varying}
    for k, v in per_run.items():
        if v is not None and (np.ndim(v) > 1 or np.size(v) == 0):
            raise ValueError(f"{k} must be a number or a 1-d array with one value per run, got shape {np.shape(v)}")
    if varying and t.ndim == 1 and not isinstance(problem, (list, tuple)):
        R = len(next(iter(varying.values())))
        if R < 2:
            varying, fixed = {}, {**fixed, **{k: v[0] for k, v in varying.items()}}
        else:
            t = np.broadcast_to(t, (R, t.size))
    probs = list(problem) if isinstance(problem, (list, tuple)) else None
    if probs is not None and not probs:
        raise ValueError("problem must be a problem or a non-empty list of problems (one per run), got []")
    check_memory(f"the theory's output ({t.size:,} {what})", 64 * t.size * (len(probs) if probs else 1),
                 hint=f"fewer {what}")
    if t.ndim not in (1, 2) or (t.ndim == 2 and t.shape[0] < 2):
        raise ValueError(f"{what} must have 1 dimension (one grid) or be the (R, T) times of a batch of "
                         f"R >= 2 runs, got shape {t.shape}")
    if t.ndim == 1 and probs is None:
        return fn(problem, t, **fixed)
    R = t.shape[0] if t.ndim == 2 else len(probs)
    if probs is not None and len(probs) != R:
        raise ValueError(f"{len(probs)} problems for {R} time grids: give one problem or one per run")
    for k, v in varying.items():
        if v.shape[0] != R:
            raise ValueError(f"{k} has {v.shape[0]} values for a batch of {R} runs: give one value or one per run")
    probs = probs if probs is not None else [problem] * R
    grids = t if t.ndim == 2 else np.broadcast_to(t, (R, t.size))
    return stack_runs([fn(p, g, **fixed, **{k: v[i].item() for k, v in varying.items()})
                       for i, (p, g) in enumerate(zip(probs, grids))],
                      problem=probs if isinstance(problem, (list, tuple)) else problem)
