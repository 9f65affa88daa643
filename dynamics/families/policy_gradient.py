"""Vanishing gradients in reinforcement finetuning (Razin et al., ICLR 2024): a softmax policy trained by
expected policy gradient (RL) or by log-likelihood (SFT), theory/policy_gradient.md.

A linear softmax policy over K outputs, pi(. | x_i) = softmax(W x_i), W (K, d), on n inputs x_i (rows of X,
(n, d)); input i has one correct output y_i* (reward r(y) = 1[y = y_i*]), so its expected reward is
p_i = pi(y_i* | x_i) and the reward's standard deviation under the policy is sigma_i = sqrt(p_i (1 - p_i)).
Objectives (summed over the inputs, each weighted by w_i):

    "rl"   J = sum_i w_i p_i                 (expected reward; the exact policy gradient),
    "sft"  J = sum_i w_i log p_i             (supervised finetuning on the correct outputs),
    "sft_then_rl"  SFT on the first ceil(sft_fraction n) inputs until t = sft_time, then RL on all,
    "reinforce"    RL with the gradient estimated from ``samples`` outputs drawn per input and step
                   (stochastic: gradient descent only),

and gradient ascent dW/dt = grad J.  Tabular case (X = I, Razin et al.'s minimal model): the logits of
input i are its own column of W.  From an init whose wrong outputs share one logit (the problem's
builders) they keep sharing it, and with c = K / (K - 1)

    RL:   dp/dt = c p^2 (1 - p)^2 = c sigma^4,   ||grad_theta p|| = sqrt(c) sigma^2,
    SFT:  dp/dt = c p (1 - p)^2.

In the logit z = ln(p / (1 - p)) both integrate in closed form (theory/policy_gradient.md):

    RL:   c t = G(z) - G(z0),   G(z) = 2 sinh z + 2 z        (t ~ 1 / (c p0) from a small p0),
    SFT:  c t = H(z) - H(z0),   H(z) = z + e^z               (z = C - omega(C), Wright's omega; t ~ ln(1/p0) / c),

so at K = 50 and p0 = 1e-4 reaching p = 1/2 takes RL ~981 x longer than SFT: the gradient vanishes with
the reward's std even though the policy is far from optimal.  With shared weights (rows of X not
orthonormal) the inputs move each other and the exact flow is the reference.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..core import engine, frontend
from ..core.config import Config, configclass, number
from ..core.family import Example, Family, register, register_problem
from ..core.io import versions
from ..core.resources import check_memory
from ..core.steppers import GD
from ..core.theory import Theory
from ..core.trajectory import Trajectory
from ..core.validation import (check_array, check_choice, check_fraction, check_instance, check_int,
                               check_positive)

__all__ = ["PolicyGradientProblem", "PolicyGradientConfig", "simulate_policy_gradient", "solve_policy_gradient",
           "escape_times", "OBJECTIVES"]

OBJECTIVES = ("rl", "sft", "sft_then_rl", "reinforce")


def _check_target(target, n, K):
    """target as (n,) int64 output indices in [0, K)."""
    tgt = np.asarray(target)
    if tgt.shape != (n,) or not np.issubdtype(tgt.dtype, np.integer) or tgt.min() < 0 or tgt.max() >= K:
        raise ValueError(f"target must hold one output index in [0, {K}) per input ({n} of them), got {target!r:.80}")
    return tgt.astype(np.int64)


def _check_p0(p0, n):
    """p0 as (n,) probabilities in (0, 1): one number for every input, or one per input (n None: as many as given)."""
    p0 = np.atleast_1d(check_array("p0", p0))
    if p0.ndim != 1 or p0.size == 0:
        raise ValueError(f"p0 must be a number or a non-empty list with one per input, got shape {p0.shape}")
    if n is not None and p0.size not in (1, n):
        raise ValueError(f"p0 has {p0.size} values for {n} inputs: give one, or one per input")
    if np.any(~(p0 > 0) | ~(p0 < 1)):
        raise ValueError(f"p0 must be in (0, 1) for every input, got {p0[:5]}")
    return np.array(np.broadcast_to(p0, (p0.size if n is None else n,)), float)


@register_problem
@dataclass(frozen=True, eq=False)
class PolicyGradientProblem:
    """n inputs X (n, d), their correct outputs ``target`` (n,) in [0, K), K = ``n_outputs``, the initial
    weights W0 (K, d), and per-input weights ``weights`` (n,) of the objective (default 1).

    Build with :meth:`tabular` (Razin et al.'s minimal model: X = I, each input's wrong outputs share one
    logit, so p_i(0) = p0_i exactly) or :meth:`linear` (features shared by the inputs)."""

    X: np.ndarray
    target: np.ndarray
    n_outputs: int
    W0: np.ndarray
    weights: np.ndarray | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        X = check_array("X", self.X, ndim=2)
        n, d = X.shape
        if n < 1 or d < 1:
            raise ValueError(f"X must have at least one input (row) and one feature (column), got shape {X.shape}")
        K = check_int("n_outputs", self.n_outputs, minimum=2)
        tgt = _check_target(self.target, n, K)
        W0 = check_array("W0", self.W0, shape=(K, d))
        w = np.ones(n) if self.weights is None else check_array("weights", self.weights, shape=(n,))
        if np.any(w < 0):
            raise ValueError(f"weights must be >= 0 (one per input), got {w[:5]}")
        for k, v in (("X", X), ("target", tgt), ("n_outputs", K), ("W0", W0), ("weights", w)):
            object.__setattr__(self, k, v)

    # ------------------------------------------------------------------ builders
    @classmethod
    def tabular(cls, n_outputs, p0, *, n_inputs=None):
        """Razin et al.'s minimal model: a tabular softmax policy (X = I) over K = ``n_outputs`` outputs for
        each of ``n_inputs`` inputs (default: one per value of ``p0``), output 0 correct, its initial
        probability ``p0`` (a scalar or one per input, in (0, 1)) and the K - 1 wrong outputs sharing one
        logit: logits (ln(p0 (K - 1) / (1 - p0)), 0, ..., 0)."""
        K = check_int("n_outputs", n_outputs, minimum=2)
        n = None if n_inputs is None else check_int("n_inputs", n_inputs, minimum=1)
        p0 = _check_p0(p0, n)
        n = p0.size
        check_memory(f"the policy's weights (n_outputs = {K:,} x n_inputs = {n:,})", 8 * K * n * 2,
                     hint="fewer outputs or inputs")
        W0 = np.zeros((K, n))
        W0[0] = np.log(p0) - np.log1p(-p0) + np.log(K - 1)
        return cls(X=np.eye(n), target=np.zeros(n, np.int64), n_outputs=K, W0=W0,
                   source={"builder": "tabular", "p0": p0.tolist()})

    @classmethod
    def linear(cls, X, target, n_outputs, p0):
        """A linear softmax policy shared by the inputs (rows of ``X``, (n, d)), correct outputs ``target``;
        W0 is the least-squares W with W x_i = the tabular logits of ``p0`` (exact when the rows of X are
        linearly independent, so p_i(0) = p0_i; the theory applies when they are orthonormal)."""
        X = check_array("X", X, ndim=2)
        n = X.shape[0]
        K = check_int("n_outputs", n_outputs, minimum=2)
        tgt = _check_target(target, n, K)
        p0 = _check_p0(p0, n)
        check_memory(f"the policy's logits (n_outputs = {K:,} x n_inputs = {n:,})", 8 * K * n * 2,
                     hint="fewer outputs or inputs")
        logits = np.zeros((n, K))
        logits[np.arange(n), tgt] = np.log(p0) - np.log1p(-p0) + np.log(K - 1)
        W0 = np.linalg.lstsq(X, logits, rcond=None)[0].T
        return cls(X=X, target=tgt, n_outputs=K, W0=W0, source={"builder": "linear"})

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def c(self) -> float:
        """K / (K - 1)."""
        return self.n_outputs / (self.n_outputs - 1)

    def initial_logits(self) -> np.ndarray:
        """(n, K) logits W0 x_i."""
        return self.X @ self.W0.T

    def p0(self) -> np.ndarray:
        """(n,) initial probabilities of the correct outputs."""
        z = self.initial_logits()
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return np.exp(logp[np.arange(self.n), self.target])

    def tabular_theory_applies(self) -> str:
        """"" when the closed forms describe this problem, else why not: the rows of X must be orthonormal
        (the inputs do not move each other) and each input's wrong outputs must share one logit at init."""
        X = self.X
        G = X @ X.T
        if np.abs(G - np.eye(self.n)).max() > 1e-12:
            return ("the rows of X are not orthonormal (the inputs share weights and move each other; "
                    f"max |X X^T - I| = {np.abs(G - np.eye(self.n)).max():.3g})")
        z = self.initial_logits()
        wrong = np.ones_like(z, bool)
        wrong[np.arange(self.n), self.target] = False
        zw = z[wrong].reshape(self.n, -1)
        spread = float(np.abs(zw - zw[:, :1]).max()) if zw.size else 0.0
        if spread > 1e-12 * max(1.0, float(np.abs(z).max())):
            return f"the wrong outputs' initial logits differ (spread {spread:.3g}): the reduced p-flow needs them equal"
        return ""

    def summary(self) -> dict:
        return {"n_outputs": self.n_outputs, "n_inputs": self.n, "d": self.X.shape[1], "p0": self.p0()}

    def state(self):
        return ({"X": self.X, "target": self.target, "W0": self.W0, "weights": self.weights},
                {"class": type(self).__name__, "n_outputs": self.n_outputs, "source": self.source})

    @classmethod
    def from_state(cls, arrays, scalars):
        return cls(X=arrays["X"], target=np.asarray(arrays["target"]).astype(np.int64),
                   n_outputs=int(scalars["n_outputs"]), W0=arrays["W0"], weights=arrays["weights"],
                   source=dict(scalars["source"]))


