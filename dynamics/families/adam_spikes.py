"""Adam's late-stage spikes (the Slingshot mechanism; Thilak et al. 2022, Cohen et al. 2022): a model that
has converged keeps training with Adam, its second moment decays and the preconditioned step becomes
unstable (theory/adam_spikes.md).

Adam (as ``optax.adam``; per-run numbers beta1, beta2, eps), with g_k = grad L(theta_k) and count c = k + 1:

    m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2,
    theta <- theta - lr mhat / (sqrt(vhat) + eps),   mhat = m / (1 - beta1^c),  vhat = v / (1 - beta2^c).

Linearised about a minimum with Hessian H (theta - theta* = x, D = diag(1 / (sqrt(vhat) + eps)) frozen), the
step is heavy-ball-like, x_{k+1} = x_k - lr D m_{k+1}; along an eigenvector of D^(1/2) H D^(1/2) with eigenvalue
a / lr its characteristic polynomial is z^2 - (1 + beta1 - (1 - beta1) a) z + beta1, whose root reaches
z = -1 at

    a = lr lambda_max(D^(1/2) H D^(1/2)) = 2 (1 + beta1) / (1 - beta1)         (38 at beta1 = 0.9).

Once the gradient vanishes (g^2 << v), v decays as beta2^k, D grows, and the step crosses that threshold at
the **onset**: in one direction of curvature h,  sqrt(vhat(t*)) + eps = eps*,  eps* = lr h (1 - beta1) /
(2 (1 + beta1)), so

    t* = t0 + ln(v0 / (eps* - eps)^2) / ln(1 / beta2)        (no spike at all where eps >= eps*),

and in general the first step at which lr lambda_max(D(t)^(1/2) H D(t)^(1/2)) reaches the threshold with
v_i(t) = v_i(t0) beta2^(t - t0) (:func:`predict_spikes`, a monotone search).  Past it the residual grows by
|z| ~ 1 + 38 (ratio - 1) per step: within a few tens of steps the gradient is back, v jumps up, the step is
stable again and the cycle restarts from the new minimum (the recurrence; the weight-norm cycles of the
Slingshot).  What seeds the growth is the residual left at the minimum -- in floating point, the rounding of
the weights (a gradient that is exactly 0 seeds nothing).

Problems (:class:`AdamSpikesProblem`): a deep linear regression on population covariances (its loss is
measured from its minimum, ½ tr((Wbar - W*) Sxx (Wbar - W*)^T), W* = Syx Sxx^-1, so that it goes to 0 without
cancellation) and a separable logistic regression (mean log(1 + e^(-y f(x)))), whose curvature vanishes with
its gradient: there the ratio settles near (1 - beta2)/2 x |x| / threshold and no spike comes (measured;
theory/adam_spikes.md sec. 4).

The exact flow (``method="flow"``) is continuous-time Adam at ``Flow(lr=...)``: d theta/dt = -mhat/(sqrt(vhat)
+ eps), dm/dt = (1 - beta1)/lr (g - m), dv/dt = (1 - beta2)/lr (g^2 - v), dc/dt = 1/lr, whose forward Euler
step of size lr is Adam exactly; it has no spikes (the instability is the discrete map's).  Gradient descent
approaches it at first order in lr at fixed moment rates (1 - beta)/lr.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..core import engine, frontend
from ..core.config import Config, configclass, number
from ..core.family import Example, Family, register, register_problem
from ..core.steppers import GD
from ..core.trajectory import Trajectory
from ..core.validation import check_array, check_choice, check_instance, check_int, check_positive

__all__ = ["AdamSpikesProblem", "AdamConfig", "simulate_adam", "predict_spikes", "SpikePrediction", "SpikeCycle",
           "adam_threshold", "eps_threshold", "spike_onset"]

KINDS = ("regression", "logistic")


@register_problem
@dataclass(frozen=True, eq=False)
class AdamSpikesProblem:
    """A model trained by Adam past convergence: ``kind`` "regression" (A = Sxx (d_in, d_in), B = Syx (d_out,
    d_in)) or "logistic" (A = X (n, d_in) inputs, B = labels (n,) in {-1, +1}, d_out = 1); a linear network of
    ``depth`` layers, hidden width ``width``, entries of the init drawn N(0, init_scale^2 / fan_in) from the
    run's key.  Build with :meth:`regression` or :meth:`logistic`."""

    kind: str
    A: np.ndarray
    B: np.ndarray
    depth: int = 2
    width: int = 0
    init_scale: float = 1.0

    def __post_init__(self):
        check_choice("kind", self.kind, set(KINDS))
        depth = check_int("depth", self.depth, minimum=1)
        A = check_array("Sxx" if self.kind == "regression" else "X", self.A, ndim=2)
        if self.kind == "regression":
            d = A.shape[0]
            if A.shape != (d, d) or not np.allclose(A, A.T, rtol=1e-12, atol=1e-14 * np.abs(A).max()):
                raise ValueError(f"Sxx must be a symmetric (d_in, d_in) matrix, got shape {A.shape}")
            if np.linalg.eigvalsh(0.5 * (A + A.T)).min() <= 0:
                raise ValueError("Sxx must be positive definite (the regression's minimum W* = Syx Sxx^-1 must exist)")
            B = check_array("Syx", self.B, ndim=2)
            if B.shape[1] != d:
                raise ValueError(f"Syx must have d_in = {d} columns (Sxx is {d} x {d}), got shape {B.shape}")
        else:
            B = check_array("labels", self.B, ndim=1)
            if B.shape[0] != A.shape[0]:
                raise ValueError(f"X has {A.shape[0]} inputs (rows) and labels {B.shape[0]} values: give one label per "
                                 "row of X")
            if not np.all(np.isin(B, (-1.0, 1.0))):
                raise ValueError(f"labels must hold one of -1, +1 per input, got {self.B!r:.80}")
        width = check_int("width", self.width, minimum=0)
        if width == 0:
            width = max(A.shape[1], B.shape[0] if self.kind == "regression" else 1)
        check_positive("init_scale", self.init_scale)
        for k, v in (("A", A), ("B", B), ("depth", depth), ("width", width), ("init_scale", float(self.init_scale))):
            object.__setattr__(self, k, v)

    @property
    def shapes(self) -> tuple:
        """The layers' shapes (rows, columns), input layer first."""
        d_in, d_out, h = self.A.shape[1], (self.B.shape[0] if self.kind == "regression" else 1), self.width
        dims = [d_in] + [h] * (self.depth - 1) + [d_out]
        return tuple((dims[i + 1], dims[i]) for i in range(self.depth))

    @property
    def n_params(self) -> int:
        return sum(r * c for r, c in self.shapes)

    @classmethod
    def regression(cls, Sxx, Syx, *, depth=2, width=None, init_scale=1.0):
        """Deep linear regression on population covariances: L = ½ tr((Wbar - W*) Sxx (Wbar - W*)^T), Wbar =
        W_depth ... W_1, W* = Syx Sxx^-1 (the loss above its minimum).  ``width`` (default max(d_in, d_out))
        is every hidden layer's."""
        return cls("regression", Sxx, Syx, depth, 0 if width is None else width, init_scale)

    @classmethod
    def logistic(cls, X, labels, *, depth=1, width=None, init_scale=0.1):
        """Logistic regression of labels y_i in {-1, +1} on inputs x_i (rows of X) by f(x) = W_depth ... W_1 x:
        L = mean_i log(1 + e^(-y_i f(x_i))).  Separable data make the loss -> 0 with a growing margin."""
        return cls("logistic", X, labels, depth, 0 if width is None else width, init_scale)

    def loss(self, layers):
        """L at ``layers`` (a sequence of arrays of :attr:`shapes`), in NumPy or JAX."""
        return _loss(self.kind, layers, _data(self))


