"""The one generic simulator: gradient descent on any model, for a batch of runs, jit-compiled.

A model family describes itself with a :class:`Model` (gradient, observation, optional auxiliary
state such as an EMA target); the engine does the rest for every family:

* ``optax`` optimizers (``"sgd"`` is exactly the Euler step of gradient flow with step ``lr``);
* a batch of R runs (seeds, learning rates, problems of one shape) under ``jax.vmap``; when several JAX
  devices are visible the batch axis is sharded over a ``jax.sharding.Mesh`` (at most one device per
  run, padding R to a multiple of the device count), so that the same call fills a multi-GPU host,
  or every core of a CPU (``dynamics.core.devices`` exposes one CPU device per core);
* a recording schedule (any increasing step indices: linear, log-spaced), run in chunks of records
  compiled once with ``lax.scan`` over records and a loop over the steps between them, so that progress
  can be shown and an interrupt keeps what was recorded;
* a divergence guard: the first step with a non-finite loss is tracked on device; the run stops with a
  :class:`DivergenceError` naming the step and suggesting a smaller learning rate, carrying the records
  made before it.

Time is gradient-flow time t = lr * step (theory/jepa.md sec. 2).
"""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .chunks import EngineOutput, finish, run_chunks
from .distributed import agree, global_put, multiprocess, process_index, to_host
from .resources import check_memory
from .validation import check_choice, check_int

__all__ = ["Model", "simulate", "record_schedule", "make_optimizer", "batch_mesh", "batch_layout", "RK4"]


@dataclass(frozen=True)
class Model:
    """What the engine needs from a family (all functions act on ONE run; the engine vmaps them).

    grad(params, aux, ctx, key) -> (loss, grads)   grads has the structure of params
    observe(params, aux, ctx) -> dict of arrays     recorded at every recording step
    update_aux(params, aux, ctx) -> aux             after each optimizer step (e.g. EMA target)

    uses_lr : grad and update_aux take the run's step size as a last argument (a flow integrated
        with its own scheme, an EMA target that moves at rate beta * lr per step).
    stochastic : the gradient uses ``key`` (minibatches, fresh samples); when False the per-step
        key split is skipped.
    """

    grad: Callable
    observe: Callable
    update_aux: Callable | None = None
    uses_lr: bool = False
    stochastic: bool = True


def record_schedule(steps, *, every=None, log=None):
    """Step indices to record: 0, every, 2 every, ..., steps (``every``), or ``log`` log-spaced
    indices between 1 and steps (plus 0). Always includes 0 and ``steps``; unique and increasing."""
    steps = check_int("steps", steps, minimum=1)
    if (every is None) == (log is None):
        raise ValueError("give exactly one of record_every (int >= 1) and record_log (int >= 2)")
    if every is not None:
        every = check_int("record_every", every, minimum=1)
        n = steps // every + 2
        check_memory(f"the record schedule (steps = {steps:,} / record_every = {every:,}: {n:,} records)", 16 * n,
                     hint="record less often")
        idx = np.arange(0, steps + 1, every)
    else:
        log = check_int("record_log", log, minimum=2)
        check_memory(f"the record schedule (record_log = {log:,} records)", 16 * log, hint="fewer records")
        idx = np.unique(np.round(np.geomspace(1, steps, log)).astype(np.int64))
        idx = np.concatenate([[0], idx])
    if idx[-1] != steps:
        idx = np.append(idx, steps)
    return idx.astype(np.int64)


#: the update rule "rk4": a classical fourth-order Runge-Kutta step of size lr on d theta/dt = -grad L
#: (the fixed-step integrator of ``steppers.DualRK4``); not an optimizer, so it keeps no optimizer state
RK4 = "rk4"


def make_optimizer(name_or_factory) -> Callable[[Any], optax.GradientTransformation]:
    """A factory lr -> optax transformation. Names: "sgd", "momentum", "adam", "adamw"; or a callable
    taking the learning rate (a traced scalar inside the batch) and returning an optax transformation.
    :data:`RK4` is passed through (the engine's fixed RK4 rule)."""
    if isinstance(name_or_factory, str) and name_or_factory == RK4:
        return name_or_factory
    if callable(name_or_factory):
        probe = name_or_factory(0.1)        # checked once, on a plain float: a clear error now, not in the scan
        if not isinstance(probe, optax.GradientTransformation):
            raise TypeError(f"optimizer: a callable must take the learning rate and return an "
                            f"optax.GradientTransformation (e.g. lambda lr: optax.sgd(lr, momentum=0.9)), got "
                            f"{type(probe).__name__} from optimizer(0.1)")
        return name_or_factory
    check_choice("optimizer", name_or_factory, set(_OPTIMIZERS))
    return _OPTIMIZERS[name_or_factory]


