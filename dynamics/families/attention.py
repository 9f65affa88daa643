"""Attention with diagonal weights (Abbe, Boix-Adsera, Bengio, Littwin, Susskind 2023) and dense heads.

Diagonal head on tokens Z (N x d):  Attn(Z) = softmax(Z diag(q) Z^T) Z diag(o),
q = w_K * w_Q (so W_K W_Q^T = diag(q)) and o = w_V * w_O (W_V W_O^T = diag(o)).  Layers add their
heads to a residual stream, Z^(l+1) = Z^l + sum_h Attn_lh(Z^l); the model's output is Z^L - Z^0 and
the loss is (1/2M) sum_m ||output(Z_m) - Y_m||_F^2.  It is a u * v model with
u = (w_K, w_V), v = (w_Q, w_O) per head, so ``hadamard`` gives the simulators and the stage
algorithm: rank(Delta W_K W_Q^T) + rank(Delta W_V W_O^T) grows by at most one per stage, and stage 1
always activates a VO coordinate (with o = 0 the output is 0 whatever q). theory/attention.md.

Dense heads (``simulate_dense_attention``): full W_K, W_Q, W_V, W_O (d x d_head) trained by any
optax optimizer through the shared engine, recording the singular values and the stable rank
||Delta M||_F^2 / ||Delta M||_2^2 of Delta W_K W_Q^T and Delta W_V W_O^T.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..core import engine, frontend
from ..core.config import Config, configclass, number
from ..core.family import Example, Family, register, register_problem
from ..core.keys import as_key, is_key_sequence
from ..core.resources import check_memory
from ..core.validation import check_array, check_int, check_positive, check_instance
from .hadamard.family import HadamardFamily, simulate_uv
from .hadamard.model import HadamardProblem, check_alpha
from .hadamard.stages import stages as _stages

__all__ = ["AttentionProblem", "DenseAttentionConfig", "simulate_attention", "attention_stages", "simulate_dense_attention", "rotated_teacher",
           "diagonal_forward"]


def diagonal_forward(beta, Z, layers, heads):
    """Output Z^L - Z^0 of the diagonal attention model; beta has layout (layers, heads, 2, d)
    flattened, [..., 0, :] = q (KQ), [..., 1, :] = o (VO). Z: (N, d) or (M, N, d)."""
    d = Z.shape[-1]
    B = beta.reshape(layers, heads, 2, d)
    X = Z
    for l in range(layers):
        upd = 0.0
        for h in range(heads):
            q, o = B[l, h, 0], B[l, h, 1]
            logits = jnp.einsum("...nd,...md->...nm", X * q, X)
            A = jax.nn.softmax(logits, axis=-1)
            upd = upd + jnp.einsum("...nm,...md->...nd", A, X) * o
        X = X + upd
    return X - Z


@register_problem
@dataclass(frozen=True, eq=False)
class AttentionProblem(HadamardProblem):
    """Diagonal attention regression: tokens Z (M, N, d), targets Y (M, N, d), ``heads`` per layer,
    ``layers``, init scale alpha, unit init directions u0 = (w_K, w_V), v0 = (w_Q, w_O) of length
    p = 2 d heads layers (default: i.i.d. N(0, 1) from ``key``). Build a toy with ``teacher_student``."""

    Z: np.ndarray
    Y: np.ndarray
    heads: int = 1
    layers: int = 1
    init_scale: float = 1e-2
    u0: np.ndarray | None = None
    v0: np.ndarray | None = None
    key: int = 0
    source: dict = field(default_factory=dict)
    name = "attention"

    def __post_init__(self):
        Z = check_array("Z", self.Z, ndim=3)
        Y = check_array("Y", self.Y, ndim=3)
        if Y.shape != Z.shape:
            raise ValueError(f"Y must have the shape of Z {Z.shape}, got {Y.shape}")
        heads = check_int("heads", self.heads, minimum=1)
        layers = check_int("layers", self.layers, minimum=1)
        _check_sizes(1, 1, Z.shape[-1], heads, layers)
        p = 2 * Z.shape[-1] * heads * layers
        k1, k2 = jax.random.split(as_key(self.key))
        u0 = np.asarray(jax.random.normal(k1, (p,), dtype=jnp.float64)) if self.u0 is None else \
            check_array("u0", self.u0, shape=(p,))
        v0 = np.asarray(jax.random.normal(k2, (p,), dtype=jnp.float64)) if self.v0 is None else \
            check_array("v0", self.v0, shape=(p,))
        for name, val in (("Z", Z), ("Y", Y), ("heads", heads), ("layers", layers), ("u0", u0), ("v0", v0),
                          ("init_scale", check_alpha(self.init_scale))):
            object.__setattr__(self, name, val)

    @property
    def d(self):
        return self.Z.shape[-1]

    @property
    def data(self):
        # the zero arrays carry the static layer/head counts through jit as shapes
        return {"Z": self.Z, "Y": self.Y, "layers": np.zeros(self.layers), "heads": np.zeros(self.heads)}

    @staticmethod
    def loss_fn(beta, data):
        out = diagonal_forward(beta, data["Z"], data["layers"].shape[0], data["heads"].shape[0])
        r = out - data["Y"]
        return 0.5 * jnp.mean(jnp.sum(r * r, axis=(-2, -1)))

    def split(self, beta):
        """beta (..., p) -> (q, o), each (..., layers, heads, d)."""
        B = np.asarray(beta).reshape(np.shape(beta)[:-1] + (self.layers, self.heads, 2, self.d))
        return B[..., 0, :], B[..., 1, :]

    def ranks(self, beta, tol=1e-9):
        """(rank of Delta W_K W_Q^T, rank of Delta W_V W_O^T) summed over heads and layers, for the
        diagonal model in the alpha -> 0 limit: the number of non-zero q and o coordinates."""
        q, o = self.split(beta)
        return (np.abs(q) > tol).sum(axis=(-3, -2, -1)), (np.abs(o) > tol).sum(axis=(-3, -2, -1))

    def stage_extras(self, st):
        kq, vo = self.ranks(st.points)
        first_vo = bool(st.n_stages == 0 or any(
            i % (2 * self.d) >= self.d for i in st.entered[1]))
        return {"ranks": np.stack([kq, vo], axis=-1), "first_stage_is_vo": first_vo, "d": self.d}

    @classmethod
    def teacher_student(cls, n_samples=300, n_tokens=6, d=5, *, heads=1, layers=1, q_star=None,
                        o_star=None, noise=0.0, init_scale=1e-2, key=0):
        """Z ~ N(0, 1) i.i.d., Y = teacher output + noise. q_star, o_star: (layers, heads, d) arrays
        (default: the toy of theory/attention.md, q* = (2, 0, 0, -1.5, 0), o* = (1.5, -1, 0, 0, 0.7)
        in every head, truncated or zero-padded to d)."""
        n_samples = check_int("n_samples", n_samples, minimum=1)
        n_tokens = check_int("n_tokens", n_tokens, minimum=1)
        d = check_int("d", d, minimum=1)
        heads = check_int("heads", heads, minimum=1)
        layers = check_int("layers", layers, minimum=1)
        noise = check_positive("noise", noise, strict=False)
        _check_sizes(n_samples, n_tokens, d, heads, layers)

        def default(vals):
            v = np.zeros(d)
            v[:min(d, len(vals))] = vals[:d]
            return np.broadcast_to(v, (layers, heads, d)).copy()

        q_star = default([2.0, 0.0, 0.0, -1.5, 0.0]) if q_star is None else \
            check_array("q_star", q_star, shape=(layers, heads, d))
        o_star = default([1.5, -1.0, 0.0, 0.0, 0.7]) if o_star is None else \
            check_array("o_star", o_star, shape=(layers, heads, d))
        k1, k2, k3 = jax.random.split(as_key(key), 3)
        Z = np.asarray(jax.random.normal(k1, (n_samples, n_tokens, d), dtype=jnp.float64))
        beta_star = np.stack([q_star, o_star], axis=-2).reshape(-1)
        Y = np.asarray(diagonal_forward(jnp.asarray(beta_star), jnp.asarray(Z), layers, heads))
        if noise:
            Y = Y + noise * np.asarray(jax.random.normal(k2, Y.shape, dtype=jnp.float64))
        seed = int(jax.random.randint(k3, (), 0, 2 ** 31 - 1))
        return cls(Z=Z, Y=Y, heads=heads, layers=layers, init_scale=init_scale, key=seed,
                   source={"q_star": q_star.tolist(), "o_star": o_star.tolist(), "noise": noise})


def _check_sizes(n_samples, n_tokens, d, heads, layers):
    """Refuse, before allocating, data or parameters beyond the memory budget (naming the arguments)."""
    check_memory(f"the tokens and targets (n_samples x n_tokens x d = {n_samples:,} x {n_tokens:,} x {d:,})",
                 4 * 8 * n_samples * n_tokens * d, hint="fewer samples, tokens or a smaller d")
    check_memory(f"the parameters (2 x d x heads x layers = 2 x {d:,} x {heads:,} x {layers:,}, and their "
                 "d x d products)", 16 * 8 * d * d * heads * layers, hint="fewer heads or layers, or a smaller d")
    # every forward pass forms each head's attention scores softmax(Z diag(q) Z^T): n_tokens^2 per sample
    check_memory(f"the attention scores (n_samples x n_tokens^2 x heads = {n_samples:,} x {n_tokens:,}^2 x "
                 f"{heads:,}, a few copies in a forward pass)", 4 * 8 * n_samples * n_tokens * n_tokens * heads,
                 hint="fewer tokens or samples")


def rotated_teacher(n_samples=200, n_tokens=6, d=6, *, kq=(3.0, 2.0, 1.2), vo=(2.5, 1.5, 0.8), noise=0.0,
                    init_scale=1e-2, key=0):
    """An AttentionProblem whose teacher is one *dense* head: W_K* W_Q*^T = U_1 diag(kq) U_2^T and
    W_V* W_O*^T = U_3 diag(vo) U_4^T with random orthogonal U_i (d x d, from ``key``), so both products
    have rank len(kq), len(vo) and no preferred basis (the diagonal toy of ``teacher_student`` is the
    case U_i = I).  Y = the teacher's output (``dense_forward``, residual removed) + noise.

    For the dense heads (``simulate_dense_attention``), whose learned perturbation's singular values can
    be compared with kq and vo.  (The diagonal student's stage theory still describes a *diagonal*
    student on these data, which cannot represent the teacher.)"""
    n_samples = check_int("n_samples", n_samples, minimum=1)
    n_tokens = check_int("n_tokens", n_tokens, minimum=1)
    d = check_int("d", d, minimum=1)
    kq = check_array("kq", kq, ndim=1)
    vo = check_array("vo", vo, ndim=1)
    for name, sv in (("kq", kq), ("vo", vo)):
        if sv.size < 1 or sv.size > d or np.any(sv <= 0):
            raise ValueError(f"{name} must hold 1 to d = {d} positive singular values, got {sv.tolist()}")
    noise = check_positive("noise", noise, strict=False)
    _check_sizes(n_samples, n_tokens, d, 1, 1)
    from ..core.linalg import random_rotation
    keys = jax.random.split(as_key(key), 6)
    U = [random_rotation(d, key=k) for k in keys[:4]]
    r1, r2 = kq.size, vo.size
    head = {"WK": U[0][:, :r1] * np.sqrt(kq), "WQ": U[1][:, :r1] * np.sqrt(kq),
            "WV": U[2][:, :r2] * np.sqrt(vo), "WO": U[3][:, :r2] * np.sqrt(vo)}
    Z = np.asarray(jax.random.normal(keys[4], (n_samples, n_tokens, d), dtype=jnp.float64))
    Y = 0.0
    # one head of each product's rank (a rank mismatch between the two products is fine: separate heads
    # would not be; d_head = max rank, zero-padded)
    r = max(r1, r2)
    pad = {k: np.pad(v, ((0, 0), (0, r - v.shape[1])))[None, None] for k, v in head.items()}
    Y = np.asarray(dense_forward({k: jnp.asarray(v) for k, v in pad.items()}, jnp.asarray(Z), 1, 1))
    if noise:
        Y = Y + noise * np.asarray(jax.random.normal(keys[5], Y.shape, dtype=jnp.float64))
    seed = int(jax.random.randint(keys[5], (), 0, 2 ** 31 - 1))
    return AttentionProblem(Z=Z, Y=Y, heads=1, layers=1, init_scale=init_scale, key=seed,
                            source={"teacher": "rotated", "kq": kq.tolist(), "vo": vo.tolist(), "noise": noise})


def attention_stages(problem: AttentionProblem, **kw):
    """Stage algorithm for diagonal attention (fast flow integrated numerically); the result's
    ``ranks`` (K+1, 2) holds (rank Delta W_K W_Q^T, rank Delta W_V W_O^T) on each plateau."""
    check_instance("problem", problem, AttentionProblem)
    return _stages(problem, **kw)


def _example():
    # well-separated stages at alpha = 1e-16 (plateau middles within 0.1 of the prediction; short
    # plateaus at larger alpha are crossed late, by ~1/log(1/alpha))
    prob = AttentionProblem.teacher_student(60, 4, 3, init_scale=1e-16, key=1)
    dtau = 0.02 / prob.log_inv_alpha
    small = AttentionProblem.teacher_student(60, 4, 3, init_scale=1e-3, key=1)
    t_end = 1.15 * float(_stages(small).times[-1]) * small.log_inv_alpha
    return Example(problem=prob, lr=dtau, steps=int(np.ceil(1.15 / dtau)), short_steps=int(0.2 / dtau),
                   diverging_lr=50.0, method="dual_rk4",
                   halving={"problem": small, "lr": 1e-3, "steps": int(t_end / 1e-3)})


ATTENTION = register(HadamardFamily("attention", AttentionProblem, example=_example))


def simulate_attention(problem, *, stepper=None, method=None, lr=None, steps=None, tau_max=None, dtau=None, times=None,
                       t_max=None, rtol=None, atol=None, solver=None, record_every=None, record_log=None, runs=1, key=0,
                       dtype=None, optimizer=None, progress=None, on_divergence="raise"):
    """Diagonal attention trained by gradient descent on (u, v) (``method="gd"``) or the exact
    small-init integrator (``method="dual"``); arguments as :func:`dynamics.simulate_dln`.
    The reference is ``dy.stages(problem)``."""
    return simulate_uv(ATTENTION, problem, stepper=stepper, method=method, lr=lr, steps=steps, tau_max=tau_max,
                       dtau=dtau, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                       record_every=record_every, record_log=record_log, runs=runs, key=key, dtype=dtype,
                       optimizer=optimizer, progress=progress, on_divergence=on_divergence)


# ------------------------------------------------------------------------------------ dense heads
def dense_forward(params, Z, layers, heads):
    """Dense multi-head attention with residual stream; params W* of shape (layers, heads, d, d_head)."""
    X = Z
    for l in range(layers):
        upd = 0.0
        for h in range(heads):
            K, Q = params["WK"][l, h], params["WQ"][l, h]
            V, O = params["WV"][l, h], params["WO"][l, h]
            logits = jnp.einsum("...nd,...md->...nm", X @ K, X @ Q)
            A = jax.nn.softmax(logits, axis=-1)
            upd = upd + A @ X @ V @ O.T
        X = X + upd
    return X - Z


def _stable_rank(sv):
    top = sv[..., 0] ** 2
    return jnp.where(top > 0, jnp.sum(sv ** 2, axis=-1) / jnp.where(top > 0, top, 1.0), 0.0)


@functools.lru_cache(maxsize=16)
def _dense_model(layers, heads):
    def loss(params, data):
        r = dense_forward(params, data["Z"], layers, heads) - data["Y"]
        return 0.5 * jnp.mean(jnp.sum(r * r, axis=(-2, -1)))

    vg = jax.value_and_grad(loss)

    def grad(params, aux, ctx, key):
        return vg(params, ctx)

    def observe(params, aux, ctx):
        kq = jnp.einsum("lhia,lhja->lhij", params["WK"], params["WQ"]) - aux["KQ0"]
        vo = jnp.einsum("lhia,lhja->lhij", params["WV"], params["WO"]) - aux["VO0"]
        sk = jnp.linalg.svd(kq, compute_uv=False)
        sv = jnp.linalg.svd(vo, compute_uv=False)
        return {"loss": loss(params, ctx), "sv_kq": sk, "sv_vo": sv,
                "stable_rank_kq": _stable_rank(sk), "stable_rank_vo": _stable_rank(sv)}

    return engine.Model(grad=grad, observe=observe, stochastic=False)


@configclass
class DenseAttentionConfig(Config):
    """The configuration of dense attention heads.

    d_head : the heads' width (default: the token dimension d; structural).
    init_scale : the default init N(0, 1/d) times this (a per-run number: ``simulate_dense_attention``'s
        ``init_scales`` gives one per run).
    """

    d_head: int | None = None
    init_scale: float = number(1.0, doc="the init's scale")

    def __post_init__(self):
        super().__post_init__()
        if self.d_head is not None:
            object.__setattr__(self, "d_head", check_int("d_head", self.d_head, minimum=1))
        if self.init_scale is None or np.any(np.asarray(self.init_scale) <= 0):
            raise ValueError(f"init_scale must be > 0, got {self.init_scale!r}")

    def check(self, family, problems, stepper):
        p = problems[0]
        out = self if self.d_head is not None else dataclasses.replace(self, d_head=p.d)
        # W_K, W_Q, W_V, W_O (layers, heads, d, d_head) of a run, several copies in a step
        check_memory(f"dense heads of width d_head = {out.d_head:,} ({p.layers} layers x {p.heads} heads x d = {p.d})",
                     8 * 8 * p.layers * p.heads * p.d * out.d_head, hint="a smaller d_head")
        return out


class DenseAttentionFamily(Family):
    """Dense heads (W_K, W_Q, W_V, W_O full, d x d_head) on an AttentionProblem's data; no theory.
    Configuration :class:`DenseAttentionConfig`: ``d_head`` and the per-run number ``init_scale`` (the default init N(0, 1/d) times it); the directions come from each
    run's key (``simulate_dense_attention`` gives the runs at several scales one key, so that they start
    from the same directions)."""

    name = "dense_attention"
    problem_type = AttentionProblem
    primary = "loss"
    config = DenseAttentionConfig

    def shape(self, problem):
        return {"token shape": problem.Z.shape, "heads": problem.heads, "layers": problem.layers}

    def model(self, problem, form, config):
        return _dense_model(problem.layers, problem.heads)

    def initial_state(self, problem, key, form, config):
        base = as_key(key)
        L, H, d, dh = problem.layers, problem.heads, problem.d, config.d_head
        scale = float(config.init_scale)
        params = {name: scale * np.asarray(jax.random.normal(jax.random.fold_in(base, j), (L, H, d, dh),
                                                              dtype=jnp.float64)) / np.sqrt(d)
                  for j, name in enumerate(("WK", "WQ", "WV", "WO"))}
        aux = {"KQ0": np.einsum("lhia,lhja->lhij", params["WK"], params["WQ"]),
               "VO0": np.einsum("lhia,lhja->lhij", params["WV"], params["WO"])}
        return params, aux

    def context(self, problem, form, config):
        return {"Z": problem.Z, "Y": problem.Y}

    def example(self):
        prob = AttentionProblem.teacher_student(30, 4, 3, key=1)
        return Example(problem=prob, lr=0.05, steps=200, short_steps=5, diverging_lr=1e4,
                       has_theory=False, halving={"lr": 0.01, "steps": 1000}, random_init={})


DENSE_ATTENTION = register(DenseAttentionFamily())


def simulate_dense_attention(problem: AttentionProblem, *, stepper=None, init_scales=(1.0,), d_head=None, lr=None,
                             steps=None, method=None, times=None, t_max=None, rtol=None, atol=None, solver=None,
                             optimizer=None, record_every=None, record_log=None, runs=1, key=0, dtype=None,
                             progress=None, on_divergence="raise"):
    """Train dense heads (W_K, W_Q, W_V, W_O full, d x d_head) on ``problem``'s data from the default
    init N(0, 1/d) times each of ``init_scales`` (one run per scale, batched).  The init's directions come
    from ``key``: with one key and one run per scale, every scale starts from the same directions (the
    key is given to each); ``runs=R`` (one scale) or a sequence of keys gives each run its own.

    ``method="flow"`` integrates the plain gradient flow of the same parameters (no optimizer: Adam
    has no flow of its own), on ``times`` / ``t_max`` or the grid lr * step.
    Returns a Trajectory with .t (steps x lr), .loss (R, T), .sv_kq / .sv_vo (R, T, layers, heads,
    d) singular values of Delta W_K W_Q^T and Delta W_V W_O^T (Delta = change since init), and
    .stable_rank_kq / .stable_rank_vo (R, T, layers, heads).
    """
    if stepper is None and optimizer is None and (method is None or (isinstance(method, str) and method == "gd")):
        optimizer = "adam"          # dense heads train with Adam by default (the paper's setting)
    scales = check_array("init_scales", init_scales, ndim=1)
    if scales.size < 1:
        raise ValueError("init_scales must hold at least one init scale, got an empty list")
    if np.any(scales <= 0):
        raise ValueError(f"init_scales must be > 0, got {scales}")
    runs = check_int("runs", runs, minimum=1)
    if runs == 1 and scales.size > 1 and not is_key_sequence(key):
        key = [key] * scales.size          # the same directions at every scale
    return frontend.simulate(DENSE_ATTENTION, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer, options={"d_head": d_head},
                             per_run={"init_scale": scales}, desc="dense attention")
