"""The deep linear families (JEPA, MAE, Saxe regression) under the family contract.

One :class:`LinearFamily` per :class:`~dynamics.families.linear.network.Objective`: the engine model
is loss (1) of ``network.py`` with its closed-form gradients on population moments, fresh Gaussian
samples (``batch_size``) or a finite data set (``data``); the primary field is ``modes``, the encoder
strength u_i^T Wbar u_i on each feature; the theory is ``theory.solve_linear`` (aligned balanced init).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ...core import engine, frontend
from ...core.config import Config, configclass, number
from ...core.family import Example, Family, families
from ...core.theory import Theory
from ...core.resources import check_memory
from ...core.stability import warn_above_limit
from ...core.steppers import GD, Flow
from ...core.keys import run_keys as run_keys_for
from ...core.validation import check_array, check_bool, check_choice, check_instance, check_int, check_positive
from .network import (INITS, Objective, encoder, gaussian_draws, init_params, loss_and_grads,  # noqa: F401
                      pad, sample_loss)
from .discrete import fixed_point_limit
from .stability import path_stability
from .problems import LinearProblem
from .theory import critical_times_linear, on_kept, shaped_part, solve_linear

__all__ = ["LinearFamily", "LinearConfig", "simulate_linear", "kept_features_of", "network_layers", "solve_linear", "critical_times_linear", "init_params",
           "run_keys_for", "encoder", "loss_and_grads", "sample_loss", "Objective", "INITS"]


def pad_rows(M, n):
    """M (r, F) in the first r of n rows (the features' directions in the n-dimensional slots)."""
    M = np.asarray(M, float)
    return M if M.shape[0] == n else np.concatenate([M, np.zeros((n - M.shape[0], M.shape[1]))])


@functools.lru_cache(maxsize=64)
def _make_model(objective, *, batch_size, n_data, ema, snapshots, embedded=False):
    # ema: whether the target is an EMA of the online encoder (its rate is a per-run number: ctx["ema"]);
    # embedded: an SSL encoder into R^k (embed_dim), whose units are not the features' basis
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
        WV = Wbar @ ctx["right_basis"]
        # modes: u_i^T Wbar v_i (the theory's per-feature strength; v_i = u_i but for a regression's non-symmetric
        # Syx, theory/saxe.md, "Any Syx"); gains: ||Wbar v_i||, the encoder's gain on feature i whichever hidden
        # units carry it -- equal to modes for the aligned solution; it also sees a feature that a rotated or
        # permuted set of units learned (theory/generalized.md sec. 4)
        gains = jnp.sqrt(jnp.sum(WV * WV, axis=0))
        # an embedding R^k has no u_i to project on: its mode i is the gain ||Wbar u_i|| (theory/saxe.md, "Any shape")
        out = {"modes": gains if embedded else jnp.sum(U * WV, axis=0), "gains": gains,
               "loss": loss_and_grads(objective, params, aux, ctx["Sxx"], ctx["Syx"], ctx["Syy"])[0]}
        if objective.head and not embedded:
            out["head"] = jnp.sum(U * (params["V"] @ U), axis=0)
        if snapshots:
            out.update({f"param_{k}": v for k, v in params.items()})
        return out

    update_aux = None
    if ema:
        def update_aux(params, aux, ctx):
            return {"W": ctx["ema"] * aux["W"] + (1.0 - ctx["ema"]) * params["W"]}

    return engine.Model(grad=grad, observe=observe, update_aux=update_aux, stochastic=batch_size is not None)


@configclass
class LinearConfig(Config):
    """The configuration of the deep linear families (JEPA, MAE, Saxe regression).

    init : one of INITS ("aligned", "aligned_gauge", "gaussian", "orthogonal", ...) or a dict of arrays
        {"W": (L, d, d), "V": (d, d)} (structural; for a shaped network a list of the layers in their own shapes).
    batch_size : None (population moments, the flow's gradient) or minibatch SGD with this many fresh
        samples (or rows of ``data``) per step.
    data : None or a finite data set (x, y), x (n, d_in) and y (n, d_out): its full-batch or minibatch gradient.
    ema : None (the stop-gradient target is the online encoder) or JEPA's EMA target rate in [0, 1]
        (a per-run number).
    snapshots : record every layer's parameters at each record step (fields ``param_W``, ``param_V``).
    """

    init: Any = "aligned"
    batch_size: int | None = None
    data: Any = None
    ema: float | None = number(None, doc="JEPA's EMA target rate")
    snapshots: bool = False

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.init, str):
            check_choice("init", self.init, set(INITS))
        elif not isinstance(self.init, dict):
            raise TypeError(f"init must be one of {sorted(INITS)} or a dict of arrays, got a "
                            f"{type(self.init).__name__}: {self.init!r:.60}")
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", check_int("batch_size", self.batch_size, minimum=1))
        for e in np.atleast_1d(self.ema if self.ema is not None else []):
            check_positive("ema", e, strict=False, upper=1.0)
        if self.data is not None:
            if not isinstance(self.data, (tuple, list)) or len(self.data) != 2:
                raise ValueError(f"data must be a pair (x, y) of arrays (n, d), got {type(self.data).__name__}"
                                 f" of length {len(self.data) if isinstance(self.data, (tuple, list)) else '-'}")
            x = check_array("data[0] (x)", self.data[0], ndim=2)
            y = check_array("data[1] (y)", self.data[1], ndim=2)
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"data must be (x, y) of n rows each (x (n, d_in), y (n, d_out)), got {x.shape} and "
                                 f"{y.shape}")
            if x.shape[0] == 0:
                raise ValueError(f"data has 0 samples (x and y of shape {x.shape}): give at least one pair")
            object.__setattr__(self, "data", (x, y))
        object.__setattr__(self, "snapshots", check_bool("snapshots", self.snapshots))

    def check(self, family, problems, stepper):
        out = self
        eps = min(float(p.init_scale) for p in problems)
        L = problems[0].depth
        log10_prod = (L + 1.0) / L * np.log10(eps)
        if log10_prod < -290:
            # the network multiplies L + 1 factors of eps^(1/L): below float64's normal range XLA flushes
            # them to zero (measured: MAE at L = 1, init 1e-300 learns a feature 43 % early)
            warnings.warn(f"init_scale={eps:g} at depth {L}: the products of the layers (~ init_scale^((L+1)/L) = "
                          f"1e{log10_prod:.0f}) fall below float64's normal range (2.2e-308) and are "
                          "flushed to zero, so the simulation departs from the theory; use init_scale >= "
                          f"{1e-280 ** (L / (L + 1.0)):.3g} (the theory is exact at any init)", RuntimeWarning,
                          stacklevel=5)
        if self.batch_size is not None:     # a step's samples (batch_size x 2d), several copies in a step
            check_memory(f"minibatches of batch_size = {self.batch_size:,} samples of dimension 2 n = {2 * problems[0].n}",
                         4 * 8 * 2 * problems[0].n * self.batch_size, hint="a smaller batch_size")
        if self.batch_size is not None and isinstance(stepper, Flow):
            raise ValueError("batch_size: minibatch SGD has no gradient flow; method='flow' integrates the "
                             "full-batch gradient (population moments, or all of ``data``)")
        if self.ema is not None and family.objective.target != "self":
            raise ValueError(f"ema is only meaningful for JEPA (a target encoder), not {family.name}")
        if self.data is None and self.batch_size is not None and problems[0].samples is not None:
            # a problem built from samples: its minibatches come from those samples (for a batch of
            # problems, only when they share them: the data is one array for every run)
            first = problems[0].samples
            if any(p.samples is None or p.samples[0] is not first[0] for p in problems[1:]):
                raise ValueError("batch_size: these problems were built from different samples; minibatch "
                                 "them one problem at a time (or pass data=(x, y) for all)")
            out = dataclasses.replace(self, data=first)
        if out.data is not None:
            di, do = problems[0].d_in, problems[0].d_out
            if out.data[0].shape[1] != di or out.data[1].shape[1] != do:
                raise ValueError(f"data must be (x, y) of shapes (n, {di}) and (n, {do}), got {out.data[0].shape} and "
                                 f"{out.data[1].shape}")
        if isinstance(stepper, GD) and stepper.optimizer == "sgd" and out.data is None and out.batch_size is None:
            family._warn_unstable(problems, stepper)
        return out

    def record(self, problem):
        n_data = None if self.data is None else int(self.data[0].shape[0])
        return {"init": self.init if isinstance(self.init, str) else "custom", "batch_size": self.batch_size,
                "data": None if self.data is None else "custom", "n_data": n_data, "ema": list(self.ema) if isinstance(self.ema, tuple) else self.ema,
                "snapshots": self.snapshots}