def _momentum(lr):
    return optax.sgd(lr, momentum=0.9)


_OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam, "adamw": optax.adamw, "momentum": _momentum}


def batch_mesh(devices=None):
    """A 1-D mesh named ``"runs"`` over the given (default: all) devices."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return jax.sharding.Mesh(devices, ("runs",))


def batch_layout(state, consts, R, *, shard=None, ctx_batched=True):
    """Lay a batch of R runs out over the visible devices (the one layout of every integrator).

    state : a pytree with a leading runs axis R.   consts : (ctx, per-run) where ``ctx`` has a runs
    axis when ``ctx_batched`` (else it is shared: replicated on every device) and the second entry is
    a pytree with a runs axis.  One device per run at most (a single run stays on one device); R is
    padded to a multiple of the device count by repeating the last run.
    Returns (state, consts, ndev, pad, shard).
    """
    multi = multiprocess()
    # several processes: every global device takes part (each process runs its own devices' shards)
    ndev = jax.device_count() if multi else min(jax.device_count(), R)
    shard = True if multi else ((ndev > 1) if shard is None else bool(shard))
    pad = 0
    if shard and ndev > 1:
        pad = (-R) % ndev
        padfn = lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)  # noqa: E731
        ctx, per = consts
        if pad:
            state = jax.tree_util.tree_map(padfn, state)
            ctx = jax.tree_util.tree_map(padfn, ctx) if ctx_batched else ctx
            per = jax.tree_util.tree_map(padfn, per)
        mesh = batch_mesh(jax.devices()[:ndev])
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        state = global_put(state, sharding)
        consts = (global_put(ctx, sharding if ctx_batched else replicated), global_put(per, sharding))
    return state, consts, ndev, pad, shard


def _rk4_update(model: Model, p, a, c, key, h, extra):
    """(loss, new params) of one classical RK4 step of size h on d theta/dt = -grad L(theta)."""
    def slope(q):
        return jax.tree_util.tree_map(jnp.negative, model.grad(q, a, c, key, *extra)[1])

    def ax(q, k, s):
        return jax.tree_util.tree_map(lambda x, y: x + s * y, q, k)
    loss, g1 = model.grad(p, a, c, key, *extra)
    k1 = jax.tree_util.tree_map(jnp.negative, g1)
    k2 = slope(ax(p, k1, 0.5 * h))
    k3 = slope(ax(p, k2, 0.5 * h))
    k4 = slope(ax(p, k3, h))
    return loss, jax.tree_util.tree_map(lambda x, d1, d2, d3, d4: x + h * (d1 + 2 * d2 + 2 * d3 + d4) / 6.0,
                                        p, k1, k2, k3, k4)


@functools.lru_cache(maxsize=64)
def _compiled_chunk(model: Model, opt_factory, ctx_batched=True):
    """The jitted chunk runner for one (model, update rule): cached, so that repeated simulations of the
    same family and shapes reuse XLA's compiled program instead of retracing a fresh closure.
    ``opt_factory`` is an optax factory lr -> transformation, or :data:`RK4` (a fixed RK4 step)."""

    def one_step(state, consts, step):
        p, a, o, k, bad = state
        c, lr_ = consts
        if model.stochastic:
            k, sub = jax.random.split(k)
        else:
            sub = k
        extra = (lr_,) if model.uses_lr else ()
        if isinstance(opt_factory, str):      # RK4
            loss, p = _rk4_update(model, p, a, c, sub, lr_, extra)
        else:
            loss, g = model.grad(p, a, c, sub, *extra)
            updates, o = opt_factory(lr_).update(g, o, p)
            p = optax.apply_updates(p, updates)
        if model.update_aux is not None:
            a = model.update_aux(p, a, c, *extra)
        bad = jnp.where((bad < 0) & ~jnp.isfinite(loss), step, bad)
        return (p, a, o, k, bad)

    def observe(state, consts):
        return model.observe(state[0], state[1], consts[0])

    cx = 0 if ctx_batched else None
    v_step = jax.vmap(one_step, in_axes=(0, (cx, 0), None))
    v_observe = jax.vmap(observe, in_axes=(0, (cx, 0)))

    def chunk(state, consts, seg, step0):
        def body(carry, n):
            st, s = carry
            st = jax.lax.fori_loop(0, n, lambda i, x: v_step(x, consts, s + i), st)
            return (st, s + n), v_observe(st, consts)
        (state, _), obs = jax.lax.scan(body, (state, step0), seg)
        # the divergence flags again as a separate output: the state is donated to the next chunk,
        # while the host reads these flags (and the records) after dispatching it
        return state, obs, state[4] + 0

    return jax.jit(chunk, donate_argnums=(0,))


def simulate(model: Model, params, aux, ctx, lr, *, record_steps, key, optimizer="sgd",
             progress=None, desc="simulate", n_chunks=None, on_divergence="raise", shard=None,
             make_partial=None, ctx_batched=True, dispatch_s=0.5, bar=None):
    """Run R independent gradient-descent runs and record observations.

    params, aux, ctx : pytrees whose leaves have a leading batch axis R (ctx: per-run constants);
        with ``ctx_batched=False`` ctx is shared by every run (no batch axis): the compiled step then
        multiplies all runs against one matrix, which XLA turns into a few large GEMMs.
    lr : (R,) learning rates.   key : (R,) PRNG keys (one stream per run; split every step).
    optimizer : an optax optimizer's name or factory (see :func:`make_optimizer`), or :data:`RK4`.
    record_steps : increasing step indices starting at 0 (see :func:`record_schedule`).
    progress : show a tqdm bar (steps/s, ETA); None = only when stderr is a terminal.
    on_divergence : "raise" (:class:`DivergenceError`) or "stop" (return the records before it,
        status -1).  make_partial(EngineOutput) converts a partial output for the exception.
    shard : shard the batch over the visible devices, at most one per run (None = whenever that is
        more than one device; see ``dynamics.core.devices`` for one CPU device per core).
    dispatch_s : about how long one dispatched chunk runs (its step budget follows the measured
        speed; long gaps between records are split), which bounds how long Ctrl-C waits.
    bar : an open progress bar to update (the caller's, shared by several calls; not closed here).
    """
    check_choice("on_divergence", on_divergence, {"raise", "stop"})
    record_steps = np.asarray(record_steps, dtype=np.int64)
    if record_steps.ndim != 1 or record_steps.size == 0 or record_steps[0] != 0 or np.any(np.diff(record_steps) <= 0):
        raise ValueError("record_steps must be increasing step indices starting at 0")
    lr = jnp.asarray(lr)
    R = lr.shape[0]
    opt_factory = make_optimizer(optimizer)

    chunk_jit = _compiled_chunk(model, opt_factory, bool(ctx_batched))
    opt_state = () if isinstance(opt_factory, str) else jax.vmap(lambda p, lr_: opt_factory(lr_).init(p))(params, lr)

    # ---- batch layout and sharding ---------------------------------------------------------------
    state = (params, aux, opt_state, key, jnp.full((R,), -1, dtype=jnp.int64))
    state, consts, ndev, pad, shard = batch_layout(state, (ctx, lr), R, shard=shard, ctx_batched=ctx_batched)

    # ---- chunks of records -------------------------------------------------------------------------
    seg_all = np.diff(np.concatenate([[0], record_steps]))  # first segment has 0 steps: records step 0
    T = seg_all.size
    if n_chunks is None:
        n_chunks = int(min(T, max(1, min(100, record_steps[-1] // 2000 + 1))))
    per = 1 << max(0, int(math.ceil(math.log2(math.ceil(T / n_chunks)))))  # few distinct shapes to compile
    total_steps = int(record_steps[-1])
    if progress is None:
        progress = sys.stderr.isatty() and total_steps * R >= 100_000
    progress = progress and process_index() == 0      # one bar for several processes

    recs, done_records = [], 0
    step0 = 0
    diverged_at = None

    # A chunk is at most ``per`` segments and at most ``budget`` steps: a longer gap between records is
    # split into unrecorded segments, so that every dispatch returns within about ``dispatch_s``
    # seconds (the budget follows the measured speed) and Ctrl-C is answered whatever the schedule.
    pending = [[int(n), True] for n in seg_all]
    budget = [2 ** 14]

    def next_chunk():
        segs, keep, total = [], [], 0
        while pending and len(segs) < per:
            n, rec = pending[0]
            room = budget[0] - total
            if n <= room or (not segs and n <= budget[0]):
                segs.append(n)
                keep.append(rec)
                total += n
                pending.pop(0)
            elif room > 0:
                segs.append(room)
                keep.append(False)
                pending[0][0] = n - room
                total += room
                break
            else:
                break
        return segs, keep

    # pipelined (``core.chunks.run_chunks`` with depth 2): chunk c + 1 is dispatched (asynchronously)
    # before chunk c's records are copied to the host
    dispatched_step = 0
    bad = np.full(R + pad, -1)
    last = [None]

    def dispatch():
        nonlocal state, dispatched_step
        if not pending:
            return None
        segs, keep = next_chunk()
        seg = np.zeros(per, dtype=np.int64)
        seg[:len(segs)] = segs        # padded with empty segments: same compiled shape
        keep = np.concatenate([keep, np.zeros(per - len(keep), bool)])
        state, obs, bad_dev = chunk_jit(state, consts, seg, np.int64(dispatched_step))
        if last[0] is None:
            last[0] = time.perf_counter()
        dispatched_step += int(seg.sum())
        return obs, bad_dev, keep, int(seg.sum())

    def collect(queue):
        """Bring the oldest dispatched chunk's records to the host (with its divergence flags)."""
        nonlocal done_records, step0, bad
        obs, bad_dev, keep, n_steps = queue[0]
        bad_host = np.array(to_host(bad_dev))
        idx = np.nonzero(keep)[0]
        host = jax.tree_util.tree_map(lambda x: to_host(x)[idx], obs)
        n_real = idx.size
        # a state that blew up on the last step before a record (the loss is checked before each
        # update only): the first record with a non-finite value marks the run as diverged there
        if n_real:
            finite = np.ones((n_real, bad_host.size), bool)
            for leaf in jax.tree_util.tree_leaves(host):
                finite &= np.isfinite(leaf.reshape(n_real, leaf.shape[1], -1)).all(axis=-1)
            rec_steps = record_steps[done_records:done_records + n_real]
            for r in np.nonzero(~finite.all(axis=0) & (bad_host < 0))[0]:
                bad_host[r] = rec_steps[np.argmin(finite[:, r])]
        recs.append(host)
        queue.pop(0)
        done_records += n_real
        step0 += n_steps
        bad = bad_host
        now = time.perf_counter()
        if n_steps:     # process 0's measurement, with several processes (all of them call agree here)
            budget[0] = agree(int(min(max(256, n_steps / max(now - last[0], 1e-9) * dispatch_s), 2 ** 26)))
        last[0] = now
        return n_steps, bool(np.any(bad[:R] >= 0))

    status, message, wall, compile_time = run_chunks(
        dispatch, collect, depth=2, where=lambda: f"after step {step0}", total=total_steps, desc=desc,
        unit="step", progress=progress, bar=bar)
    if np.any(bad[:R] >= 0):
        diverged_at = int(bad[:R][bad[:R] >= 0].min())

    if recs:
        records = {k: np.concatenate([r[k] for r in recs], axis=0) for k in recs[0]}
    else:
        records = {}
    # (T, R_pad, ...) -> (R, T, ...)
    records = {k: np.swapaxes(v, 0, 1)[:R] for k, v in records.items()}
    steps = record_steps[:done_records]
    try:
        final_params = jax.tree_util.tree_map(lambda x: to_host(x)[:R], state[0])
        final_aux = jax.tree_util.tree_map(lambda x: to_host(x)[:R], state[1])
    except RuntimeError:    # interrupted while the state was being donated to the next chunk
        final_params = final_aux = None
        message += " (the final parameters were being handed to the next chunk: not kept)"

    if diverged_at is not None:
        keep = steps < diverged_at
        steps = steps[keep]
        records = {k: v[:, keep] for k, v in records.items()}
        runs = np.nonzero((bad[:R] >= 0))[0].tolist()
        lr_np = np.asarray(lr)
        lr_bad = float(lr_np[runs[0]])
        # the RK4 rule steps the dual time tau by dtau (DualRK4); every other rule is lr on t = lr * step
        h, clock, what = ("dtau", "tau", "step size") if optimizer == RK4 else ("lr", "t", "learning rate")
        message = (f"diverged: non-finite loss or parameters at step {diverged_at} "
                   f"({clock} = {lr_bad * diverged_at:.6g}) in run(s) {runs[:10]} with {h} = {lr_bad:g}; try a smaller "
                   f"{what}, e.g. {h} = {lr_bad / 4:g}. The {steps.size} records before step "
                   f"{diverged_at} are kept.")
        status = -1
    out = EngineOutput(steps=steps, records=records, final_params=final_params, final_aux=final_aux,
                       status=status, message=message, wall_time=wall, compile_time=compile_time,
                       extra={"devices": ndev if shard else 1, "runs": R})
    return finish(out, on_divergence, make_partial, step=diverged_at)
