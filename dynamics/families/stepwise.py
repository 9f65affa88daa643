"""Stepwise self-supervised learning (Simon et al. 2023): a linear Barlow-Twins toy learns one
eigenmode at a time.

Embedding f(x) = W x, W (d x m); Gamma (m x m) = symmetrised cross-correlation of positive pairs;
C = W Gamma W^T and L = ||C - I||_F^2, so (theory/stepwise.md)

    dW/dt = -grad L = -4 (W Gamma W^T - I) W Gamma.

Aligned init W(0) = U diag(s(0)) V_d^T (V_d: top-d eigenvectors of Gamma, eigenvalues gamma_j) stays
aligned with ds_j/dt = 4 gamma_j s_j (1 - gamma_j s_j^2):

    s_j(t) = e^(4 gamma_j t) / sqrt(s_j(0)^-2 + gamma_j (e^(8 gamma_j t) - 1)),
    lambda_j = gamma_j s_j^2 is logistic at rate 8 gamma_j, step (half) times
    t_j = ln(1/lambda_j(0) - 1) / (8 gamma_j): modes are learned one at a time in order of gamma.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..core import engine, frontend
from ..core.config import Config, configclass
from ..core.family import Example, Family, register, register_problem
from ..core.theory import Theory
from ..core.io import versions
from ..core.stability import StabilityLimit, limit_along, step_limits, warn_above_limit
from ..core.steppers import GD
from ..core.linalg import random_rotation
from ..core.trajectory import Trajectory
from ..core.validation import check_array, check_bool, check_choice, check_fraction, check_int, check_positive, check_symmetric_pd, check_instance

__all__ = ["StepwiseProblem", "StepwiseConfig", "simulate_stepwise", "solve_stepwise"]


@register_problem
@dataclass(frozen=True, eq=False)
class StepwiseProblem:
    """Gamma (m x m) symmetric with positive top-d eigenvalues, embedding dimension d (default m),
    init scale s0 (aligned: s_j(0) = init_scale; random: i.i.d. N(0, init_scale^2) entries)."""

    Gamma: np.ndarray
    init_scale: float
    d: int | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        G = check_symmetric_pd("Gamma", self.Gamma, semi=True)
        m = G.shape[0]
        d = m if self.d is None else check_int("d", self.d, minimum=1)
        if d > m:
            raise ValueError(f"d must be <= m = {m} (embedding dimension at most the input's), got {d}")
        gam, V = np.linalg.eigh(G)
        order = np.argsort(gam)[::-1]
        gam, V = gam[order], V[:, order]
        if gam[d - 1] <= 0:
            raise ValueError(f"Gamma's top d = {d} eigenvalues must be > 0 (C = I must be reachable), got "
                             f"{gam[:d]}")
        object.__setattr__(self, "Gamma", G)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "init_scale", check_positive("init_scale", self.init_scale))
        object.__setattr__(self, "gammas", gam[:d])
        object.__setattr__(self, "V", V[:, :d])

    @classmethod
    def from_spectrum(cls, gammas, init_scale, *, rotate=True, key=0, d=None):
        g = check_array("gammas", gammas, ndim=1)
        if g.size < 1:
            raise ValueError("gammas must hold at least one eigenvalue, got an empty array")
        if np.any(g <= 0):
            raise ValueError(f"gammas must be > 0, got {g}")
        V = random_rotation(g.size, key=key) if check_bool("rotate", rotate) else np.eye(g.size)
        return cls(Gamma=(V * g) @ V.T, init_scale=init_scale, d=d, source={"gammas": g.tolist()})

    @property
    def m(self):
        return self.Gamma.shape[0]


@functools.lru_cache(maxsize=4)
def _model():
    def loss(W, G):
        C = W @ G @ W.T
        E = C - jnp.eye(C.shape[0], dtype=C.dtype)
        return jnp.sum(E * E)

    def grad(params, aux, ctx, key):
        W, G = params["W"], ctx["Gamma"]
        C = W @ G @ W.T
        E = C - jnp.eye(C.shape[0], dtype=C.dtype)
        return jnp.sum(E * E), {"W": 4.0 * E @ W @ G}

    def observe(params, aux, ctx):
        W, G = params["W"], ctx["Gamma"]
        C = W @ G @ W.T
        return {"eigenvalues": jnp.linalg.eigvalsh(0.5 * (C + C.T))[::-1], "loss": loss(W, G)}

    return engine.Model(grad=grad, observe=observe, stochastic=False)


@configclass
class StepwiseConfig(Config):
    """The configuration of stepwise SSL.  init : "aligned" (W = s0 V_d^T) or "random" (N(0, s0^2)
    entries, one draw per run from its key)."""

    init: str = "aligned"

    def __post_init__(self):
        super().__post_init__()
        check_choice("init", self.init, {"aligned", "random"})

    def check(self, family, problems, stepper):
        if isinstance(stepper, GD) and stepper.optimizer == "sgd":
            # the limit at the fixed point, closed form (every fixed point W = O diag(gamma^-1/2) V_d^T has
            # the same spectrum): theory/stepwise.md sec. "Step size"
            lrs = np.broadcast_to(np.asarray(stepper.lr, float), (len(problems),))
            for lr, p in zip(lrs, problems):
                limit = fixed_point_limit(p)
                if lr > limit:
                    warn_above_limit(float(lr), limit, "at the stepwise fixed point (1 / (4 gamma_1))",
                                     "theory/stepwise.md")
                    break
        return self

    def record(self, problem):
        return {"init": self.init, "init_scale": problem.init_scale}


class StepwiseFamily(Family):
    """Stepwise SSL as a family: primary field ``eigenvalues`` (of C = W Gamma W^T, descending), fixed
    point 1 for each; theory: the aligned closed form (``solve_stepwise``).  Configuration:
    :class:`StepwiseConfig` (``init``)."""

    name = "stepwise"
    problem_type = StepwiseProblem
    primary = "eigenvalues"
    config = StepwiseConfig

    def shape(self, problem):
        return {"d": problem.d, "m": problem.m}

    def model(self, problem, form, config):
        return _model()

    def initial_state(self, problem, key, form, config):
        s0 = problem.init_scale
        if config.init == "aligned":
            return {"W": s0 * problem.V.T}, {}
        return {"W": s0 * np.asarray(jax.random.normal(key, (problem.d, problem.m), dtype=jnp.float64))}, {}

    def context(self, problem, form, config):
        return {"Gamma": problem.Gamma}

    def theory(self, problem, config=None):
        """The aligned closed form (theory/stepwise.md): ``solve_stepwise``, the fixed point 1 per eigenvalue,
        the step times (option ``approximate``: the paper's tiny-init formula) and the stability limit."""
        return Theory(trajectory=lambda times: solve_stepwise(problem, times=times), fixed_point=np.ones(problem.d),
                      critical_times=lambda fraction, approximate=False: step_times(
                          problem, fraction=fraction, approximate=approximate),
                      stability_limit=functools.partial(path_stability, problem))

    def example(self):
        prob = StepwiseProblem.from_spectrum([1.0, 0.5], 1e-2, key=1)
        lr = 2e-3
        return Example(problem=prob, lr=lr, steps=int(1.4 * step_times(prob).max() / lr),
                       short_steps=int(0.2 * step_times(prob).min() / lr), diverging_lr=5.0,
                       random_init={"init": "random"})


STEPWISE = register(StepwiseFamily(), default_for=(StepwiseProblem,))


def simulate_stepwise(problem, *, stepper=None, lr=None, steps=None, method=None, times=None, t_max=None, rtol=None,
                      atol=None, solver=None, init="aligned", record_every=None, record_log=None, runs=1,
                      key=0, dtype=None, optimizer=None, progress=None, on_divergence="raise"):
    """Gradient descent on W. init: "aligned" (W = diag(s0) V_d^T) or "random" (N(0, s0^2) entries,
    one draw per run from ``key``). Returns .t, .eigenvalues (T, d) of C = W Gamma W^T (descending), .loss."""
    return frontend.simulate(STEPWISE, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer, options={"init": init},
                             desc="stepwise")


def solve_stepwise(problem, *, times):
    """Closed-form aligned solution: eigenvalues lambda_j(t) = gamma_j s_j(t)^2 (logistic), loss.
    ``times`` / ``problem`` may be those of a batch."""
    return frontend.solve(_solve_one, problem, times)


def _solve_one(problem, times):
    check_instance("problem", problem, StepwiseProblem)
    t = check_array("times", times, ndim=1)
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    g = problem.gammas
    log_lam0, logit0 = _initial_logit(problem)
    x = 8.0 * g[None, :] * t[:, None]
    # logistic in a stable form: lam = 1 / (1 + (1/lam0 - 1) e^(-x)), the coefficient as e^(logit0) while
    # lam0 < 1 (no overflow at a tiny init), directly (in (-1, 0]) from at or above the fixed point
    below = log_lam0 < 0.0
    with np.errstate(over="ignore"):
        coef_exp = np.exp(np.where(below, logit0, 0.0)[None, :] - x)
        direct = (np.exp(-np.where(below, 0.0, log_lam0)) - 1.0)[None, :] * np.exp(-x)
    lam = 1.0 / (1.0 + np.where(below[None, :], coef_exp, direct))
    order = np.argsort(-lam, axis=1, kind="stable")
    lam_sorted = np.take_along_axis(lam, order, axis=1)
    return Trajectory(t=t, fields={"eigenvalues": lam_sorted, "modes": lam, "loss": np.sum((lam - 1) ** 2, axis=1)},
                      kind="theory", model="stepwise", settings={"units": "gf", **versions()}, problem=problem,
                      method="exact", primary="eigenvalues", fixed_point=np.ones(problem.d))


def fixed_point_limit(problem):
    """2 / lambda_max of the loss Hessian at a fixed point C = I: 1 / (4 gamma_1).  There J(dW) =
    4 (dW Gamma W^T + W Gamma dW^T) W Gamma; with dW = A V_d^T and Q = diag(gamma^(1/2)) its eigenvalues are
    8 gamma_j (A diagonal), 4 (gamma_i + gamma_j) and 0 (symmetric / antisymmetric off-diagonal pairs) and
    0 (dW orthogonal to V_d): the largest is 8 gamma_1 (theory/stepwise.md)."""
    return 1.0 / (4.0 * float(problem.gammas[0]))


def path_stability(problem, init=None, *, points=48):
    """The largest stable lr of gradient descent on W (``core.stability``): the smallest along the aligned
    theory's path (``points`` times up to twice the last step time, and the fixed point), or at one init
    ("aligned", or "random" drawn with key 0).  Returns a ``StabilityLimit``."""
    check_instance("problem", problem, StepwiseProblem)
    G = jnp.asarray(problem.Gamma)
    grad = _model().grad

    def field(params):
        return grad(params, {}, {"Gamma": G}, None)[1]

    if init is not None:
        check_choice("init", init, {"aligned", "random"})
        params, _ = STEPWISE.initial_state(problem, jax.random.PRNGKey(0), "params", StepwiseConfig(init=init))
        ((lr, mu),) = step_limits(field, [{"W": jnp.asarray(params["W"])}])
        return StabilityLimit(lr, mu, None, np.array([0.0]), np.array([lr]))
    t_end = 2.0 * float(np.max(step_times(problem)))
    t = np.concatenate([[0.0], np.geomspace(t_end * 1e-3, t_end, points - 1)])
    lam = np.asarray(_solve_one(problem, t).modes)                       # (T, d), mode order
    s = np.vstack([np.sqrt(lam / problem.gammas), 1.0 / np.sqrt(problem.gammas)])     # and the fixed point
    V = problem.V                                                        # (m, d)
    pts = [{"W": jnp.asarray(si[:, None] * V.T)} for si in s]
    return limit_along(field, pts, np.append(t, np.inf))


def step_times(problem, *, approximate=False, fraction=0.5):
    """(Public as ``dy.critical_times(problem, fraction=..., approximate=...)``.)  Times at which the aligned eigenvalues reach ``fraction``: t_j = ln[(1/lambda_j(0) - 1) /
    (1/fraction - 1)] / (8 gamma_j) (the half times ln(1/lambda_j(0) - 1) / (8 gamma_j) by default),
    lambda_j(0) = gamma_j s0^2 (0 if already past); ``approximate=True``: the paper's
    -ln(s0^2 gamma_j)/(8 gamma_j)."""
    check_instance("problem", problem, StepwiseProblem)
    fraction = check_fraction("fraction", fraction)
    g = problem.gammas
    log_lam0, logit0 = _initial_logit(problem)
    if approximate:
        return -log_lam0 / (8 * g)
    return np.where(log_lam0 < np.log(fraction), (logit0 - np.log(1.0 / fraction - 1.0)) / (8 * g), 0.0)


def _initial_logit(problem):
    """(ln lambda_j(0), ln(1/lambda_j(0) - 1)) in logs, lambda_j(0) = gamma_j s0^2: right for an init scale
    down to the smallest float64 (s0^2 would underflow below 1e-154); the logit is nan where lambda_j(0) >= 1
    (the mode starts at or past its fixed point)."""
    log_lam0 = np.log(problem.gammas) + 2.0 * np.log(problem.init_scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        logit0 = np.log(-np.expm1(log_lam0)) - log_lam0
    return log_lam0, logit0