class LinearFamily(Family):
    """A deep linear objective (loss (1) of ``network.py``) as a family; its configuration is
    :class:`LinearConfig` (init, batch_size, data, ema, snapshots)."""

    problem_type = LinearProblem
    primary = "modes"
    config = LinearConfig

    def __init__(self, objective: Objective):
        self.objective = objective
        self.name = objective.name

    def shape(self, problem):
        if problem.plain:
            return {"d": problem.d, "depth": problem.depth}
        # a shaped network: its n x n slots, and how many features it records (theory/saxe.md, "Any shape")
        return {"d": problem.d, "depth": problem.depth, "n": problem.n, "embedded": problem.embed_dim is not None}

    def _warn_unstable(self, problems, stepper):
        """Warn before running plain gradient descent at an lr above the stability limit at the theory's
        fixed point (closed form, theory/discrete.md sec. 3; dy.max_stable_lr gives it along the path)."""
        lrs = np.atleast_1d(np.asarray(stepper.lr, float))
        limits = np.array([fixed_point_limit(self.objective, p if p.plain or not p.diagonalisable
                                             else shaped_part(self.objective, p, "the stability check")[1])
                           for p in problems])
        if lrs.size != limits.size:
            lrs, limits = np.array([lrs.max()]), np.array([limits.min()])
        ratio = lrs / limits
        i = int(np.argmax(ratio))
        if ratio[i] > 1.0:
            warn_above_limit(float(lrs[i]), float(limits[i]), f"at the {self.name} fixed point",
                             "theory/discrete.md sec. 3")

    def model(self, problem, form, config):
        n_data = None if config.data is None else config.data[0].shape[0]
        return _make_model(self.objective, batch_size=config.batch_size, n_data=n_data,
                           ema=config.ema is not None, snapshots=config.snapshots,
                           embedded=problem.embed_dim is not None)

    def initial_state(self, problem, key, form, config, draws=None):
        params = init_params(problem, self.objective, config.init, key=key, draws=draws)
        aux = {"W": np.array(params["W"], copy=True)} if config.ema is not None else {}
        return params, aux

    def initial_states(self, problems, keys, form, configs):
        """As :meth:`initial_state` per run; a batch of "gaussian" inits draws its normals at once."""
        shapes = {(p.depth, p.n) for p in problems}
        if len(problems) > 1 and len(shapes) == 1 and all(isinstance(c.init, str) and c.init == "gaussian"
                                                          for c in configs):
            (L, d), = shapes
            Ws, Vs = gaussian_draws(keys, L, d)
            return [self.initial_state(p, None, form, c, draws=(Ws[i], Vs[i]))
                    for i, (p, c) in enumerate(zip(problems, configs))]
        return super().initial_states(problems, keys, form, configs)

    def context(self, problem, form, config):
        if problem.plain:
            ctx = {"Sxx": problem.Sxx, "Syx": problem.Syx, "Syy": problem.Syy, "basis": problem.basis,
                   "right_basis": problem.right_basis}
        else:   # every matrix in the n x n slots the layers live in (zero outside the data's dimensions)
            n = problem.n
            ctx = {k: pad(getattr(problem, k), n) for k in ("Sxx", "Syx", "Syy")}
            ctx["basis"], ctx["right_basis"] = (pad_rows(getattr(problem, k), n) for k in ("basis", "right_basis"))
        if config.batch_size is not None and config.data is None:
            F = problem.joint_factor()
            if not problem.plain:       # x's rows into the first d_in of n coordinates, y's into the first d_out
                n, di, do = problem.n, problem.d_in, problem.d_out
                G = np.zeros((2 * n, di + do))
                G[:di, :di], G[n:n + do, di:] = np.eye(di), np.eye(do)
                F = np.zeros((2 * n, 2 * n))
                F[:, :di + do] = G @ problem.joint_factor()
            ctx["factor"] = F
        if config.data is not None:
            ctx["x"], ctx["y"] = config.data
            if not problem.plain:
                ctx["x"], ctx["y"] = (np.pad(a, ((0, 0), (0, problem.n - a.shape[1]))) for a in config.data)
        if config.ema is not None:
            ctx["ema"] = np.asarray(float(config.ema))
        return ctx

    def theory(self, problem, config=None):
        """The aligned balanced init's exact theory (theory/jepa.md): ``solve_linear`` on a grid, the fixed
        point, the per-mode critical times (sec. 4; ``critical_times_linear``: options ``units`` and
        ``approx``), the stability limit along the path (theory/discrete.md sec. 3) and the first steps'
        per-mode change for float32's resolution."""
        obj = self.objective
        if not problem.plain:   # a shaped network: the kept features' square theory (bottleneck.py)
            sub = shaped_part(obj, problem, f"{obj.name}'s theory")[1]
            fp = on_kept(obj, problem, f"{obj.name}'s theory", lambda q: obj.fixed_point(q.rho, q.depth), fill=0.0)
            return Theory(trajectory=lambda times: solve_linear(obj, problem, times=times), fixed_point=fp,
                          critical_times=lambda fraction, units="gf", approx=None: critical_times_linear(
                              obj, problem, fraction=fraction, units=units, approx=approx),
                          resolution=functools.partial(self._first_step_change, sub))
        return Theory(trajectory=lambda times: solve_linear(obj, problem, times=times),
                      fixed_point=obj.fixed_point(problem.rho, problem.depth),
                      critical_times=lambda fraction, units="gf", approx=None: critical_times_linear(
                          obj, problem, fraction=fraction, units=units, approx=approx),
                      stability_limit=functools.partial(path_stability, obj, problem),
                      resolution=functools.partial(self._first_step_change, problem))

    def _first_step_change(self, p, lr):
        """float32 loses updates smaller than its epsilon relative to the parameter: at a tiny init the
        first steps change each mode by a relative lr * psi0^(k-1) (1 - psi0^n) / pref, which can be
        below 2^-23 (the mode then never moves).  None where the per-mode formula does not apply."""
        obj = self.objective
        if not p.diagonalisable or np.any(p.lam <= 0):
            return None
        L = p.depth
        psi0 = p.init_scale ** (1.0 / L) / obj.scale(p.rho, L)
        rate = np.abs(psi0 ** (obj.k(L) - 1) * (1 - psi0 ** obj.n(L))) / obj.pref(p.lam, p.rho, L)
        return float(np.min(rate)) * lr

    def example(self):
        from .problems import RegressionProblem, SSLProblem
        cls = RegressionProblem if self.name == "saxe" else SSLProblem
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prob = cls.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3)
        return self._example_of(prob, {"init": "aligned_gauge"})

    def variants(self):
        """A rectangular network and a bottleneck (theory/saxe.md, "Any shape"): for Saxe a 3 x 2 non-symmetric
        Syx and a width-1 hidden layer; for JEPA and MAE a hidden layer wider than the input (3 units for 2
        features) and an encoder into R^1 (embed_dim = 1: one of two features kept)."""
        from .problems import RegressionProblem, SSLProblem
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.name == "saxe":
                U = np.array([[0.6, 0.0], [0.0, 1.0], [0.8, 0.0]])             # orthonormal columns, 3 x 2
                c, s_ = np.cos(0.7), np.sin(0.7)
                Syx = (U * np.array([0.8, 0.5])) @ np.array([[c, -s_], [s_, c]])
                rect = RegressionProblem.from_covariances(np.eye(2), Syx, 2, 0.05)
                neck = RegressionProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, widths=[1])
            else:
                rect = SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3, widths=[3])
                neck = SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3, embed_dim=1)
        return {"rectangular": self._example_of(rect, {"init": "aligned"}),
                "bottleneck": self._example_of(neck, {"init": "aligned"})}

    def _example_of(self, prob, options):
        tc = critical_times_linear(self.objective, prob, fraction=0.5)
        tc = tc[np.isfinite(tc)]
        lr = 0.01
        return Example(problem=prob, lr=lr, steps=int(math.ceil(1.5 * tc.max() / lr)),
                       short_steps=max(2, int(0.2 * tc.min() / lr)), diverging_lr=60.0,
                       options=options, random_init={"init": "gaussian"})