def _data(problem) -> dict:
    if problem.kind == "regression":
        return {"A": problem.A, "B": problem.B, "W_star": np.linalg.solve(problem.A, problem.B.T).T}
    return {"A": problem.A, "B": problem.B}


def _product(layers):
    W = layers[0]
    for a in layers[1:]:
        W = a @ W
    return W


def _loss(kind, layers, c):
    W = _product(layers)
    if kind == "regression":
        E = W - c["W_star"]
        return 0.5 * jnp.sum((E @ c["A"]) * E)
    margin = c["B"] * (c["A"] @ W.T)[:, 0]
    return jnp.mean(jax.nn.softplus(-margin))


def adam_threshold(beta1=0.9):
    """2 (1 + beta1) / (1 - beta1): the largest lr x curvature / (sqrt(vhat) + eps) at which Adam's linearised
    step (module docstring) is stable (38 at beta1 = 0.9)."""
    b1 = check_positive("beta1", beta1, strict=False, upper=1.0)
    return 2.0 * (1.0 + b1) / (1.0 - b1)


def eps_threshold(lr, sharpness, beta1=0.9):
    """eps* = lr h (1 - beta1) / (2 (1 + beta1)): with eps >= eps* Adam's step never becomes unstable at a minimum
    of curvature (largest Hessian eigenvalue) h, however far v decays."""
    return check_positive("lr", lr) * check_positive("sharpness", sharpness) / adam_threshold(beta1)