@configclass
class PolicyGradientConfig(Config):
    """The configuration of the policy-gradient family.

    objective : "rl" (expected policy gradient), "sft" (log-likelihood of the correct outputs),
        "sft_then_rl" (SFT on the first ceil(sft_fraction n) inputs until t = sft_time, then RL on all) or
        "reinforce" (RL with ``samples`` outputs drawn per input and step: stochastic, gradient descent only).
    sft_fraction : the fraction of the inputs SFT trains on ("sft_then_rl"; per-run number, default 1).
    sft_time : the gradient-flow time of the SFT phase ("sft_then_rl"; per-run number).
    samples : outputs drawn per input and step ("reinforce").
    """

    objective: str = "rl"
    sft_fraction: float | tuple | None = number(None, doc="fraction of the inputs SFT trains on")
    sft_time: float | tuple | None = number(None, doc="length of the SFT phase in gradient-flow time")
    samples: int = 16

    def __post_init__(self):
        super().__post_init__()
        check_choice("objective", self.objective, set(OBJECTIVES))
        check_int("samples", self.samples, minimum=1)
        two = self.objective == "sft_then_rl"
        if two and self.sft_time is None:
            raise ValueError("objective='sft_then_rl' needs sft_time (the length of the SFT phase, in gradient-flow time)")
        if not two and (self.sft_time is not None or self.sft_fraction is not None):
            given = [k for k in ("sft_time", "sft_fraction") if getattr(self, k) is not None]
            raise ValueError(f"{', '.join(given)} given with objective={self.objective!r}: they set the SFT phase of "
                             "objective='sft_then_rl'; drop them or choose that objective")
        for name in ("sft_time", "sft_fraction"):
            v = getattr(self, name)
            if v is not None:
                for x in np.atleast_1d(v):
                    (check_fraction if name == "sft_fraction" else check_positive)(name, float(x))

    def check(self, family, problems, stepper):
        if self.objective == "reinforce" and not isinstance(stepper, GD):
            raise ValueError("objective='reinforce' estimates the gradient from samples: it has no gradient flow; "
                             "use method='gd', or objective='rl' (the exact expected gradient) for the flow")
        return self

    def record(self, problem):
        return {"objective": self.objective, "sft_fraction": self.sft_fraction, "sft_time": self.sft_time,
                "samples": self.samples}