def _objective_of(family):
    fam = families().get(family) if isinstance(family, str) else family
    if not isinstance(fam, LinearFamily):
        names = sorted(n for n, f in families().items() if isinstance(f, LinearFamily))
        raise ValueError(f"family must be one of the deep linear families {names}, got {family!r}")
    return fam.objective


def kept_features_of(problem, *, family):
    """Which features a network of this shape keeps (indices, sorted): every feature where it is wide enough;
    through a bottleneck, ``problem.kept`` where given, else the prediction from a small random init --
    Saxe and MAE the largest lam * rho (reduced-rank regression), JEPA the largest rho (bottleneck.py,
    theory/jepa.md "A narrow encoder"; measured in benchmarks/results/kept_features.md).
    ``family``: "saxe", "mae" or "jepa"."""
    from .bottleneck import kept_features
    check_instance("problem", problem, LinearProblem, "a problem object (an SSLProblem or a RegressionProblem)")
    return kept_features(_objective_of(family), problem)


def network_layers(problem, params, family=None):
    """The layers in their own shapes from one run's parameters as the simulator stores them (each layer in an
    n x n slot; ``snapshots=True`` records them as ``param_W``, ``param_V``): {"W": [W_1 (h_1, d_in), ...,
    W_L], "V": the head (JEPA k x k, MAE d x k)}.  ``family`` (for the head's shape): "jepa" or "mae"."""
    from .network import layers
    check_instance("problem", problem, LinearProblem, "a problem object (an SSLProblem or a RegressionProblem)")
    objective = None if family is None else _objective_of(family)
    if not isinstance(params, dict) or "W" not in params:
        raise TypeError(f"params must be a dict of one run's parameters {{'W': (L, n, n)[, 'V': (n, n)]}}, got "
                        f"{type(params).__name__}: {params!r:.60}")
    L, n = problem.depth, problem.n
    check_array("params['W']", params["W"], shape=(L, n, n))
    if "V" in params:
        check_array("params['V']", params["V"], shape=(n, n))
        if objective is None:
            raise ValueError("params has a head 'V': pass family='jepa' or 'mae' (the head's shape is the family's: "
                             "JEPA's k x k predictor, MAE's d x k decoder)")
    return layers(problem, params, objective)


def simulate_linear(objective, problem, *, stepper=None, lr=None, steps=None, method=None, times=None, t_max=None, rtol=None,
                    atol=None, solver=None, record_every=None, record_log=None, runs=1,
                    key=0, init="aligned", optimizer=None, batch_size=None, data=None, ema=None,
                    snapshots=False, progress=None, on_divergence="raise", dtype=None, desc=None):
    """Gradient descent on the full network for ``objective``; see ``jepa.simulate_jepa`` for arguments."""
    family = families().get(objective.name)
    if family is None or family.objective is not objective:     # an objective of the user's own
        family = LinearFamily(objective)
    return frontend.simulate(family, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer, desc=desc,
                             options={"init": init, "batch_size": batch_size, "data": data, "ema": ema,
                                      "snapshots": snapshots})