def spike_onset(v0, sharpness, lr, eps, beta1=0.9, beta2=0.999, t0=0.0):
    """The onset step in one direction of curvature h = ``sharpness``: t* = t0 + ln(v0 / (eps* - eps)^2) /
    ln(1 / beta2), from Adam's second moment v0 at step t0 after the gradient has vanished (bias correction
    neglected: t0 >> 1 / (1 - beta2)); t0 where v0 is already below the threshold; inf where eps >= eps*."""
    v0 = check_positive("v0", v0, strict=False)
    b2 = check_positive("beta2", beta2, upper=1.0)
    t0 = check_positive("t0", t0, strict=False)
    gap = eps_threshold(lr, sharpness, beta1) - check_positive("eps", eps, strict=False)
    if gap <= 0:
        return math.inf
    if v0 <= gap * gap:
        return t0
    return t0 + math.log(v0 / (gap * gap)) / math.log(1.0 / b2)


@configclass
class AdamConfig(Config):
    """Adam's numbers (each per run: a batch may vary them), as ``optax.adam(lr, beta1, beta2, eps)``.

    beta1 : the first moment's decay per step, in [0, 1).   beta2 : the second moment's, in (0, 1).
    eps : added to sqrt(vhat), >= 0.
    """

    beta1: float | tuple | None = number(0.9, doc="first-moment decay per step")
    beta2: float | tuple | None = number(0.999, doc="second-moment decay per step")
    eps: float | tuple | None = number(1e-8, doc="added to sqrt(vhat) in the step's denominator")

    def __post_init__(self):
        super().__post_init__()
        for name in ("beta1", "beta2", "eps"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} must be a number (or one per run), not None: Adam needs it")
        for name, lo, hi in (("beta1", 0.0, 1.0), ("beta2", 0.0, 1.0)):
            for x in np.atleast_1d(getattr(self, name)):
                if not (lo <= float(x) < hi) or (name == "beta2" and float(x) == 0.0):
                    raise ValueError(f"{name} must be in {'[0, 1)' if name == 'beta1' else '(0, 1)'}, got {x!r}")
        for x in np.atleast_1d(self.eps):
            if not (np.isfinite(float(x)) and float(x) >= 0):
                raise ValueError(f"eps must be finite and >= 0, got {x!r}")

    def check(self, family, problems, stepper):
        if isinstance(stepper, GD) and stepper.optimizer != "sgd":
            name = stepper.optimizer if isinstance(stepper.optimizer, str) else "a custom optimizer"
            raise ValueError(f"adam_spikes runs Adam itself (beta1, beta2, eps are its options, so that a batch may "
                             f"vary them and its moments are recorded): optimizer={name!r} would apply a second "
                             "optimizer on top; leave optimizer at 'sgd' (the step is then exactly optax.adam's)")
        return self

    def record(self, problem):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