def _log_policy(W, X):
    z = X @ W.T
    return z - jax.scipy.special.logsumexp(z, axis=1, keepdims=True)


@functools.lru_cache(maxsize=8)
def _model(objective: str, samples: int):
    """The engine model of one objective (gradient ascent on J: the engine descends -J)."""

    def objective_value(W, ctx, clock):
        logp = _log_policy(W, ctx["X"])
        lp = jnp.sum(logp * ctx["onehot"], axis=1)
        if objective == "rl":
            return jnp.sum(ctx["weights"] * jnp.exp(lp))
        if objective == "sft":
            return jnp.sum(ctx["weights"] * lp)
        # sft_then_rl: SFT on the chosen inputs before sft_time, RL on all after
        sft = jnp.sum(ctx["weights"] * ctx["sft_mask"] * lp)
        rl = jnp.sum(ctx["weights"] * jnp.exp(lp))
        return jnp.where(clock < ctx["sft_time"], sft, rl)

    def grad(params, aux, ctx, key, lr):
        W = params["W"]
        if objective == "reinforce":
            logp = _log_policy(W, ctx["X"])
            n = logp.shape[0]
            ys = jax.random.categorical(key, logp, axis=1, shape=(samples, n))         # (S, n)
            reward = jnp.take_along_axis(ctx["onehot"], ys.T, axis=1).T          # 1 where y = y*

            def surrogate(W_):
                lq = _log_policy(W_, ctx["X"])
                picked = jnp.take_along_axis(lq[None].repeat(samples, 0), ys[..., None], axis=2)[..., 0]
                return jnp.sum(ctx["weights"][None] * reward * picked) / samples

            g = jax.grad(surrogate)(W)
            value = jnp.sum(ctx["weights"] * jnp.exp(jnp.sum(logp * ctx["onehot"], axis=1)))
            return -value, {"W": -g}
        value, g = jax.value_and_grad(objective_value)(W, ctx, aux["clock"])
        return -value, {"W": -g}

    def update_aux(params, aux, ctx, lr):
        return {"clock": aux["clock"] + lr}

    def observe(params, aux, ctx):
        W = params["W"]
        logp = _log_policy(W, ctx["X"])
        p = jnp.exp(jnp.sum(logp * ctx["onehot"], axis=1))
        rl = jax.grad(lambda W_: jnp.sum(ctx["weights"] * jnp.exp(jnp.sum(
            _log_policy(W_, ctx["X"]) * ctx["onehot"], axis=1))))(W)
        return {"p": p, "reward_std": jnp.sqrt(jnp.clip(p * (1 - p), 0.0)), "reward_mean": jnp.mean(p),
                "grad_norm": jnp.sqrt(jnp.sum(rl * rl)), "loss": -jnp.sum(ctx["weights"] * p)}

    return engine.Model(grad=grad, observe=observe, update_aux=update_aux, uses_lr=True,
                        stochastic=objective == "reinforce")


