"""The identity-initialised prediction head (Wen & Li 2022): substitution and acceleration.

Data (theory/heads.md sec. 4): each sample carries one feature v_l (l = 1 strong, 2 weak, orthonormal)
with a shared sign z = +-1 on its feature patches, X_p = z alpha_l v_l, and Gaussian noise patches
X_p ~ N(0, noise_std^2 I) elsewhere.  Views: complementary Bernoulli(1/2) patch masks.
Network: neurons f_j(X) = sum_p <w_j, X_p>^3, W = (w_1, ..., w_k) in R^(d x k).
Head: E = I + off-diagonal entries (trainable, at their own learning rate lr * head_lr_ratio).
Loss with per-coordinate BatchNorm (no affine): L = -sum_j batchcorr(F_j(X1), SG(f_j(X2))), F = E f;
without BatchNorm: L = 1/2 E||F(X1) - SG(f(X2))||^2.  Simulated by the shared engine with fresh
samples every step; no closed form.  Measured: feature overlaps cos(w_j, v_l), the head's off-diagonal
entries, and the phase times (``head_phases``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..core import engine, frontend
from ..core.config import Config, configclass
from ..core.family import Example, Family, register, register_problem
from ..core.steppers import AbstractStepper, Flow
from ..core.keys import as_key
from ..core.validation import check_array, check_bool, check_fraction, check_int, check_positive

__all__ = ["HeadProblem", "HeadConfig", "simulate_head", "head_phases"]


@register_problem
@dataclass(frozen=True, eq=False)
class HeadProblem:
    """Settings of the toy (defaults: the configuration documented in theory/heads.md sec. 4).

    overlaps: (neurons, 2) initial cos(w_j, v_l); the rest of each unit-norm w_j is random and
    orthogonal to v_1, v_2 (from ``key``). noise_bank: noise patches are drawn (with replacement)
    from a fixed bank of this many Gaussian vectors, which is ~10x faster than fresh Gaussians on a
    CPU; 0 draws fresh ones every step."""

    d: int = 64
    patches: int = 16
    feature_patches: int = 4
    alpha: tuple = (4.0, 2.5)
    noise_std: float | None = None
    batch: int = 512
    overlaps: tuple = ((0.10, 0.05), (0.06, 0.08))
    head_lr_ratio: float = 10.0
    eval_batch: int = 2048
    noise_bank: int = 32768
    key: int = 0
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        d = check_int("d", self.d, minimum=2)
        P = check_int("patches", self.patches, minimum=2)
        fp = check_int("feature_patches", self.feature_patches, minimum=1)
        if fp >= P:
            raise ValueError(f"feature_patches must be < patches = {P}, got {fp}")
        alpha = check_array("alpha", self.alpha, shape=(2,))
        if np.any(alpha <= 0):
            raise ValueError(f"alpha must be > 0, got {alpha}")
        ov = check_array("overlaps", self.overlaps, ndim=2)
        if ov.shape[1] != 2 or ov.shape[0] < 1:
            raise ValueError(f"overlaps must have shape (neurons, 2), got {ov.shape}")
        if np.any(np.sum(ov ** 2, axis=1) >= 1):
            raise ValueError("each neuron's overlaps must satisfy c1^2 + c2^2 < 1 (unit-norm neurons)")
        noise = 1.0 / np.sqrt(d) if self.noise_std is None else check_positive("noise_std", self.noise_std,
                                                                                 strict=False)
        for k, v in (("d", d), ("patches", P), ("feature_patches", fp), ("alpha", tuple(alpha.tolist())),
                     ("overlaps", tuple(map(tuple, ov.tolist()))), ("noise_std", float(noise)),
                     ("batch", check_int("batch", self.batch, minimum=2)),
                     ("eval_batch", check_int("eval_batch", self.eval_batch, minimum=2)),
                     ("noise_bank", check_int("noise_bank", self.noise_bank, minimum=0)),
                     ("head_lr_ratio", check_positive("head_lr_ratio", self.head_lr_ratio))):
            object.__setattr__(self, k, v)
        from ..core.resources import check_memory
        check_memory(f"the noise bank and batches (noise_bank x d = {self.noise_bank:,} x {d:,}; (batch + eval_batch) x "
                     f"patches x d = ({self.batch:,} + {self.eval_batch:,}) x {P:,} x {d:,})",
                     4 * (self.noise_bank * d + 4 * (self.batch + self.eval_batch) * P * d), hint="smaller sizes")

    @property
    def neurons(self):
        return len(self.overlaps)

    def init_W(self):
        """Unit-norm neurons with the prescribed overlaps with v_1 = e_1, v_2 = e_2."""
        k = self.neurons
        g = np.array(jax.random.normal(as_key(self.key), (self.d, k), dtype=jnp.float64))
        g[:2] = 0.0
        g /= np.linalg.norm(g, axis=0, keepdims=True)
        ov = np.asarray(self.overlaps)
        W = np.sqrt(1 - np.sum(ov ** 2, axis=1))[None, :] * g
        W[0], W[1] = ov[:, 0], ov[:, 1]
        return W


def _sample(key, B, prob):
    """Two complementary views of B samples: (X1, X2) each (B, P, d)."""
    d, P = prob["d"], prob["P"]
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    which = jax.random.bernoulli(k1, 0.5, (B,)).astype(jnp.int32)           # 0: strong v1, 1: weak v2
    sign = jnp.where(jax.random.bernoulli(k2, 0.5, (B,)), 1.0, -1.0)
    is_feat = jax.random.uniform(k3, (B, P)).argsort(axis=1) < prob["fp"]   # exactly fp feature patches
    amp = jnp.where(which == 0, prob["alpha"][0], prob["alpha"][1]) * sign
    feat = jax.nn.one_hot(which, d, dtype=amp.dtype) * amp[:, None]          # (B, d)
    if "bank" in prob:      # noise patches drawn from a fixed bank of Gaussian vectors (fast)
        noise = prob["bank"][jax.random.randint(k4, (B, P), 0, prob["bank"].shape[0])]
    else:
        noise = prob["noise"] * jax.random.normal(k4, (B, P, d), dtype=prob["alpha"].dtype)
    X = jnp.where(is_feat[..., None], feat[:, None, :], noise)
    mask = jax.random.bernoulli(k5, 0.5, (B, P))[..., None]
    return X * mask, X * (~mask)


@functools.partial(jax.jit, static_argnames=("B", "d", "P", "fp", "noise"))
def _eval_views(key, alpha, *, B, d, P, fp, noise):
    """_sample compiled as one program (op by op, each random draw compiles its own)."""
    return _sample(key, B, {"d": d, "P": P, "fp": fp, "noise": noise, "alpha": alpha})


def _features(W, X):
    return jnp.sum((X @ W) ** 3, axis=1)                                     # (B, k)


def _bn(z):
    z = z - jnp.mean(z, axis=0)
    return z / jnp.sqrt(jnp.mean(z * z, axis=0) + 1e-12)


@functools.lru_cache(maxsize=16)
def _head_model(head, batchnorm, B, d, P, fp, full_batch=False):
    """The engine model of one structure; the numbers (the head's rate ratio, the noise level) come
    from the context, one per run, so a batch may vary them."""
    static = {"d": d, "P": P, "fp": fp}

    def loss_fn(params, X1, X2):
        W = params["W"]
        f1 = _features(W, X1)
        f2 = jax.lax.stop_gradient(_features(W, X2))
        if head:
            k = W.shape[1]
            E = jnp.eye(k) + params["E"] * (1.0 - jnp.eye(k))
            f1 = f1 @ E.T
        if batchnorm:
            return -jnp.sum(jnp.mean(_bn(f1) * _bn(f2), axis=0))
        return 0.5 * jnp.mean(jnp.sum((f1 - f2) ** 2, axis=1))

    def grad(params, aux, ctx, key):
        # full batch: the fixed evaluation batch (a deterministic loss, with a gradient flow)
        X1, X2 = (ctx["X1"], ctx["X2"]) if full_batch else _sample(key, B, {**ctx, **static})
        loss, g = jax.value_and_grad(loss_fn)(params, X1, X2)
        if head:
            g = {**g, "E": ctx["ratio"] * g["E"]}
        return loss, g

    def observe(params, aux, ctx):
        W = params["W"]
        cos = W[:2].T / jnp.linalg.norm(W, axis=0)[:, None]                  # (k, 2): cos(w_j, v_l)
        out = {"overlaps": cos, "loss": loss_fn(params, ctx["X1"], ctx["X2"]), "norms": jnp.linalg.norm(W, axis=0)}
        if head:
            k = W.shape[1]
            out["head_offdiag"] = params["E"][~np.eye(k, dtype=bool)]
        return out

    return engine.Model(grad=grad, observe=observe, stochastic=not full_batch)


@configclass
class HeadConfig(Config):
    """The configuration of the identity-initialised head toy.

    head : train the k x k head E (identity-initialised) between the encoder and the loss.
    batchnorm : BatchNorm the outputs before the loss.
    full_batch : train on the fixed evaluation batch (a deterministic loss, the one ``Flow`` integrates)
        instead of fresh samples every step (``Flow`` sets it).
    """

    head: bool = True
    batchnorm: bool = True
    full_batch: bool = False

    def __post_init__(self):
        super().__post_init__()
        for k in ("head", "batchnorm", "full_batch"):
            object.__setattr__(self, k, check_bool(k, getattr(self, k)))

    def check(self, family, problems, stepper):
        if isinstance(stepper, Flow):    # the flow of the expected loss has no closed form: the fixed batch's
            return dataclasses.replace(self, full_batch=True)
        return self

    def record(self, problem):
        return {"head": self.head, "batchnorm": self.batchnorm, "full_batch": self.full_batch,
                "head_lr_ratio": problem.head_lr_ratio}


class HeadFamily(Family):
    """The identity-initialised head toy as a family: primary field ``overlaps`` (k, 2); no theory.
    Configuration: :class:`HeadConfig` (``head``, ``batchnorm``, ``full_batch``). Fresh samples every step (the run key seeds them)
    unless ``full_batch``, which trains on the fixed evaluation batch (a deterministic loss: the one
    ``method="flow"`` integrates); the evaluation batch and the noise bank come from the problem's
    ``key``. ``simulate_head`` runs it in float32 by default."""

    name = "identity_head"
    problem_type = HeadProblem
    primary = "overlaps"
    config = HeadConfig

    def shape(self, problem):
        return {"d": problem.d, "patches": problem.patches, "feature_patches": problem.feature_patches,
                "batch": problem.batch, "neurons": problem.neurons, "eval_batch": problem.eval_batch,
                "noise_bank": problem.noise_bank}

    def model(self, problem, form, config):
        return _head_model(config.head, config.batchnorm, problem.batch, problem.d, problem.patches,
                           problem.feature_patches, config.full_batch)

    def initial_state(self, problem, key, form, config):
        params = {"W": problem.init_W()}
        if config.head:
            params["E"] = np.zeros((problem.neurons, problem.neurons))
        return params, {}

    def context(self, problem, form, config):
        base = as_key(problem.key)
        X1, X2 = _eval_views(jax.random.fold_in(base, 10_000), jnp.asarray(problem.alpha, dtype=jnp.float32),
                             B=problem.eval_batch, d=problem.d, P=problem.patches, fp=problem.feature_patches,
                             noise=problem.noise_std)
        ctx = {"alpha": np.asarray(problem.alpha), "X1": np.asarray(X1), "X2": np.asarray(X2),
               "ratio": np.asarray(float(problem.head_lr_ratio)), "noise": np.asarray(float(problem.noise_std))}
        if problem.noise_bank:
            ctx["bank"] = problem.noise_std * np.asarray(jax.random.normal(
                jax.random.fold_in(base, 20_000), (problem.noise_bank, problem.d), dtype=jnp.float32))
        return ctx

    def example(self):
        prob = HeadProblem(d=8, patches=4, feature_patches=1, batch=32, eval_batch=64, noise_bank=256)
        return Example(problem=prob, lr=0.02, steps=60, short_steps=5, diverging_lr=1e3, has_theory=False,
                       diverging_options={"batchnorm": False},   # the BatchNorm loss is bounded
                       halving={"lr": 0.005, "steps": 240, "options": {"full_batch": True}})


HEAD = register(HeadFamily())


def simulate_head(problem, *, stepper=None, head=True, batchnorm=True, lr=None, steps=None, full_batch=False,
                  method=None, times=None, t_max=None, rtol=None, atol=None, solver=None, record_every=None,
                  record_log=None, runs=1, key=0, dtype=None, optimizer=None, progress=None,
                  on_divergence="raise"):
    """SGD on the toy (fresh batches every step; W at ``lr``, the head's off-diagonals at
    ``lr * problem.head_lr_ratio``); without a ``stepper``, ``lr`` defaults to 0.02 and ``steps`` to
    8000.  Returns a Trajectory: .t = lr * step (gradient-flow time, as for every family),
    .overlaps (T, k, 2) cos(w_j, v_l), .head_offdiag (T, k(k-1)) when head, .loss on a fixed
    evaluation batch, .norms; the phase times (``head_phases``, in t) are in ``.settings["phases"]``.
    float32 by default for gradient descent (no theory to match; the sampling dominates the cost), float64
    for the flow; ``dy.simulate("identity_head", ...)`` defaults to float64 like every family."""
    if stepper is None:
        lr = 0.02 if lr is None else lr
        steps = 8000 if steps is None and times is None and t_max is None else steps
    adaptive = stepper.adaptive if isinstance(stepper, AbstractStepper) else (isinstance(method, str) and method == "flow")
    dtype = (np.float64 if adaptive else np.float32) if dtype is None else dtype   # a flow in float64
    traj = frontend.simulate(HEAD, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer,
                             options={"head": head, "batchnorm": batchnorm, "full_batch": full_batch},
                             desc="identity head")
    if not np.size(traj.t):
        return traj
    subs = [traj.run(i) for i in range(traj.n_runs)] if traj.batched else [traj]
    phases = [head_phases(sub) for sub in subs]
    return dataclasses.replace(traj, settings={**traj.settings, "phases": phases if traj.batched else phases[0]})


def head_phases(traj, *, threshold=0.2, back_fraction=0.1):
    """Phase times of one run (inf where a phase did not happen within the run, like a critical time
    that is never reached):

    strong: first time some neuron has cos(w, v_1) >= threshold;
    substitution: first time max |head off-diagonal| reaches half its peak (inf without a head);
    weak: first time some neuron has cos(w, v_2) >= threshold;
    back: first time after the peak that max |off-diagonal| <= back_fraction * peak.
    Also: weak_learned (bool), the neuron that learned v_2, and the peak off-diagonal value."""
    check_fraction("threshold", threshold)
    check_fraction("back_fraction", back_fraction)
    from ..core.trajectory import Trajectory
    from ..core.validation import check_instance
    check_instance("traj", traj, Trajectory, "a Trajectory from simulate_head")
    if "overlaps" not in traj.fields:
        raise ValueError(f"traj must be a simulate_head result (with overlaps), got a {traj.model} trajectory")
    t = np.asarray(traj.t)
    ov = np.abs(np.asarray(traj.overlaps))                  # (T, k, 2)
    if ov.ndim != 3:
        raise ValueError("head_phases takes one run: traj.run(i)")

    def first(mask):
        idx = np.nonzero(mask)[0]
        return float(t[idx[0]]) if idx.size else float("inf")

    out = {"strong": first(ov[:, :, 0].max(axis=1) >= threshold),
           "weak": first(ov[:, :, 1].max(axis=1) >= threshold),
           "weak_learned": bool(ov[-1, :, 1].max() >= threshold),
           "weak_neuron": int(np.argmax(ov[-1, :, 1])),
           "substitution": float("inf"), "back": float("inf"), "peak_offdiag": 0.0}
    if "head_offdiag" in traj.fields:
        e = np.abs(np.asarray(traj.head_offdiag)).max(axis=1)
        ipk = int(np.argmax(e))
        out["peak_offdiag"] = float(e[ipk])
        out["substitution"] = first(e >= 0.5 * e[ipk]) if e[ipk] > 0 else float("inf")
        after = np.nonzero((np.arange(t.size) > ipk) & (e <= back_fraction * e[ipk]))[0]
        out["back"] = float(t[after[0]]) if after.size else float("inf")
    return out