@functools.lru_cache(maxsize=16)
def _model(kind: str):
    """Adam as the engine model: the moments (m, v) and the count c live in the auxiliary state, ``grad`` is
    the step's direction mhat / (sqrt(vhat) + eps) from them, and ``update_aux`` folds in the gradient at the
    new parameters (so the state entering step k holds g_k, as in optax.adam)."""

    def loss_fn(layers, ctx):
        return _loss(kind, layers, ctx)

    def direction(aux, ctx):
        c = aux["count"]
        bc1 = 1 - ctx["beta1"] ** c
        bc2 = 1 - ctx["beta2"] ** c
        return jax.tree_util.tree_map(lambda m, v: (m / bc1) / (jnp.sqrt(v / bc2) + ctx["eps"]), aux["m"], aux["v"])

    def grad(params, aux, ctx, key):
        return loss_fn(params["layers"], ctx), {"layers": direction(aux, ctx)}

    def update_aux(params, aux, ctx):
        g = jax.grad(loss_fn)(params["layers"], ctx)
        b1, b2 = ctx["beta1"], ctx["beta2"]
        m = jax.tree_util.tree_map(lambda g_, m_: (1 - b1) * g_ + b1 * m_, g, aux["m"])
        v = jax.tree_util.tree_map(lambda g_, v_: (1 - b2) * (g_ * g_) + b2 * v_, g, aux["v"])
        return {"m": m, "v": v, "count": aux["count"] + 1}

    def observe(params, aux, ctx):
        layers = params["layers"]
        loss, g = jax.value_and_grad(loss_fn)(layers, ctx)
        flat = lambda tree: jnp.concatenate([x.ravel() for x in tree])  # noqa: E731
        bc2 = 1 - ctx["beta2"] ** aux["count"]
        return {"weight_norm": jnp.stack([jnp.sqrt(jnp.sum(W * W)) for W in layers]), "loss": loss,
                "grad_norm": jnp.sqrt(jnp.sum(flat(g) ** 2)), "params": flat(layers), "v_hat": flat(aux["v"]) / bc2}

    return engine.Model(grad=grad, observe=observe, update_aux=update_aux, stochastic=False)


def _init_layers(problem, key):
    keys = jax.random.split(key, problem.depth)
    return [np.asarray(jax.random.normal(k, s, dtype=jnp.float64)) * problem.init_scale / math.sqrt(s[1])
            for k, s in zip(keys, problem.shapes)]


@functools.lru_cache(maxsize=16)
def _first_gradient(kind):
    return jax.jit(jax.grad(lambda layers, c: _loss(kind, layers, c)))


class AdamSpikesFamily(Family):
    """Adam past convergence as a family: primary field ``weight_norm`` (depth,), each layer's Frobenius norm
    (the last layer's is the Slingshot's observable); also ``loss``, ``grad_norm``, ``params`` (P,) and
    ``v_hat`` (P,), the bias-corrected second moment (for :func:`predict_spikes`).  Configuration:
    :class:`AdamConfig`.  No trajectory theory: the spike theory reads a run (:func:`predict_spikes`)."""

    name = "adam_spikes"
    problem_type = AdamSpikesProblem
    primary = "weight_norm"
    config = AdamConfig

    def shape(self, problem):
        return {"kind": problem.kind, "shapes": problem.shapes, "n": problem.A.shape[0]}

    def model(self, problem, form, config):
        return _model(problem.kind)

    def initial_state(self, problem, key, form, config):
        layers = _init_layers(problem, key)
        g = [np.asarray(x) for x in _first_gradient(problem.kind)(layers, _data(problem))]
        b1, b2 = float(config.beta1), float(config.beta2)
        aux = {"m": [(1 - b1) * x for x in g], "v": [(1 - b2) * (x * x) for x in g], "count": np.ones(())}
        return {"layers": layers}, aux

    def context(self, problem, form, config):
        return {**_data(problem), "beta1": float(config.beta1), "beta2": float(config.beta2), "eps": float(config.eps)}

    def example(self):
        Sxx = np.diag([1.0, 0.5])
        Syx = np.array([[1.0, 0.2], [0.0, 0.3]])
        prob = AdamSpikesProblem.regression(Sxx, Syx, depth=2, init_scale=0.8)
        return Example(problem=prob, lr=0.01, steps=600, short_steps=20, diverging_lr=None, has_theory=False,
                       options={"beta2": 0.99}, random_init={},
                       halving={"lr": 2e-3, "steps": 400, "options": _fixed_rates})


def _fixed_rates(lr):
    """Options that keep Adam's moment rates per unit of time fixed as lr changes (beta = 1 - rate lr): the
    flow limit in which gradient descent is first order (module docstring)."""
    return {"beta1": 1.0 - 20.0 * lr, "beta2": 1.0 - 5.0 * lr, "eps": 1e-8}


ADAM_SPIKES = register(AdamSpikesFamily(), default_for=(AdamSpikesProblem,))