class PolicyGradientFamily(Family):
    """Softmax policy finetuning as a family: primary field ``p`` (n,), each input's probability of its correct
    output (fixed point 1); also ``reward_std`` (n,), ``reward_mean``, ``grad_norm`` (of the RL objective)
    and ``loss`` (-sum_i w_i p_i).  Theory: the closed forms of the tabular model (module docstring) where
    they apply (:meth:`PolicyGradientProblem.tabular_theory_applies`).  Configuration:
    :class:`PolicyGradientConfig`."""

    name = "policy_gradient"
    problem_type = PolicyGradientProblem
    primary = "p"
    config = PolicyGradientConfig

    def shape(self, problem):
        return {"n": problem.n, "d": problem.X.shape[1], "K": problem.n_outputs}

    def model(self, problem, form, config):
        return _model(config.objective, config.samples)

    def initial_state(self, problem, key, form, config):
        return {"W": np.array(problem.W0)}, {"clock": np.zeros(())}

    def context(self, problem, form, config):
        onehot = np.zeros((problem.n, problem.n_outputs))
        onehot[np.arange(problem.n), problem.target] = 1.0
        ctx = {"X": problem.X, "onehot": onehot, "weights": problem.weights}
        if config.objective == "sft_then_rl":
            m = math.ceil((1.0 if config.sft_fraction is None else float(config.sft_fraction)) * problem.n - 1e-12)
            ctx.update(sft_mask=(np.arange(problem.n) < max(m, 1)).astype(float), sft_time=float(config.sft_time))
        return ctx

    def theory(self, problem, config=None):
        config = PolicyGradientConfig() if config is None else config
        why = problem.tabular_theory_applies()
        fp = np.ones(problem.n)
        if config.objective == "reinforce":     # sampled: its mean follows "rl", a run does not
            return Theory(fixed_point=fp)
        if why:                                 # no closed form: the critical times say why when asked
            return Theory(fixed_point=fp, critical_times=lambda fraction: escape_times(problem, config.objective,
                                                                                       fraction=fraction))
        return Theory(trajectory=lambda times: _solve(problem, config, times), fixed_point=fp,
                      critical_times=lambda fraction: escape_times(problem, config.objective, fraction=fraction,
                                                                   sft_time=config.sft_time,
                                                                   sft_fraction=config.sft_fraction))

    def example(self):
        prob = PolicyGradientProblem.tabular(4, [0.2, 0.05])
        t_end = 1.3 * float(escape_times(prob, "rl").max())
        lr = 0.02
        return Example(problem=prob, lr=lr, steps=int(t_end / lr), short_steps=int(0.2 * escape_times(prob, "rl").min() / lr),
                       diverging_lr=None, options={"objective": "rl"})   # |grad J| <= sum_i w_i: it cannot diverge


