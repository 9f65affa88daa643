"""Deep linear networks trained on second moments: the machinery JEPA, MAE and Saxe regression share.

Network: encoder Wbar = W_L ... W_1 (``params["W"]`` has shape (L, d, d), ``W[0]`` = W_1) and, for the
SSL objectives, a head V (d, d).  Every objective here is

    loss = 1/2 E || A x - T y ||^2,   A = V Wbar (or Wbar without a head),            (1)

with the target map T = SG(Wbar) (JEPA, stop-gradient), T = I (MAE, regression), or T = the EMA
copy of the encoder (JEPA with an EMA target, simulator only).  In second moments,

    loss = 1/2 tr(A Sxx A^T) - tr(A Sxy T^T) + 1/2 tr(T Syy T^T),
    R    = A Sxx - T Syx,     dloss/dV = R Wbar^T,     dloss/dWbar = V^T R,
    dloss/dW_a = (W_L..W_{a+1})^T (dloss/dWbar) (W_{a-1}..W_1)^T                       (2)

(theory/jepa.md sec. 2).  The gradients are written in closed form (cheaper than autodiff and
shared with the finite-sample path, which uses the same formulas on empirical moments); a test checks
them against ``jax.grad`` of (1) with ``lax.stop_gradient``.

The exact per-mode theory for an aligned, balanced init is driven from here too: each family gives
(k, n, scale, pref) of the reduced flow in ``mode_integrals``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import engine
from .mode_integrals import elapsed, psi_at_grid_jax, z_from_psi
from .mode_tables import clock, clock_table, ln_psi_of_clock
from .problems import LinearProblem, as_key, random_rotation
from .results import Trajectory, records_to_fields, versions
from .validation import check_array, check_choice, check_int, check_positive

__all__ = ["Objective", "encoder", "layer_grads", "loss_and_grads", "sample_loss", "init_params",
           "simulate_linear", "solve_linear", "critical_times_linear", "INITS"]

INITS = ("aligned", "aligned_gauge", "orthogonal", "gaussian")


@dataclass(frozen=True)
class Objective:
    """How one family instantiates (1): the target map, whether there is a head, and its theory.

    Theory: with x = v (per-layer mode, equal to the head mode), psi = x / scale(rho, L), the mode obeys
    d psi / d tau = psi^k (1 - psi^n) with t = pref(lam, rho, L) * tau, and the encoder mode is
    x^L = (scale psi)^L (see mode_integrals).
    """

    name: str
    target: str                 # "self" (stop-gradient encoder) or "identity"
    head: bool
    k: callable                 # L -> k
    n: callable                 # L -> n
    scale: callable             # (rho, L) -> scale of x
    pref: callable              # (lam, rho, L) -> time prefactor
    paper_units: bool = True    # whether time can be reported in the paper's units t_paper = L t

    def fixed_point(self, rho, L):
        return self.scale(rho, L) ** L


# ------------------------------------------------------------------------------------------ network
def _prefixes(W):
    """[W_1, W_2 W_1, ..., W_L ... W_1]: every partial product, computed once (L - 1 matmuls)."""
    out = [W[0]]
    for a in range(1, W.shape[0]):
        out.append(W[a] @ out[-1])
    return out


def encoder(W):
    """Wbar = W_L ... W_1 for W of shape (L, d, d)."""
    return _prefixes(W)[-1]


def layer_grads(W, G, prefixes=None):
    """dloss/dW_a from G = dloss/dWbar, equation (2): (W_L..W_{a+1})^T G (W_{a-1}..W_1)^T, with the
    prefix products reused (pass ``prefixes`` from the forward pass) and the suffix built from the top."""
    L = W.shape[0]
    prefixes = _prefixes(W) if prefixes is None else prefixes
    grads = [None] * L
    suffix_T_G = G                      # (W_L..W_{a+1})^T G
    for a in range(L - 1, -1, -1):
        grads[a] = suffix_T_G if a == 0 else suffix_T_G @ prefixes[a - 1].T
        if a > 0:
            suffix_T_G = W[a].T @ suffix_T_G
    return jnp.stack(grads)


def _target(objective, Wbar, aux, d, dtype):
    if objective.target == "identity":
        return jnp.eye(d, dtype=dtype)
    if aux and "W" in aux:
        return jax.lax.stop_gradient(encoder(aux["W"]))
    return jax.lax.stop_gradient(Wbar)


def loss_and_grads(objective, params, aux, Sxx, Syx, Syy, *, full_loss=True):
    """Population loss (1) and closed-form gradients (2) from second moments.

    Work per step: L - 1 matmuls for the encoder products (reused by the layer gradients), the
    residual R with the fewest products (MAE: T = I needs no T Syx; JEPA: Wbar [Sxx | Syx] is one
    wider product), 2 for the head, 2L - 1 for the layer gradients: 3L + 2 d x d products for JEPA.
    ``full_loss=False`` returns, instead of the loss, the divergence sentinel 1/2 ||R||_F^2 (finite
    exactly as long as the loss is, up to the overflow scale), which saves the products A = V Wbar
    (JEPA) and T Syy that only the loss needs; the engine uses it for its per-step divergence check.
    """
    W = params["W"]
    d = W.shape[-1]
    pre = _prefixes(W)
    Wbar = pre[-1]
    V = params["V"] if objective.head else None
    T = _target(objective, Wbar, aux, d, W.dtype)
    if objective.target == "identity":
        A = V @ Wbar if objective.head else Wbar
        TSyx = Syx
        ASxx = A @ Sxx
    elif aux and "W" in aux:
        A = V @ Wbar
        TSyx = T @ Syx
        ASxx = A @ Sxx
    else:                               # JEPA with T = SG(Wbar): Wbar [Sxx | Syx] in one product
        both = Wbar @ jnp.concatenate([Sxx, Syx], axis=1)
        WSxx, TSyx = both[:, :d], jax.lax.stop_gradient(both[:, d:])
        A = None                        # V Wbar: only the loss needs it
        ASxx = V @ WSxx
    R = ASxx - TSyx
    if full_loss:
        A = V @ Wbar if A is None else A
        loss = 0.5 * jnp.sum(ASxx * A) - jnp.sum(TSyx * A)
        loss = loss + 0.5 * (jnp.trace(Syy) if objective.target == "identity" else jnp.sum((T @ Syy) * T))
    else:
        # the divergence sentinel: 1/2 ||R||_F^2 overflows at the scale the loss does, without a matmul
        loss = 0.5 * jnp.sum(R * R)
    if objective.head:
        grads = {"W": layer_grads(W, V.T @ R, pre), "V": R @ Wbar.T}
    else:
        grads = {"W": layer_grads(W, R, pre)}
    return loss, grads


def sample_loss(objective, params, aux, x, y):
    """Finite-sample loss (1), 1/(2n) sum ||A x_i - T y_i||^2, written directly for autodiff checks."""
    W = params["W"]
    Wbar = encoder(W)
    A = params["V"] @ Wbar if objective.head else Wbar
    T = _target(objective, Wbar, aux, W.shape[-1], W.dtype)
    r = x @ A.T - y @ T.T
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=-1))


# ------------------------------------------------------------------------------------------ init
def init_params(problem: LinearProblem, objective: Objective, init="aligned", *, key):
    """Initial parameters for one run (numpy, float64).

    "aligned": W_a = V = eps^(1/L) I (aligned with any basis, balanced: the theory's init).
    "aligned_gauge": W_a = eps^(1/L) O_a O_{a-1}^T with O_0 = O_L = I and random orthogonal O_1..O_{L-1}:
        dense hidden layers, same end-to-end map and same mode dynamics (an orthogonal gauge).
    "orthogonal": W_a, V = eps^(1/L) x independent random orthogonal matrices (balanced, unaligned).
    "gaussian": i.i.d. N(0, eps^(2/L) / d) entries (neither balanced nor aligned).
    A dict {"W": (L, d, d)[, "V": (d, d)]} is taken as given.
    """
    L, d, eps = problem.depth, problem.d, problem.init_scale
    if isinstance(init, dict):
        W = check_array("init['W']", init.get("W"), shape=(L, d, d))
        out = {"W": W}
        if objective.head:
            out["V"] = check_array("init['V']", init.get("V"), shape=(d, d))
        return out
    check_choice("init", init, set(INITS))
    s = eps ** (1.0 / L)
    key = as_key(key)
    keys = jax.random.split(key, L + 2)
    if init == "aligned":
        W = np.stack([s * np.eye(d)] * L)
        V = s * np.eye(d)
    elif init == "aligned_gauge":
        O = [np.eye(d)] + [random_rotation(d, key=keys[a]) for a in range(1, L)] + [np.eye(d)]
        W = np.stack([s * O[a + 1] @ O[a].T for a in range(L)])
        V = s * np.eye(d)
    elif init == "orthogonal":
        W = np.stack([s * random_rotation(d, key=keys[a]) for a in range(L)])
        V = s * random_rotation(d, key=keys[L])
    else:
        W = s / np.sqrt(d) * np.asarray(jax.random.normal(keys[0], (L, d, d), dtype=np.float64))
        V = s / np.sqrt(d) * np.asarray(jax.random.normal(keys[L], (d, d), dtype=np.float64))
    return {"W": W, "V": V} if objective.head else {"W": W}


# ------------------------------------------------------------------------------------------ simulate
@functools.lru_cache(maxsize=64)
def _make_model(objective, *, batch_size, n_data, ema, snapshots):
    """The engine Model for this objective (population, online Gaussian samples, or a finite data set)."""

    def stats(ctx, key):
        if batch_size is None and n_data is None:
            return ctx["Sxx"], ctx["Syx"], ctx["Syy"]
        if n_data is None:  # fresh Gaussian samples every step
            d = ctx["Sxx"].shape[0]
            z = jax.random.normal(key, (batch_size, 2 * d), dtype=ctx["Sxx"].dtype) @ ctx["factor"].T
            x, y = z[:, :d], z[:, d:]
        else:
            if batch_size is None:
                x, y = ctx["x"], ctx["y"]
            else:
                idx = jax.random.randint(key, (batch_size,), 0, n_data)
                x, y = ctx["x"][idx], ctx["y"][idx]
        m = x.shape[0]
        return x.T @ x / m, y.T @ x / m, y.T @ y / m

    def grad(params, aux, ctx, key):
        # the engine only needs a scalar that turns non-finite on divergence (the sentinel)
        return loss_and_grads(objective, params, aux, *stats(ctx, key), full_loss=False)

    def observe(params, aux, ctx):
        U = ctx["basis"]
        Wbar = encoder(params["W"])
        out = {"modes": jnp.sum(U * (Wbar @ U), axis=0),
               "loss": loss_and_grads(objective, params, aux, ctx["Sxx"], ctx["Syx"], ctx["Syy"])[0]}
        if objective.head:
            out["head"] = jnp.sum(U * (params["V"] @ U), axis=0)
        if snapshots:
            out.update({f"param_{k}": v for k, v in params.items()})
        return out

    update_aux = None
    if ema is not None:
        def update_aux(params, aux, ctx):
            return {"W": ema * aux["W"] + (1.0 - ema) * params["W"]}

    return engine.Model(grad=grad, observe=observe, update_aux=update_aux)


def _as_batch(problem, lr, runs, key=None):
    """Resolve the batch: problems (one or a list of one shape), learning rates, runs -> R runs."""
    problems = list(problem) if isinstance(problem, (list, tuple)) else [problem]
    for i, p in enumerate(problems):
        if not isinstance(p, LinearProblem):
            raise TypeError(f"problem[{i}] must be a problem built with from_spectrum/from_covariances/"
                            f"from_generative, got {type(p).__name__}")
    shapes = {(p.d, p.depth) for p in problems}
    if len(shapes) != 1:
        raise ValueError(f"a batch of problems must share d and depth; got (d, depth) in {sorted(shapes)}")
    lr_arr = check_array("lr", lr)
    if lr_arr.ndim > 1:
        raise ValueError(f"lr must be a scalar or a 1-D array of learning rates, got shape {lr_arr.shape}")
    if np.any(lr_arr <= 0):
        raise ValueError(f"lr must be > 0, got {lr_arr}")
    runs = check_int("runs", runs, minimum=1)
    nkeys = len(key) if isinstance(key, (list, tuple, np.ndarray)) and np.ndim(key) == 1 else 1
    sizes = {len(problems), lr_arr.size if lr_arr.ndim else 1, runs, nkeys} - {1}
    if len(sizes) > 1:
        raise ValueError(f"the batch sizes disagree: {len(problems)} problems, "
                         f"{lr_arr.size if lr_arr.ndim else 1} learning rates, {nkeys} keys, runs={runs}; "
                         "each must be 1 or the batch size R")
    R = sizes.pop() if sizes else 1
    batched = R > 1 or lr_arr.ndim == 1 or isinstance(problem, (list, tuple)) or nkeys > 1
    lrs = np.broadcast_to(lr_arr, (R,)).astype(float)
    probs = problems * R if len(problems) == 1 else problems
    return probs, lrs, R, batched


def run_keys_for(key, R):
    """One PRNG key per run: run i of a batch gets fold_in(key, i), so that runs=1 reproduces run 0;
    a sequence of R seeds/keys gives run i fold_in(key_i, 0), the same as running seed i alone."""
    if isinstance(key, (list, tuple)) or (isinstance(key, np.ndarray) and key.ndim == 1):
        if len(key) != R:
            raise ValueError(f"key: got {len(key)} seeds/keys for a batch of {R} runs")
        return [jax.random.fold_in(as_key(k, f"key[{i}]"), 0) for i, k in enumerate(key)]
    key = as_key(key)
    return [jax.random.fold_in(key, i) for i in range(R)]


def _warn_float32(objective, probs, lrs):
    """float32 loses updates smaller than its epsilon relative to the parameter: at a tiny init the
    first steps change each mode by a relative lr * psi0^(k-1) (1 - psi0^n) / pref, which can be below
    2^-23 (the mode then never moves). Warn, naming the number, so the user switches to float64."""
    worst = np.inf
    for p in probs:
        if not p.diagonalisable or np.any(p.lam <= 0):
            continue
        L = p.depth
        psi0 = p.init_scale ** (1.0 / L) / objective.scale(p.rho, L)
        rate = np.abs(psi0 ** (objective.k(L) - 1) * (1 - psi0 ** objective.n(L))) / objective.pref(p.lam, p.rho, L)
        worst = min(worst, float(np.min(rate)) * float(np.min(lrs)))
    if worst < 2 * np.finfo(np.float32).eps:
        warnings.warn(f"float32 cannot resolve this run: the first steps change the slowest mode by a relative "
                      f"{worst:.2g} per step, below float32's resolution {np.finfo(np.float32).eps:.2g}; "
                      "its updates are rounded away. Use dtype=float64 (the default).", RuntimeWarning, stacklevel=3)


def simulate_linear(objective, problem, *, lr, steps, record_every=None, record_log=None, runs=1,
                    key=0, init="aligned", optimizer="sgd", batch_size=None, data=None, ema=None,
                    snapshots=False, progress=None, on_divergence="raise", dtype=None, desc=None):
    """Gradient descent on the full network for ``objective``; see ``jepa.simulate_jepa`` for arguments."""
    probs, lrs, R, batched = _as_batch(problem, lr, runs, key)
    steps = check_int("steps", steps, minimum=1)
    if record_every is None and record_log is None:
        record_every = max(1, steps // 500)
    rec = engine.record_schedule(steps, every=record_every, log=record_log)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    if ema is not None:
        if objective.target != "self":
            raise ValueError(f"ema is only meaningful for JEPA (a target encoder), not {objective.name}")
        ema = check_positive("ema", ema, strict=False, upper=1.0)
    d, L = probs[0].d, probs[0].depth
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError("float64 needs jax_enable_x64 (dynamics enables it at import; something "
                           "turned it off): jax.config.update('jax_enable_x64', True)")
    if dtype == np.float32:
        _warn_float32(objective, probs, lrs)
    n_data = None
    if data is not None:
        x, y = data
        x = check_array("data[0] (x)", x, ndim=2)
        y = check_array("data[1] (y)", y, ndim=2)
        if x.shape != y.shape or x.shape[1] != d:
            raise ValueError(f"data must be (x, y) of shape (n, {d}) each, got {x.shape} and {y.shape}")
        n_data = x.shape[0]
    run_keys = run_keys_for(key, R)
    init_keys = [jax.random.fold_in(k, 0) for k in run_keys]
    sim_keys = jnp.stack([jax.random.fold_in(k, 1) for k in run_keys])
    params = [init_params(p, objective, init, key=init_keys[i]) for i, p in enumerate(probs)]
    params = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs), dtype=dtype), *params)
    aux = {"W": jnp.array(params["W"], copy=True)} if ema is not None else {}
    shared = len({id(p) for p in probs}) == 1      # one problem for every run: share its matrices
    uniq = probs[:1] if shared else probs
    ctx = {"Sxx": [p.Sxx for p in uniq], "Syx": [p.Syx for p in uniq],
           "Syy": [p.Syy for p in uniq], "basis": [p.basis for p in uniq]}
    if batch_size is not None and data is None:
        ctx["factor"] = [p.joint_factor() for p in uniq]
    ctx = {k: jnp.asarray(v[0] if shared else np.stack(v), dtype=dtype) for k, v in ctx.items()}
    if data is not None:
        ctx["x"] = jnp.asarray(x if shared else np.broadcast_to(x, (R,) + x.shape), dtype=dtype)
        ctx["y"] = jnp.asarray(y if shared else np.broadcast_to(y, (R,) + y.shape), dtype=dtype)
    model = _make_model(objective, batch_size=batch_size, n_data=n_data, ema=ema, snapshots=snapshots)
    settings = {"lr": lrs.tolist() if batched else float(lrs[0]), "steps": steps,
                "record_every": record_every, "record_log": record_log, "runs": R, "init": init
                if isinstance(init, str) else "custom", "optimizer": optimizer if isinstance(optimizer, str)
                else "custom", "batch_size": batch_size, "n_data": n_data, "ema": ema,
                "dtype": str(dtype), "units": "gf", "objective": objective.name,
                "key": [np.asarray(jax.random.key_data(k)).tolist() for k in run_keys], **versions()}

    def to_traj(out: engine.EngineOutput, status=None, message=None):
        t = lrs[:, None] * out.steps[None, :]
        t = t if (batched and np.unique(lrs).size > 1) else t[0]
        fields = records_to_fields(out.records, batched)
        fp = np.stack([objective.fixed_point(p.rho, L) for p in probs])
        return Trajectory(t=t, fields=fields, kind="simulation", model=objective.name,
                          problem=probs if len(set(map(id, probs))) > 1 else probs[0],
                          settings={**settings, "wall_time_s": out.wall_time,
                                    "compile_time_s": out.compile_time, "devices": out.extra["devices"],
                                    "step_index": out.steps.tolist()},
                          fixed_point=fp if batched else fp[0],
                          status=out.status if status is None else status,
                          message=out.message if message is None else message, runs=R if batched else None)

    out = engine.simulate(model, params, aux, ctx, jnp.asarray(lrs, dtype=dtype), record_steps=rec,
                          key=sim_keys, optimizer=optimizer, progress=progress,
                          desc=desc or f"{objective.name} L={L}", on_divergence=on_divergence,
                          make_partial=to_traj, ctx_batched=not shared)
    traj = to_traj(out)
    return traj


# ------------------------------------------------------------------------------------------ theory
def _theory_inputs(objective, problem, what):
    if not isinstance(problem, LinearProblem):
        raise TypeError(f"problem must be a problem object, got {type(problem).__name__}")
    problem.require_diagonalisable(what)
    lam, rho, L, eps = problem.lam, problem.rho, problem.depth, problem.init_scale
    if np.any(lam <= 0):
        raise ValueError(f"{what} needs lam > 0 for every feature; got {lam}")
    scale = objective.scale(rho, L)
    psi0 = eps ** (1.0 / L) / scale
    return lam, rho, L, eps, scale, psi0


def _to_gf_time(times, units, L, objective):
    check_choice("units", units, {"gf", "paper"})
    if units == "paper":
        if not objective.paper_units:
            raise ValueError(f"units='paper' is only defined for JEPA and MAE, not {objective.name}")
        return times / L
    return times


def solve_linear(objective, problem, *, times, units="gf"):
    """Exact per-mode solution at ``times`` for the aligned balanced init (theory/jepa.md sec. 3).

    On the learning branch (every 0 < psi0 < 1, the usual case) psi(t) = G(I(psi0) + t / pref) with the
    tabulated inverse clock G of ``mode_tables`` (no root finding; relative error ~1e-13): the whole
    (times x features) grid, the encoder modes and the loss are one fused jitted program.  Otherwise
    (a feature at or above its fixed point) the safeguarded Newton inverse of ``mode_integrals`` runs,
    warm-started along the sorted time grid.
    """
    times = check_array("times", times, ndim=1)
    if np.any(times < 0):
        raise ValueError("times must be >= 0")
    lam, rho, L, eps, scale, psi0 = _theory_inputs(objective, problem, f"solve_{objective.name}")
    k, n = objective.k(L), objective.n(L)
    t_gf = _to_gf_time(times, units, L, objective)
    pref = objective.pref(lam, rho, L)
    syy = problem.syy_diag
    fast = k >= 1 and bool(np.all((psi0 > 0) & (psi0 < 1)))
    if fast:
        z0, _ = z_from_psi(jnp.asarray(psi0))
        I0 = clock(z0, k, n)
        fast = bool(jnp.all(jnp.isfinite(I0)))
    if fast:
        tab = clock_table(k, n)
        modes, loss, x = _exact_on_grid(
            jnp.asarray(t_gf), jnp.asarray(pref), I0, jnp.log(jnp.asarray(psi0)), jnp.asarray(scale),
            jnp.asarray(lam), jnp.asarray(problem.sigma2), jnp.asarray(syy), jnp.asarray(tab.coef),
            L=L, head=objective.head, self_target=objective.target == "self", key0=tab.key0,
            n_neg=tab.n_neg, c_top=tab.c_top)
        modes, loss = np.asarray(modes), np.asarray(loss)
        x = None if x is None else np.asarray(x)
    else:
        tau = t_gf[:, None] / pref[None, :]
        if k == 0:   # d psi/d tau = 1 - psi^n with n = 1: psi = 1 - (1 - psi0) e^(-tau)
            psi = 1.0 - (1.0 - psi0)[None, :] * np.exp(-tau)
        else:   # warm-started along the sorted time grid (psi_at_grid_jax); times may come unsorted
            order = np.argsort(times, kind="stable")
            psi = np.empty_like(tau)
            psi[order] = np.asarray(psi_at_grid_jax(jnp.asarray(psi0), jnp.asarray(tau[order]), k=k, n=n))
        x = scale[None, :] * psi
        modes, loss = _modes_and_loss(x, lam, problem.sigma2, syy, L=L, head=objective.head,
                                      self_target=objective.target == "self", xp=np)
    fields = {"modes": modes, "loss": loss}
    if objective.head:
        fields["head"] = x
    _warn_never_learned(objective, psi0)
    return Trajectory(t=np.asarray(times, float), fields=fields, kind="theory", model=objective.name,
                      problem=problem, settings={"units": units, "objective": objective.name, **versions()},
                      fixed_point=objective.fixed_point(rho, L))


@functools.partial(jax.jit, static_argnames=("L", "head", "self_target", "key0", "n_neg", "c_top"))
def _exact_on_grid(t, pref, I0, lnpsi0, scale, lam, sigma2, syy, coef, *, L, head, self_target, key0,
                   n_neg, c_top):
    """Modes (T, F), loss (T,) and head modes (or None) from the clock: psi = G(I(psi0) + t / pref)."""
    c = I0[None, :] + t[:, None] / pref[None, :]
    lnpsi = ln_psi_of_clock(c, coef, key0=key0, n_neg=n_neg, c_top=c_top)
    lnpsi = jnp.where(t[:, None] == 0, lnpsi0[None, :], lnpsi)     # t = 0: the init itself
    x = scale[None, :] * jnp.exp(lnpsi)
    modes, loss = _modes_and_loss(x, lam, sigma2, syy, L=L, head=head, self_target=self_target, xp=jnp)
    return modes, loss, (x if head else None)


def _modes_and_loss(x, lam, sigma2, syy, *, L, head, self_target, xp):
    """Encoder modes x^L and the population loss per time (summed over features) from the per-layer
    modes x (T, F): A = head * encoder, T = the encoder (self) or 1, loss = sum 1/2 A^2 sigma2 - A T lam
    + 1/2 T^2 syy (theory/jepa.md sec. 2 in the eigenbasis)."""
    modes = x ** L
    a = x * modes if head else modes
    tgt = modes if self_target else 1.0
    return modes, xp.sum(0.5 * a ** 2 * sigma2 - a * tgt * lam + 0.5 * tgt ** 2 * syy, axis=1)


def _warn_never_learned(objective, psi0):
    bad = np.nonzero(psi0 >= 1.0)[0]
    if bad.size:
        warnings.warn(f"{objective.name}: feature(s) {bad.tolist()} start at or above their fixed point "
                      "(init_scale^(1/L) >= the fixed point of the per-layer mode): they shrink instead "
                      "of being learned; their critical time is inf", RuntimeWarning, stacklevel=3)


def critical_times_linear(objective, problem, *, fraction=0.5, units="gf"):
    """Exact time at which each encoder mode reaches ``fraction`` of its fixed point (inf if never)."""
    from .validation import check_fraction
    fraction = check_fraction("fraction", fraction)
    check_choice("units", units, {"gf", "paper"})
    lam, rho, L, eps, scale, psi0 = _theory_inputs(objective, problem, "critical_times")
    k, n = objective.k(L), objective.n(L)
    psi_p = fraction ** (1.0 / L)
    tau = np.asarray(elapsed(psi0, np.full_like(psi0, psi_p), k, n))
    t = objective.pref(lam, rho, L) * tau
    t = np.where(psi0 >= 1.0, np.inf, np.where(psi0 >= psi_p, 0.0, t))
    _warn_never_learned(objective, psi0)
    return t * L if units == "paper" else t