def simulate_adam(problem, *, stepper=None, lr=None, steps=None, method=None, times=None, t_max=None, rtol=None,
                  atol=None, solver=None, beta1=0.9, beta2=0.999, eps=1e-8, record_every=None, record_log=None,
                  runs=1, key=0, dtype=None, optimizer=None, progress=None, on_divergence="raise"):
    """Adam (``lr``, ``steps``, per-run ``beta1``, ``beta2``, ``eps``) on an :class:`AdamSpikesProblem`, or its
    continuous-time flow (``method="flow"``, module docstring).  Returns .t, .weight_norm (T, depth), .loss,
    .grad_norm, .params (T, P), .v_hat (T, P); :func:`predict_spikes` reads the spikes off it."""
    return frontend.simulate(ADAM_SPIKES, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer,
                             options={"beta1": beta1, "beta2": beta2, "eps": eps}, desc="adam")


# ----------------------------------------------------------------------------------------- spike theory
@dataclass(frozen=True)
class SpikeCycle:
    """One cycle: ``quiet`` the step from which the prediction starts (the gradient below ``quiet`` x sqrt(vhat)
    in every coordinate), ``onset`` the step at which Adam's step turns unstable (inf: never, eps >= eps*),
    ``predicted`` the spike's step (the onset plus the steps the residual, seeded at the gradient left at the
    minimum or at the weights' rounding, takes to grow back to sqrt(vhat)), ``observed`` the first step at
    which the stability ratio fell ``drop`` below its running maximum -- the gradient back at the scale of
    sqrt(vhat), Adam's second moment rising again (inf: no spike in the run) --, ``eps_star`` at that
    minimum, ``sharpness`` (the Hessian's largest eigenvalue there), the run's ``last_step``, and ``stuck_until``:
    where the weights sat on the rounding lattice past the onset, the step at which the residual's update reaches
    half a unit in the last place again (the spike waits for it), else None."""

    quiet: int
    onset: float
    predicted: float
    observed: float
    eps_star: float
    sharpness: float
    last_step: int = 0
    stuck_until: float | None = None

    @property
    def beyond_run(self) -> bool:
        """True where neither the predicted spike nor an observed one lies within the run (nothing to compare)."""
        return math.isinf(self.observed) and self.last_step < self.predicted < math.inf

    @property
    def relative_error(self) -> float:
        """|predicted - observed| / observed (0 when neither ever comes (eps >= eps*), nan when the predicted onset
        lies beyond the run and no spike came, inf when only one of them is in the run)."""
        if math.isinf(self.predicted) and math.isinf(self.observed):
            return 0.0
        if self.beyond_run:
            return math.nan
        if math.isinf(self.predicted) or math.isinf(self.observed):
            return math.inf
        return abs(self.predicted - self.observed) / self.observed


@dataclass(frozen=True, eq=False)
class SpikePrediction:
    """:func:`predict_spikes` of one run: per record ``steps`` (T,), ``stability_ratio`` (T,) = lr lambda_max(D^½
    H D^½) / threshold (>= 1: Adam's step is unstable), ``threshold`` = 2 (1 + beta1) / (1 - beta1); the
    ``cycles`` (:class:`SpikeCycle`) found; ``message`` says why there are none where there are none."""

    steps: np.ndarray
    stability_ratio: np.ndarray
    threshold: float
    cycles: tuple
    message: str
    settings: dict

    @property
    def eps_star(self) -> float:
        """eps* at the first quiet minimum (nan without one)."""
        return self.cycles[0].eps_star if self.cycles else math.nan

    def __repr__(self):
        rows = "; ".join(f"predicted {c.predicted:.6g}, observed {c.observed:.6g} ({c.relative_error:.1%})"
                         for c in self.cycles[:4])
        more = f" (+{len(self.cycles) - 4} more)" if len(self.cycles) > 4 else ""
        return (f"SpikePrediction(threshold {self.threshold:.4g}, eps* {self.eps_star:.3g}, {len(self.cycles)} "
                f"cycle(s): {rows or self.message}{more})")

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "eps_star": self.eps_star, "message": self.message,
                "cycles": [{"quiet": c.quiet, "onset": c.onset, "predicted": c.predicted, "observed": c.observed,
                            "relative_error": c.relative_error, "eps_star": c.eps_star, "sharpness": c.sharpness,
                            "beyond_run": c.beyond_run, "stuck_until": c.stuck_until}
                           for c in self.cycles]}


@functools.lru_cache(maxsize=16)
def _curvature(kind, shapes):
    """jitted (flat params, data) -> (Hessian (P, P), gradient (P,)) of the loss."""
    sizes = [r * c for r, c in shapes]

    def unflat(x):
        out, i = [], 0
        for (r, c), n in zip(shapes, sizes):
            out.append(x[i:i + n].reshape(r, c))
            i += n
        return out

    f = lambda x, c: _loss(kind, unflat(x), c)  # noqa: E731
    return jax.jit(jax.vmap(lambda x, c: (jax.hessian(f)(x, c), jax.grad(f)(x, c)), in_axes=(0, None)))