POLICY_GRADIENT = register(PolicyGradientFamily(), default_for=(PolicyGradientProblem,))


# ---------------------------------------------------------------------------------------- closed forms
def _G_rl(z):
    return 2.0 * np.sinh(z) + 2.0 * z


def _H_sft(z):
    return z + np.exp(z)


def _invert(F, dF, target, guess, iters=100):
    """z with F(z) = target (F increasing), Newton from ``guess`` (vectorised), to float64 rounding."""
    z = np.array(guess, float)
    for _ in range(iters):
        step = (F(z) - target) / dF(z)
        z = z - step
        if np.all(np.abs(step) <= 4e-16 * np.maximum(1.0, np.abs(z))):
            break
    return z


def _z_rl(z0, ct):
    """Logit after gradient-flow time t of RL (ct = c t), from z0: 2 sinh z + 2 z = G(z0) + ct."""
    target = _G_rl(z0) + ct
    return _invert(_G_rl, lambda z: 2.0 * np.cosh(z) + 2.0, target, np.arcsinh(target / 2.0))


def _z_sft(z0, ct):
    """Logit after time t of SFT: z + e^z = H(z0) + ct, i.e. z = C - omega(C) (Wright's omega), polished by
    Newton (the subtraction loses digits when C is large)."""
    from scipy.special import wrightomega
    C = _H_sft(z0) + ct
    guess = np.where(C < 30, C - np.real(wrightomega(np.minimum(C, 30))), np.log(np.maximum(C, 1.0)))
    return _invert(_H_sft, lambda z: 1.0 + np.exp(z), C, guess)


def _sigmoid(z):
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def _logit0(problem):
    p0 = problem.p0()
    return np.log(p0) - np.log1p(-p0)


def _phases(problem, objective, sft_time, sft_fraction):
    """Per input: (rule before the switch, switch time, rule after), rules "rl", "sft" or None (no motion)."""
    n = problem.n
    if objective in ("rl", "sft"):
        return [(objective, np.inf, objective)] * n
    m = max(math.ceil((1.0 if sft_fraction is None else float(sft_fraction)) * n - 1e-12), 1)
    return [("sft" if i < m else None, float(sft_time), "rl") for i in range(n)]


def _advance(rule, z, ct):
    if rule is None:
        return z
    return (_z_rl if rule == "rl" else _z_sft)(z, ct)


def _solve(problem, config, times):
    t = check_array("times", times, ndim=1)
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    c = problem.c
    w = problem.weights
    z0 = _logit0(problem)
    out = np.empty((t.size, problem.n))
    for i, (before, t_s, after) in enumerate(_phases(problem, config.objective, config.sft_time, config.sft_fraction)):
        tb = np.minimum(t, t_s)
        zb = _advance(before, np.full(t.size, z0[i]), c * w[i] * tb)
        if np.isfinite(t_s):
            zs = _advance(before, np.array([z0[i]]), c * w[i] * t_s)[0]
            za = _advance(after, np.full(t.size, zs), c * w[i] * np.maximum(t - t_s, 0.0))
            zb = np.where(t > t_s, za, zb)
        out[:, i] = _sigmoid(zb)
    std = np.sqrt(out * (1 - out))
    fields = {"p": out, "reward_std": std, "reward_mean": out.mean(axis=1),
              "grad_norm": np.sqrt(c * np.sum((w * std ** 2) ** 2, axis=1)), "loss": -(out * w).sum(axis=1)}
    return Trajectory(t=t, fields=fields, kind="theory", model="policy_gradient", problem=problem, method="exact",
                      primary="p", fixed_point=np.ones(problem.n),
                      settings={"units": "gf", "objective": config.objective, **versions()})


def escape_times(problem, objective="rl", *, fraction=0.5, sft_time=None, sft_fraction=None):
    """(n,) gradient-flow time at which each input's p reaches ``fraction`` (the closed forms, module
    docstring; 0 where p0 >= fraction).  RL: [G(z) / c]_{z0}^{z1}, G(z) = 2 sinh z + 2 z, i.e.
    (1/c) [-1/p + 1/(1 - p) + 2 ln(p / (1 - p))]_{p0}^{p1}; SFT: [z + e^z]/c, i.e.
    (1/c) [ln(p / (1 - p)) + 1/(1 - p)]_{p0}^{p1}; per-input weights w_i divide the times.  Public as
    ``dy.critical_times(problem, objective, fraction=...)``; refused where the closed forms do not apply."""
    check_instance("problem", problem, PolicyGradientProblem)
    check_choice("objective", objective, {"rl", "sft", "sft_then_rl"})
    fraction = check_fraction("fraction", fraction)
    why = problem.tabular_theory_applies()
    if why:
        raise ValueError(f"no closed form for this problem: {why}; simulate the flow (method='flow') instead")
    c, w = problem.c, problem.weights
    z0, z1 = _logit0(problem), math.log(fraction) - math.log1p(-fraction)
    out = np.zeros(problem.n)
    with np.errstate(divide="ignore"):
        for i, (before, t_s, after) in enumerate(_phases(problem, objective, sft_time, sft_fraction)):
            if z0[i] >= z1:
                continue
            rate = c * w[i]
            if rate == 0:
                out[i] = np.inf
                continue
            F = {"rl": _G_rl, "sft": _H_sft}
            if not np.isfinite(t_s):
                out[i] = (F[before](z1) - F[before](z0[i])) / rate
                continue
            zs = _advance(before, np.array([z0[i]]), rate * t_s)[0]
            if before is not None and zs >= z1:
                out[i] = (F[before](z1) - F[before](z0[i])) / rate
            else:
                out[i] = t_s + (F[after](z1) - F[after](zs)) / rate
    return out


def simulate_policy_gradient(problem, objective="rl", *, stepper=None, lr=None, steps=None, method=None, times=None,
                             t_max=None, rtol=None, atol=None, solver=None, sft_fraction=None, sft_time=None, samples=16,
                             record_every=None, record_log=None, runs=1, key=0, dtype=None, optimizer=None,
                             progress=None, on_divergence="raise"):
    """Gradient ascent on the objective (module docstring) by gradient descent (``lr``, ``steps``) or the exact
    flow (``method="flow"``).  Returns .t, .p (T, n), .reward_std (T, n), .reward_mean, .grad_norm, .loss."""
    return frontend.simulate(POLICY_GRADIENT, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer,
                             options={"objective": objective, "sft_fraction": sft_fraction, "sft_time": sft_time,
                                      "samples": samples}, desc="policy_gradient")


def solve_policy_gradient(problem, objective="rl", *, times, sft_fraction=None, sft_time=None):
    """The closed-form p_i(t) of the tabular model at ``times`` (module docstring), with reward std, mean,
    the RL gradient norm sqrt(c sum_i (w_i sigma_i^2)^2) and the loss.  Refused (naming why) where the closed
    forms do not apply (shared features, unequal wrong-output logits)."""
    check_instance("problem", problem, PolicyGradientProblem)
    check_choice("objective", objective, {"rl", "sft", "sft_then_rl"})
    why = problem.tabular_theory_applies()
    if why:
        raise ValueError(f"no closed form for this problem: {why}; simulate the flow (method='flow') instead")
    config = PolicyGradientConfig(objective=objective, sft_fraction=sft_fraction, sft_time=sft_time)
    return _solve(problem, config, times)