def _ratio(H, vhat, lr, eps, threshold):
    """lr lambda_max(D^½ H D^½) / threshold, D = 1 / (sqrt(vhat) + eps), for stacks H (..., P, P), vhat (..., P)."""
    s = 1.0 / np.sqrt(np.sqrt(np.maximum(vhat, 0.0)) + eps)
    M = s[..., :, None] * H * s[..., None, :]
    return lr * np.linalg.eigvalsh(0.5 * (M + np.swapaxes(M, -1, -2)))[..., -1] / threshold


def _first_step(reached, s0):
    """The first integer step s >= s0 with ``reached(s)`` for a predicate monotone in s (false, then true):
    a doubling search and bisection; inf where it is never reached (within 2^60 steps)."""
    if reached(s0):
        return float(s0)
    hi = 1
    while not reached(s0 + hi):
        hi *= 2
        if hi > 2 ** 60:
            return math.inf
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reached(s0 + mid):
            hi = mid
        else:
            lo = mid
    return float(s0 + hi)


def _vhat(v_quiet, s0, s, b2):
    """vhat at step s from its value at the quiet step s0, v decaying as beta2^(s - s0) (module docstring)."""
    return v_quiet * (1 - b2 ** (s0 + 1)) * b2 ** (s - s0) / (1 - b2 ** (s + 1))


def _onset(H, v_quiet, s0, lr, eps, b1, b2):
    """The first step s >= s0 at which the frozen-curvature prediction (module docstring) reaches the threshold,
    vhat decaying as in :func:`_vhat` (monotone in s); inf where it never does (eps >= eps*)."""
    thr = adam_threshold(b1)
    sharp = float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
    if not sharp > 0 or lr * sharp / max(eps, 1e-300) <= thr:
        return math.inf
    return _first_step(lambda s: _ratio(H, _vhat(v_quiet, s0, s, b2), lr, eps, thr) >= 1, s0)


def _unlock(g, theta, v_quiet, s0, start, lr, eps, b2, dtype):
    """The first step >= ``start`` at which a parameter stuck on the rounding lattice moves again: the update
    lr |g_i| / (sqrt(vhat_i) + eps) of the gradient g left at the stuck point reaches half a unit in the last
    place of theta_i (in the run's dtype) in some coordinate, vhat decaying as in :func:`_vhat` (theory/
    adam_spikes.md sec. 3: until then the rounded map sits at a fixed point, unstable or not)."""
    half_ulp = 0.5 * np.spacing(np.abs(theta).astype(dtype)).astype(float)
    if not np.any(g != 0):
        return math.inf
    return _first_step(lambda s: bool(np.any(lr * np.abs(g) / (np.sqrt(_vhat(v_quiet, s0, s, b2)) + eps)
                                             >= half_ulp)), int(start))


def _growth(H, v_quiet, s0, onset, lr, eps, b1, b2, seed, max_steps=2 ** 22):
    """Steps from the onset until the residual, seeded at ``seed`` (its gradient's size), has grown back to the
    scale of sqrt(vhat) seen by the unstable mode: the sum of ln|z(s)| from the onset reaches ln(target / seed),
    |z| the largest root modulus of z^2 - (1 + beta1 - (1 - beta1) a(s)) z + beta1, a(s) = lr lambda_max(D(s)^½ H
    D(s)^½), D(s) from the same decay of v as the onset's (theory/adam_spikes.md sec. 3)."""
    vh = _vhat(v_quiet, s0, onset, b2)
    d = 1.0 / (np.sqrt(vh) + eps)
    w, U = np.linalg.eigh(0.5 * (H + H.T) * np.sqrt(d)[:, None] * np.sqrt(d)[None, :])
    target = math.sqrt(float(np.sum(U[:, -1] ** 2 * vh)))
    if not (seed > 0 and target > seed):
        return 0.0 if seed > 0 else math.inf
    need, done, s = math.log(target / seed), 0.0, float(onset)
    cap = int(min(4096, max(16, 1e7 // (H.shape[0] ** 2))))      # (block, P, P) at most ~1e7 numbers
    n = 64
    while s - onset < max_steps:
        block = np.arange(min(n, cap), dtype=float)
        n *= 2
        ss = s + block
        vv = _vhat(v_quiet[None, :], s0, ss[:, None], b2)
        a = _ratio(H, vv, lr, eps, 1.0)
        B = 1 + b1 - (1 - b1) * a
        disc = B * B - 4 * b1
        z = np.where(disc < 0, math.sqrt(b1), 0.5 * (np.abs(B) + np.sqrt(np.maximum(disc, 0.0))))
        total = done + np.cumsum(np.log(z))
        hit = np.nonzero(total >= need)[0]
        if hit.size:
            return float(ss[hit[0]] - onset + 1)
        done, s = float(total[-1]), s + block.size
    return math.inf


def _first_drop(ratio, k0, drop):
    """The first record k > k0 at which the stability ratio has fallen ``drop`` (a fraction) below its running
    maximum since k0, or None.  Between a quiet record and the onset v only decays, so the ratio only grows;
    it falls when the gradient has grown back to the scale of sqrt(vhat) and Adam's second moment rises again:
    that is the spike (the loss's own rise is no criterion: it oscillates while converging, and a spike soon
    after convergence can stay below the loss of a few hundred steps before)."""
    r = np.where(np.isnan(ratio[k0:]), -np.inf, ratio[k0:])      # a NaN record (0/0 at eps = 0) is skipped
    down = np.nonzero(r < (1.0 - drop) * np.maximum.accumulate(r))[0]
    return k0 + int(down[0]) if down.size else None


def predict_spikes(sim, *, quiet=0.03, converged=1e-10, drop=0.05, max_cycles=50):
    """The spike theory against an Adam run (``simulate_adam``; one run): for each cycle, from the first record
    after the last spike where every coordinate's gradient is below ``quiet`` x sqrt(vhat) (v then decays as
    beta2^t), the onset step (module docstring: the curvature frozen at that record, v decaying), the predicted
    spike (the onset, plus the growth from the seed, plus any wait of weights stuck on the rounding lattice) and
    the observed spike (the first record at which the stability ratio fell ``drop`` below its running maximum since
    then: the gradient has grown back to the scale of sqrt(vhat) and v rises again).  A quiet record also needs the
    loss below ``converged`` x its initial value (the curvature no longer moving).  Also the stability ratio of every
    record.  Returns a :class:`SpikePrediction`."""
    check_instance("sim", sim, Trajectory)
    if sim.model != "adam_spikes":
        raise ValueError(f"sim must be a run of the adam_spikes family (dy.simulate_adam), got model {sim.model!r}")
    if sim.batched:
        raise ValueError(f"sim is a batch of {sim.n_runs} runs: predict_spikes reads one run; pass sim.run(i)")
    if sim.method != "gd":
        raise ValueError(f"sim is a {sim.method!r} run: the spikes are gradient descent's (Adam's discrete steps); "
                         "the continuous-time flow has none")
    quiet = check_positive("quiet", quiet)
    converged = check_positive("converged", converged)
    drop = check_positive("drop", drop)
    if drop >= 1:
        raise ValueError(f"drop must be a fraction in (0, 1), got {drop!r}")
    max_cycles = check_int("max_cycles", max_cycles, minimum=1)
    problem, st = sim.problem, sim.settings
    lr, b1, b2, eps = (float(st[k]) for k in ("lr", "beta1", "beta2", "eps"))
    thr = adam_threshold(b1)
    steps = np.rint(np.asarray(sim.t, float) / lr).astype(np.int64)
    params = np.asarray(sim.fields["params"], np.float64)
    vhat = np.asarray(sim.fields["v_hat"], np.float64)
    loss = np.asarray(sim.fields["loss"], np.float64)
    # the Hessians record by record, in blocks of at most ~1e7 numbers (P^2 each), kept only where needed
    curv, data, P = _curvature(problem.kind, problem.shapes), _data(problem), params.shape[1]
    block = max(1, int(1e7 // (P * P)))
    ratio, g = np.empty(steps.size), np.empty_like(params)
    for a in range(0, steps.size, block):
        Hb, gb = curv(params[a:a + block], data)
        ratio[a:a + block] = _ratio(np.asarray(Hb), vhat[a:a + block], lr, eps, thr)
        g[a:a + block] = np.asarray(gb)

    def hessian(k):
        return np.asarray(curv(params[k:k + 1], data)[0][0])
    dtype = np.dtype(st.get("dtype") or "float64")
    u = float(np.finfo(dtype).eps)
    grad_quiet = np.all(g * g <= quiet * quiet * np.maximum(vhat, 0.0), axis=1) & np.all(np.isfinite(vhat), axis=1)
    is_quiet = grad_quiet & (loss <= converged * loss[0])
    cycles, k, message = [], 0, ""
    T = steps.size
    if problem.kind == "logistic":      # no minimum: the frozen-curvature onset does not apply
        k = T
        message = ("a separable logistic regression has no minimum: its curvature vanishes with its gradient, so the "
                   "stability ratio stays bounded (near |x| (1 - beta2) / 2 / threshold with eps = 0, decaying with "
                   "eps > 0) and no onset is predicted (theory/adam_spikes.md sec. 4); the ratio per record is measured")
    while len(cycles) < max_cycles and k < T:
        q = np.nonzero(is_quiet[k:])[0]
        if q.size == 0:
            small_g, low_loss = grad_quiet[k:], loss[k:] <= converged * loss[0]
            if not np.any(low_loss):
                why = (f"the loss never fell below converged = {converged:g} x its initial value (still converging: "
                       "run longer)")
            else:
                why = (f"where the loss is below converged = {converged:g} x its initial value, the gradient stays "
                       f"above {quiet:g} x sqrt(vhat) in some coordinate (as in separable logistic regression, where "
                       "it decays at the rate v does: then no onset is predicted; theory/adam_spikes.md sec. 4)")
            message = f"no quiet record{' after the last spike' if cycles else ''}: {why}"
            break
        q0 = k + int(q[0])
        H = hessian(q0)
        sharp = float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
        onset = _onset(H, vhat[q0], int(steps[q0]), lr, eps, b1, b2)
        # the seed: the quiet record's gradient decaying at the stable rate sqrt(beta1) per step, but never below
        # the gradient that the weights' rounding leaves (h u |theta|, u the dtype's resolution)
        floor = sharp * u * float(np.linalg.norm(params[q0]))
        gq = float(np.linalg.norm(g[q0]))
        seed = max(gq * math.sqrt(b1) ** max(onset - steps[q0], 0.0), floor) if math.isfinite(onset) else gq
        pred = (onset + _growth(H, vhat[q0], int(steps[q0]), onset, lr, eps, b1, b2, seed)
                if math.isfinite(onset) else math.inf)
        # stuck on the rounding lattice at the onset (at the last record before it, the residual gradient's update
        # is below half a unit in the last place in every coordinate): nothing grows until it reaches it
        k_on = int(np.searchsorted(steps, onset, side="right")) - 1 if math.isfinite(onset) else -1
        stuck = None
        if q0 < k_on < T and np.array_equal(params[k_on], params[k_on - 1]):     # the weights stopped moving
            # the gradient the run itself sees there: its dtype's arithmetic and minimum, not float64's
            g_run = np.asarray(curv(params[k_on:k_on + 1].astype(dtype),
                                    {k_: np.asarray(v_, dtype) for k_, v_ in data.items()})[1][0], float)
            unlock = _unlock(g_run, params[k_on], vhat[q0], int(steps[q0]), onset, lr, eps, b2, dtype)
            if unlock > onset:
                stuck = unlock
                pred = unlock + _growth(H, vhat[q0], int(steps[q0]), unlock, lr, eps, b1, b2, seed)
        j = _first_drop(ratio, q0, drop)
        obs = float(steps[j]) if j is not None else math.inf
        cycles.append(SpikeCycle(quiet=int(steps[q0]), onset=onset, predicted=pred, observed=obs,
                                 eps_star=lr * sharp / thr, sharpness=sharp, last_step=int(steps[-1]),
                                 stuck_until=stuck))
        if j is None:
            break
        while j + 1 < T and ratio[j + 1] <= ratio[j]:     # past the spike: v stops rising
            j += 1
        k = j + 1
    if not cycles and not message:
        message = "the run is too short to reach a quiet record"
    return SpikePrediction(steps=steps, stability_ratio=ratio, threshold=thr, cycles=tuple(cycles), message=message,
                           settings={"lr": lr, "beta1": b1, "beta2": b2, "eps": eps, "quiet": quiet, "converged": converged, "drop": drop,
                                     "dtype": st.get("dtype")})
