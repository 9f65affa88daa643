"""Linear prediction heads in non-contrastive SSL (Tian, Chen & Ganguli 2021): linear BYOL / SimSiam.

Online W (n x n), linear predictor W_p (n x n), target W_a; X = E[xbar xbar^T] (mean augmented view),
X' = mean augmentation covariance, S = X + X'. The loss J = 1/2 E||W_p W x1 - SG(W_a x2)||^2 gives
(theory/heads.md sec. 1)

    dW_p/dt = alpha_p (-W_p W S + W_a X) W^T - eta W_p
    dW/dt   = W_p^T (-W_p W S + W_a X) - eta W
    dW_a/dt = beta (W - W_a)                         (SimSiam: W_a = W; the stop-gradient is kept)

Aligned per-mode theory (X = U diag(x) U^T, X' = U diag(x') U^T, all matrices diagonal in U):

    dw_p/dt = alpha_p w (w_a x - w_p w (x + x')) - eta w_p
    dw/dt   = w_p (w_a x - w_p w (x + x')) - eta w
    dw_a/dt = beta (w - w_a)

with p = w_p, s = w^2 (eigenvalues of F = W W^T), tau = w_a / w.  Isotropic closed forms: the invariant
parabola s = p^2/alpha_p + e^(-2 eta t) c, fixed points p-+ = (tau -+ sqrt(tau^2 - 4 eta k)) / (2k),
k = 1 + sigma^2, and the time to learn on the parabola.

Also: DirectPred (W_p from the eigendecomposition of a running estimate of F), the no-predictor and
no-stop-gradient ablations (both collapse), and the commutator ||[F, W_p]|| with the sign of K.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import engine, frontend
from ..core.cache import cacheable
from ..core.config import Config, configclass, sgd_only
from ..core.family import Example, Family, register, register_problem
from ..core.theory import Theory
from ..core.stability import StabilityLimit, limit_along, step_limits, warn_above_limit
from ..core.steppers import GD, Flow
from ..core.io import versions
from ..core.linalg import diag_in_basis, random_rotation
from ..core.trajectory import Trajectory
from ..core.validation import check_array, check_bool, check_broadcast, check_choice, check_int, check_positive, check_symmetric_pd, check_per_mode, check_instance

__all__ = ["BYOLProblem", "BYOLConfig", "simulate_byol", "solve_byol", "solve_byol_batch", "byol_fixed_points", "byol_time_to_learn",
           "byol_collapse_threshold"]

PREDICTORS = ("trained", "none", "directpred")
#: DirectPred's predictor eigenvalues from the running estimate's eigenvalues s (theory/heads.md sec. 1):
#: "paper" p_j = sqrt(s_j) + eps max s (Tian et al. 2021), "code" p_j = sqrt(s_j / max s) + eps (their code)
DIRECTPRED_RULES = ("paper", "code")


@register_problem
@dataclass(frozen=True, eq=False)
class BYOLProblem:
    """Linear BYOL / SimSiam. X, X_aug: (n, n) PSD; alpha_p > 0 predictor rate ratio; eta >= 0 weight
    decay; beta: EMA rate (> 0) or None for SimSiam (W_a = W). Aligned init per mode: w0, p0
    (and wa0 for BYOL, default w0) in the common eigenbasis ``basis``.

    Options for the simulator: predictor = "trained" | "none" (W_p = I fixed) | "directpred";
    stop_grad (False: gradients also flow through the target, SimSiam only); symmetric (symmetrise
    the predictor's update); directpred_rho, directpred_eps, directpred_rule ("paper": p_j = sqrt(s_j) +
    eps max s, the paper's rule, the default; "code": p_j = sqrt(s_j / max s) + eps, the authors' code).
    """

    X: np.ndarray
    X_aug: np.ndarray
    alpha_p: float = 1.0
    eta: float = 0.0
    beta: float | None = None
    w0: np.ndarray | None = None
    p0: np.ndarray | None = None
    wa0: np.ndarray | None = None
    basis: np.ndarray | None = None
    predictor: str = "trained"
    stop_grad: bool = True
    symmetric: bool = False
    directpred_rho: float = 0.3
    directpred_eps: float = 0.1
    source: dict = field(default_factory=dict)
    directpred_rule: str = "paper"

    def __post_init__(self):
        for k in ("stop_grad", "symmetric"):
            object.__setattr__(self, k, check_bool(k, getattr(self, k)))
        X = check_symmetric_pd("X", self.X, semi=True)
        n = X.shape[0]
        Xa = check_symmetric_pd("X_aug", self.X_aug, semi=True)
        if Xa.shape != X.shape:
            raise ValueError(f"X_aug must have the shape of X {X.shape}, got {Xa.shape}")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("X", X)
        set_("X_aug", Xa)
        set_("alpha_p", check_positive("alpha_p", self.alpha_p))
        set_("eta", check_positive("eta", self.eta, strict=False))
        if self.beta is not None:
            set_("beta", check_positive("beta", self.beta))
        check_choice("predictor", self.predictor, set(PREDICTORS))
        if not self.stop_grad and self.beta is not None:
            raise ValueError("stop_grad=False is the SimSiam ablation: it needs beta=None (W_a = W)")
        if self.basis is None:
            comm = float(np.abs(X @ Xa - Xa @ X).max())
            U = np.linalg.eigh(X + 0.7390851332 * Xa)[1]
            if comm > 1e-9 * max(1.0, float(np.abs(X).max()) ** 2):
                U = np.linalg.eigh(X)[1]
            set_("basis", U)
        else:
            U = check_array("basis", self.basis, shape=(n, n))
            err = float(np.abs(U.T @ U - np.eye(n)).max())
            if err > 1e-8:
                raise ValueError(f"basis must be orthogonal (its columns the common eigenvectors); "
                                 f"max |U^T U - I| = {err:.3g}")
            set_("basis", U)
        for name, default in (("w0", 0.1), ("p0", 0.1)):
            v = getattr(self, name)
            set_(name, np.full(n, default) if v is None else check_array(name, v, shape=(n,)))
        set_("wa0", self.w0.copy() if self.wa0 is None else check_array("wa0", self.wa0, shape=(n,)))
        set_("directpred_rho", check_positive("directpred_rho", self.directpred_rho, strict=False, upper=1.0))
        set_("directpred_eps", check_positive("directpred_eps", self.directpred_eps, strict=False))
        check_choice("directpred_rule", self.directpred_rule, set(DIRECTPRED_RULES))

    @classmethod
    def isotropic(cls, n, sigma2, *, alpha_p=1.0, eta=0.0, beta=None, w0=0.1, p0=0.1, wa0=None, rotate=False,
                  key=0, **kw):
        """X = I, X' = sigma2 I (Tian et al.'s assumption A2); scalar or per-mode inits."""
        n = check_int("n", n, minimum=1)
        sigma2 = check_positive("sigma2", sigma2, strict=False, upper=1e100)
        U = random_rotation(n, key=key) if check_bool("rotate", rotate) else np.eye(n)
        return cls(X=np.eye(n), X_aug=sigma2 * np.eye(n), alpha_p=alpha_p, eta=eta, beta=beta,
                   w0=check_per_mode("w0", w0, n), p0=check_per_mode("p0", p0, n),
                   wa0=None if wa0 is None else check_per_mode("wa0", wa0, n),
                   basis=U, source={"builder": "isotropic", "sigma2": sigma2}, **kw)

    @classmethod
    def aligned(cls, x, x_aug, *, alpha_p=1.0, eta=0.0, beta=None, w0=0.1, p0=0.1, wa0=None, rotate=True,
                key=0, **kw):
        """X = U diag(x) U^T, X' = U diag(x_aug) U^T (commuting; random U when rotate)."""
        x = check_array("x", x, ndim=1)
        xa = check_array("x_aug", x_aug, shape=x.shape)
        if np.any(x < 0) or np.any(xa < 0):
            raise ValueError("x and x_aug must be >= 0 (eigenvalues of covariances)")
        n = x.size
        U = random_rotation(n, key=key) if check_bool("rotate", rotate) else np.eye(n)
        return cls(X=(U * x) @ U.T, X_aug=(U * xa) @ U.T, alpha_p=alpha_p, eta=eta, beta=beta,
                   w0=check_per_mode("w0", w0, n), p0=check_per_mode("p0", p0, n),
                   wa0=None if wa0 is None else check_per_mode("wa0", wa0, n),
                   basis=U, source={"builder": "aligned"}, **kw)

    @property
    def n(self):
        return self.X.shape[0]

    @property
    def spectra(self):
        """(x, x_aug) in the basis."""
        U = self.basis
        return diag_in_basis(U, self.X), diag_in_basis(U, self.X_aug)

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)


# ------------------------------------------------------------------------------------------ simulate
@functools.lru_cache(maxsize=32)
def _byol_model(predictor, stop_grad, symmetric, simsiam, rule="paper"):
    """The engine model of one structure (the static choices); every number -- alpha_p, eta, beta and
    DirectPred's rho and eps -- comes from the context, one per run, so a batch may vary them."""
    def loss_fn(W, Wp, Wa, X, S):
        A = Wp @ W
        return 0.5 * jnp.sum((A @ S) * A) - jnp.sum((A @ X) * Wa) + 0.5 * jnp.sum((Wa @ S) * Wa)

    def parts(params, aux):
        W = params["W"]
        Wp = params["Wp"] if predictor == "trained" else (aux["Wp"] if predictor == "directpred"
                                                          else jnp.eye(W.shape[0], dtype=W.dtype))
        Wa = W if simsiam else aux["Wa"]
        return W, Wp, Wa

    def grad(params, aux, ctx, key):
        X, S = ctx["X"], ctx["X"] + ctx["Xa"]
        alpha_p, eta = ctx["alpha_p"], ctx["eta"]
        W, Wp, Wa = parts(params, aux)
        R = Wa @ X - Wp @ W @ S          # (-W_p W S + W_a X)
        gW = -(Wp.T @ R) + eta * W
        if not stop_grad:   # gradient also through the target branch W x2 (W_a = W)
            gW = gW + (W @ S - Wp @ W @ X)
        out = {"W": gW}
        if predictor == "trained":
            gP = -alpha_p * (R @ W.T) + eta * Wp
            if symmetric:
                gP = 0.5 * (gP + gP.T)
            out["Wp"] = gP
        return loss_fn(W, Wp, Wa, X, S), out

    def update_aux(params, aux, ctx, h):
        new = dict(aux)
        if not simsiam:
            new["Wa"] = aux["Wa"] + h * ctx["beta"] * (params["W"] - aux["Wa"])
        if predictor == "directpred":
            S = ctx["X"] + ctx["Xa"]
            F = params["W"] @ S @ params["W"].T
            rho, eps = ctx["rho"], ctx["eps"]
            Fh = rho * aux["F"] + (1.0 - rho) * F
            s, U = jnp.linalg.eigh(0.5 * (Fh + Fh.T))
            s = jnp.clip(s, 0.0, None)
            if rule == "paper":
                p = jnp.sqrt(s) + eps * jnp.max(s)
            else:       # the authors' code: normalised by the largest eigenvalue first
                p = jnp.sqrt(s / jnp.maximum(jnp.max(s), jnp.finfo(s.dtype).tiny)) + eps
            new["F"] = Fh
            new["Wp"] = (U * p) @ U.T
        return new

    def observe(params, aux, ctx):
        X, S = ctx["X"], ctx["X"] + ctx["Xa"]
        W, Wp, Wa = parts(params, aux)
        U = ctx["basis"]
        F = W @ W.T
        Wps = 0.5 * (Wp + Wp.T)
        comm = F @ Wps - Wps @ F
        k = 1.0 + ctx["sigma2"]
        tau = jnp.sum(Wa * W) / jnp.maximum(jnp.sum(W * W), 1e-300)
        alpha_p, eta = ctx["alpha_p"], ctx["eta"]
        K = k * (0.5 * alpha_p * F + Wps @ Wps - (tau / k) * Wps) + 1.5 * eta * jnp.eye(F.shape[0])
        return {"p": jnp.sum(U * (Wp @ U), axis=0), "s": jnp.sum(U * (F @ U), axis=0),
                "w_a": jnp.sum(U * (Wa @ U), axis=0), "loss": loss_fn(W, Wp, Wa, X, S),
                "balance": F - Wp.T @ Wp / alpha_p, "commutator": jnp.sqrt(jnp.sum(comm * comm)),
                "K_min": jnp.linalg.eigvalsh(0.5 * (K + K.T))[0], "tau": tau}

    def grad_lr(params, aux, ctx, key, h):
        return grad(params, aux, ctx, key)

    return engine.Model(grad=grad_lr, observe=observe, uses_lr=True, stochastic=False,
                        update_aux=None if (simsiam and predictor != "directpred") else update_aux)


@configclass
class BYOLConfig(Config):
    """The configuration of linear BYOL / SimSiam.

    init : "aligned" (or None: the problem's aligned init w0, p0, wa0 in its basis) or a dict of arrays
        {"W": (n, n), "Wp": (n, n) (default I), "Wa": (n, n) (default W)} (structural).
    """

    init: Any = "aligned"

    def __post_init__(self):
        super().__post_init__()
        if self.init is None:
            object.__setattr__(self, "init", "aligned")
        if not (isinstance(self.init, dict) or (isinstance(self.init, str) and self.init == "aligned")):
            raise TypeError(f"init must be 'aligned' (or None) or a dict of arrays W, Wp, Wa, got "
                            f"{type(self.init).__name__}: {self.init!r:.60}")

    @property
    def aligned(self) -> bool:
        return not isinstance(self.init, dict)

    def check(self, family, problems, stepper):
        sgd_only(family, stepper)
        if isinstance(stepper, Flow) and problems[0].predictor == "directpred":
            raise ValueError("predictor='directpred' sets W_p from a per-step moving average and an "
                             "eigendecomposition, which has no gradient flow: use method='gd' for it")
        if isinstance(stepper, GD) and self.aligned:
            lrs = np.broadcast_to(np.asarray(stepper.lr, float), (len(problems),))
            for lr, p in zip(lrs, problems):
                limit = path_stability(p) if _has_limit(p) else None
                if limit is not None and lr > limit.lr:
                    where = ("at the fixed point" if not np.isfinite(limit.t)
                             else f"at t = {limit.t:.4g} on the aligned theory's path")
                    warn_above_limit(float(lr), limit.lr, f"on this byol {where}", "theory/heads.md, \"Step size\"")
                    break
        return self

    def record(self, problem):
        return {"alpha_p": problem.alpha_p, "eta": problem.eta, "beta": problem.beta,
                "predictor": problem.predictor, "stop_grad": problem.stop_grad, "symmetric": problem.symmetric,
                "init": "aligned" if self.aligned else "custom"}


class BYOLFamily(Family):
    """Linear BYOL / SimSiam as a family: primary field ``p`` (the predictor's diagonal in the basis:
    its eigenvalues once aligned); theory: the aligned per-mode ODEs (``solve_byol``)."""

    name = "byol"
    problem_type = BYOLProblem
    primary = "p"
    config = BYOLConfig

    def shape(self, problem):
        return {"n": problem.n, "predictor": problem.predictor, "stop_grad": problem.stop_grad,
                "symmetric": problem.symmetric, "SimSiam (beta None)": problem.beta is None,
                "directpred_rule": problem.directpred_rule}

    def model(self, problem, form, config):
        return _byol_model(problem.predictor, problem.stop_grad, problem.symmetric, problem.beta is None,
                           problem.directpred_rule)

    def initial_state(self, problem, key, form, config):
        U, n, init = problem.basis, problem.n, config.init
        if config.aligned:
            W0, P0, A0 = ((U * v) @ U.T for v in (problem.w0, problem.p0, problem.wa0))
        else:
            W0 = check_array("init['W']", init.get("W"), shape=(n, n))
            P0 = check_array("init['Wp']", init.get("Wp", np.eye(n)), shape=(n, n))
            A0 = check_array("init['Wa']", init.get("Wa", W0), shape=(n, n))
        params, aux = {"W": W0}, {}
        if problem.predictor == "trained":
            params["Wp"] = P0
        if problem.beta is not None:
            aux["Wa"] = A0
        if problem.predictor == "directpred":
            aux["F"] = W0 @ (problem.X + problem.X_aug) @ W0.T
            aux["Wp"] = P0
        return params, aux

    def context(self, problem, form, config):
        sigma2 = float(np.mean(np.diag(problem.X_aug)) / max(np.mean(np.diag(problem.X)), 1e-300))
        numbers = {"alpha_p": problem.alpha_p, "eta": problem.eta, "beta": 0.0 if problem.beta is None else problem.beta,
                   "rho": problem.directpred_rho, "eps": problem.directpred_eps}
        return {"X": problem.X, "Xa": problem.X_aug, "basis": problem.basis, "sigma2": np.asarray(sigma2),
                **{k: np.asarray(float(v)) for k, v in numbers.items()}}

    def _aligned(self, problem):
        try:
            _byol_theory_inputs(problem)
        except ValueError:
            return False
        return True

    def theory(self, problem, config=None):
        """The aligned per-mode ODEs (``solve_byol``); the fixed point p* = x / (x + x_aug) per mode (w_a = w,
        eta = 0, trained predictor: where the aligned flow stops) and the stability limit (SimSiam with a
        trained predictor, theory/heads.md "Step size").  A custom init has no theory (None)."""
        if config is not None and not config.aligned:
            return None
        return Theory(trajectory=functools.partial(_solve_byol_theory, problem),
                      fixed_point=byol_fixed_point(problem),
                      stability_limit=functools.partial(path_stability, problem))

    def example(self):
        prob = BYOLProblem.aligned([1.0, 0.6], [0.3, 0.3], w0=0.3, p0=0.1, rotate=True, key=1)
        return Example(problem=prob, lr=0.01, steps=2000, short_steps=20, diverging_lr=40.0)


def byol_fixed_point(problem):
    """p* = x / (x + x_aug) per mode where the aligned flow stops (w_a = w, eta = 0, commuting X, X_aug);
    None otherwise."""
    if problem.eta != 0 or not BYOL._aligned(problem):
        return None
    x, xa = problem.spectra
    return x / (x + xa)


def _solve_byol_theory(problem, times):
    return solve_byol(problem, times=times)


BYOL = register(BYOLFamily())


def _has_limit(problem):
    """Whether the limit is known: gradient descent is theta <- theta - lr F(theta) with F a field of the
    parameters alone (SimSiam: an EMA target is updated after the step from the new W; a trained
    predictor) and the aligned theory gives the path (stop-gradient, X and X_aug commuting)."""
    return problem.beta is None and problem.predictor == "trained" and BYOL._aligned(problem)


@functools.lru_cache(maxsize=16)
def path_stability(problem, init=None, *, points=48):
    """The largest stable lr of gradient descent on (W, W_p) (``core.stability``; SimSiam with a trained
    predictor): the smallest along the aligned theory's path (``solve_byol`` on ``points`` times, until it
    has settled) or at one ``init`` (a dict of W, Wp).  Cached per problem (compared by identity)."""
    check_instance("problem", problem, BYOLProblem)
    if not _has_limit(problem):
        raise ValueError("byol's stability limit covers SimSiam (beta=None) with a trained predictor, stop-gradient "
                         "and commuting X, X_aug: with an EMA target or DirectPred the step is not theta - lr F(theta), "
                         "and the ablations have no theory's path")
    model = _byol_model(problem.predictor, problem.stop_grad, problem.symmetric, True, problem.directpred_rule)
    ctx = {k: jnp.asarray(v) for k, v in BYOL.context(problem, "params", BYOLConfig()).items()}

    def field(params):
        return model.grad(params, {}, ctx, None, 0.0)[1]

    if init is not None:
        params, _ = BYOL.initial_state(problem, None, "params", BYOLConfig(init=init))
        ((lr, mu),) = step_limits(field, [{k: jnp.asarray(v) for k, v in params.items()}])
        return StabilityLimit(lr, mu, None, np.array([0.0]), np.array([lr]))
    x, lam_s, *_ = _byol_theory_inputs(problem, "max_stable_lr")
    t_end = 10.0
    for _ in range(16):          # until the theory has settled: p moves < 1e-8 over the last doubling
        p_end = np.asarray(_solve_byol_one(problem, np.array([0.5 * t_end, t_end]), 1e-11, 1e-13).p)
        if np.abs(p_end[1] - p_end[0]).max() <= 1e-8 * max(1.0, np.abs(p_end[1]).max()):
            break
        t_end *= 2.0
    t = np.concatenate([[0.0], np.geomspace(t_end * 1e-4, t_end, points - 1)])
    th = _solve_byol_one(problem, t, 1e-11, 1e-13)
    w = np.sign(problem.w0) * np.sqrt(np.asarray(th.s))
    U = problem.basis
    pts = [{"W": jnp.asarray((U * wi) @ U.T), "Wp": jnp.asarray((U * pi) @ U.T)} for wi, pi in zip(w, np.asarray(th.p))]
    return limit_along(field, pts, t)


def simulate_byol(problem, *, stepper=None, lr=None, steps=None, method=None, times=None, t_max=None, rtol=None, atol=None,
                  solver=None, record_every=None, record_log=None, init=None, runs=1,
                  key=0, dtype=None, progress=None, on_divergence="raise"):
    """Euler steps (``lr``) of the matrix flow above, through the shared engine; ``method="flow"``
    integrates the flow itself (adaptive, ``times`` / ``t_max`` / gd's grid; not for DirectPred).

    init: None (aligned: W = U diag(w0) U^T, W_p = U diag(p0) U^T, W_a = U diag(wa0) U^T), or a dict
    {"W", "Wp"[, "Wa"]} of (n, n) arrays (e.g. unaligned, to watch the commutator decay).
    Returns a Trajectory: .t = lr step, .p (T, n) and .s (T, n) (diagonals of W_p and F = W W^T in
    the basis: their eigenvalues once aligned), .w_a, .loss, .balance (T, n, n) = F - W_p^T W_p/alpha_p,
    .commutator ||[F, sym W_p]||_F, .K_min (smallest eigenvalue of K), .tau = <W_a, W>/<W, W>.
    ``problem`` may be a list of BYOLProblems of one shape; ``lr`` an array; ``key`` as everywhere.
    """
    return frontend.simulate(BYOL, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, options={"init": init}, desc="byol")


# ------------------------------------------------------------------------------------------ theory
def _byol_theory_inputs(problem, what="solve_byol"):
    """Checked per-mode inputs of the aligned theory: (x, lam_s, alpha_p, eta, beta, n, simsiam, y0)."""
    check_instance("problem", problem, BYOLProblem)
    if problem.predictor != "trained" or not problem.stop_grad:
        raise ValueError(f"{what} covers the trained predictor with stop-gradient; simulate the "
                         "ablations (predictor='none'/'directpred', stop_grad=False) instead")
    X, Xa = problem.X, problem.X_aug
    comm = float(np.abs(X @ Xa - Xa @ X).max())
    if comm > 1e-9 * max(1.0, float(np.abs(X).max())) ** 2:
        raise ValueError(f"{what} needs X and X_aug simultaneously diagonalisable (they do not commute)")
    x, xa = problem.spectra
    simsiam = problem.beta is None
    y0 = np.concatenate([problem.w0, problem.p0] + ([] if simsiam else [problem.wa0]))
    return x, x + xa, problem.alpha_p, problem.eta, problem.beta, problem.n, simsiam, y0


def _byol_rhs(y, x, lam_s, ap, eta, beta, n, simsiam, xp):
    """The aligned per-mode ODEs (module docstring) on y = [w, w_p(, w_a)], for numpy or jax (xp)."""
    w, wp = y[..., :n], y[..., n:2 * n]
    wa = w if simsiam else y[..., 2 * n:]
    r = wa * x - wp * w * lam_s
    dw = wp * r - eta * w
    dp = ap * w * r - eta * wp
    return xp.concatenate([dw, dp] if simsiam else [dw, dp, beta * (w - wa)], axis=-1)


def _byol_fields(Y, x, lam_s, n, simsiam):
    """Trajectory fields from the states Y (..., T, 2n or 3n): p, s = w^2, w_a, tau = w_a / w, loss."""
    w, wp = Y[..., :n], Y[..., n:2 * n]
    wa = w if simsiam else Y[..., 2 * n:]
    loss = np.sum(0.5 * (wp * w) ** 2 * lam_s - wp * w * wa * x + 0.5 * wa ** 2 * lam_s, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(w != 0, wa / w, np.nan)
    return {"p": wp, "s": w ** 2, "w_a": wa, "tau": tau, "loss": loss}


def _check_times(times):
    times = check_array("times", times, ndim=1)
    if times.size == 0:
        raise ValueError("times must hold at least one time, got an empty grid")
    if np.any(times < 0) or np.any(np.diff(times) < 0):
        raise ValueError("times must be >= 0 and non-decreasing")
    return times


#: beyond this horizon solve_byol integrates with LSODA (stiffness-switching) instead of DOP853
LONG_HORIZON = 1e4


def solve_byol(problem, *, times, rtol=1e-11, atol=1e-13):
    """The aligned per-mode ODEs (module docstring), integrated with scipy's DOP853 at tight tolerance.

    Exact for an aligned init with a trained predictor and stop-gradient (the theory's setting).
    Returns a Trajectory with .p, .s (= w^2), .w_a, .tau (per mode, w_a / w), .loss.
    ``times`` / ``problem`` may be those of a batch (one grid per run, one problem per run).
    Many settings at once: :func:`solve_byol_batch` (one vectorised adaptive solve in JAX)."""
    return frontend.solve(lambda p, t: _solve_byol_one(p, t, rtol, atol), problem, times)


def _solve_byol_one(problem, times, rtol, atol):
    """The aligned per-mode ODEs (module docstring), integrated with scipy's DOP853 at tight tolerance.

    Exact for an aligned init with a trained predictor and stop-gradient (the theory's setting).
    Returns a Trajectory with .p, .s (= w^2), .w_a, .tau (per mode, w_a / w), .loss.
    Many settings at once: :func:`solve_byol_batch` (one vectorised adaptive solve in JAX)."""
    x, lam_s, ap, eta, beta, n, simsiam, y0 = _byol_theory_inputs(problem)
    times = _check_times(times)
    rtol = check_positive("rtol", rtol, upper=0.1)
    atol = check_positive("atol", atol)
    if times[-1] == 0:      # nothing to integrate: the initial state on every requested time
        Y = np.broadcast_to(np.asarray(y0, float), (times.size, len(y0)))
    else:
        from scipy.integrate import solve_ivp   # imported when first used (import dynamics stays light)

        grid, back = np.unique(times, return_inverse=True)     # scipy wants t_eval strictly increasing
        sol = solve_ivp(lambda t, y: _byol_rhs(y, x, lam_s, ap, eta, beta, n, simsiam, np),
                        (0.0, float(times[-1])), y0, t_eval=grid, rtol=rtol, atol=atol,
                        # an explicit solver pays for stiffness step by step: over a long horizon (the modes
                        # settle, the fast directions stay) LSODA switches to its stiff method instead
                        method="DOP853" if times[-1] <= LONG_HORIZON else "LSODA")
        if not sol.success:
            raise RuntimeError(f"solve_byol: the ODE solver failed: {sol.message}")
        Y = sol.y.T[back]
    return Trajectory(t=times, fields=_byol_fields(Y, x, lam_s, n, simsiam),
                      kind="theory", model="byol", settings={"units": "gf", **versions()}, problem=problem,
                      method="exact", primary="p", fixed_point=byol_fixed_point(problem))


def solve_byol_batch(problems, *, times, rtol=1e-10, atol=1e-12, max_steps=1_000_000):
    """:func:`solve_byol` for many settings at once: one adaptive Dormand-Prince 8(5,3) solve (diffrax)
    vectorised over the problems with ``vmap`` (each setting keeps its own step size) and jit-compiled.

    problems : BYOLProblems with the same number of modes and all SimSiam (beta None) or all EMA.
    Returns a batched Trajectory (``runs`` = number of problems; fields (R, T, n)). The time grid is
    padded to a power-of-two length, so that grids of similar sizes share one compiled program.
    """
    import diffrax

    check_instance("problems", problems, (list, tuple), "a list of BYOLProblems")
    problems = list(problems)
    for i, pb in enumerate(problems):
        check_instance(f"problems[{i}]", pb, BYOLProblem)
    if not problems:
        raise ValueError("problems must hold at least one BYOLProblem")
    inputs = [_byol_theory_inputs(p, "solve_byol_batch") for p in problems]
    n, simsiam = inputs[0][5], inputs[0][6]
    for i, inp in enumerate(inputs):
        if (inp[5], inp[6]) != (n, simsiam):
            raise ValueError(f"problems[{i}] has {inp[5]} modes and beta {'None' if inp[6] else 'set'}; "
                             f"problems[0] has {n} and beta {'None' if simsiam else 'set'}: solve them apart")
    times = _check_times(times)
    rtol = check_positive("rtol", rtol)
    atol = check_positive("atol", atol)
    T = times.size
    padded = np.concatenate([times, np.full((1 << max(0, int(np.ceil(np.log2(max(T, 1)))))) - T,
                                            times[-1] if T else 0.0)])
    stack = lambda j: jnp.asarray(np.stack([np.asarray(inp[j], float) for inp in inputs]))  # noqa: E731
    x, lam_s, y0 = stack(0), stack(1), stack(7)
    scalars = jnp.asarray([[inp[2], inp[3], 0.0 if simsiam else inp[4]] for inp in inputs])
    ys, ok = _byol_batch_solver(n, simsiam, float(rtol), float(atol), int(max_steps))(
        jnp.asarray(padded), x, lam_s, scalars, y0)
    ok = np.asarray(ok)
    if not np.all(ok):
        raise ValueError(f"solve_byol_batch: the ODE solver did not reach the last of the times (t = {times[-1]:.6g}) "
                         f"for problem(s) {np.nonzero(~ok)[0][:10].tolist()} within max_steps = {max_steps:,} "
                         "(a long horizon, or a stiff or diverging flow): shorten times or raise max_steps")
    Y = np.asarray(ys)[:, :T]
    fields = _byol_fields(Y, np.asarray(x)[:, None, :], np.asarray(lam_s)[:, None, :], n, simsiam)
    return Trajectory(t=times, fields=fields, kind="theory", model="byol", runs=len(problems), problem=problems,
                      method="exact", primary="p",
                      settings={"units": "gf", "solver": f"diffrax {diffrax.__version__} Dopri8",
                                "rtol": rtol, "atol": atol, **versions()})


@functools.lru_cache(maxsize=16)
def _byol_batch_solver(n, simsiam, rtol, atol, max_steps):
    """The jitted, vmapped diffrax solve for one (modes, SimSiam/EMA, tolerances)."""
    import diffrax

    def one(ts, x, lam_s, scalars, y0):
        ap, eta, beta = scalars[0], scalars[1], scalars[2]
        term = diffrax.ODETerm(lambda t, y, args: _byol_rhs(y, x, lam_s, ap, eta, beta, n, simsiam, jnp))
        sol = diffrax.diffeqsolve(term, diffrax.Dopri8(), ts[0], ts[-1], None, y0,
                                  saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                  max_steps=max_steps, throw=False)
        return sol.ys, sol.result == diffrax.RESULTS.successful

    return cacheable(jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0))))


def byol_collapse_threshold(tau, sigma2):
    """eta above which collapse is certain on the invariant parabola: tau^2 / (4 (1 + sigma2))."""
    tau = check_array("tau", tau)
    sigma2 = check_array("sigma2", sigma2)
    check_broadcast(tau=tau, sigma2=sigma2)
    if np.any(sigma2 < 0):
        raise ValueError(f"sigma2 must be >= 0 (a noise variance), got {sigma2}")
    return tau ** 2 / (4.0 * (1.0 + sigma2))


def byol_fixed_points(tau, eta, sigma2):
    """(p_minus, p_plus) = (tau -+ sqrt(tau^2 - 4 eta k)) / (2k), k = 1 + sigma2, on the parabola
    s = p^2 / alpha_p. p < p_minus collapses to 0, p > p_minus goes to p_plus. nan (with a warning)
    where eta > tau^2 / (4k): collapse is certain."""
    tau = check_array("tau", tau)
    eta = check_array("eta", eta)
    check_array("sigma2", sigma2)
    check_broadcast(tau=tau, eta=eta, sigma2=sigma2)
    if np.any(eta < 0):
        raise ValueError(f"eta must be >= 0, got {eta}")
    if np.any(np.asarray(sigma2) < 0):
        raise ValueError(f"sigma2 must be >= 0, got {sigma2}")
    k = 1.0 + np.asarray(sigma2, float)
    disc = tau ** 2 - 4.0 * eta * k
    with np.errstate(invalid="ignore"):
        root = np.sqrt(disc)
    if np.any(disc < 0):
        warnings.warn("eta > tau^2 / (4 (1 + sigma2)): no non-collapsed fixed point, collapse is certain",
                      RuntimeWarning, stacklevel=2)
    pm = np.where(disc >= 0, (tau - root) / (2 * k), np.nan)
    pp = np.where(disc >= 0, (tau + root) / (2 * k), np.nan)
    return pm, pp


def byol_time_to_learn(p0, p, tau, sigma2, eta=0.0):
    """Closed-form time for the predictor eigenvalue to go from p0 to p on the invariant parabola
    (fixed tau; SimSiam has tau = 1):  eta = 0:  t = 1/(tau p0) - 1/(tau p) + (k/tau^2) ln[p (tau - k p0) /
    (p0 (tau - k p))];  eta > 0:  t = -(1/k) [G(p) - G(p0)], G(q) = ln q / (a b) + ln|q - a| / (a (a - b))
    + ln|q - b| / (b (b - a)), a = p_minus, b = p_plus.  inf if p is not reached."""
    p0, p = check_positive("p0", p0), check_positive("p", p)
    tau = check_positive("tau", tau, upper=1e100)
    sigma2 = check_positive("sigma2", sigma2, strict=False, upper=1e100)
    eta = check_positive("eta", eta, strict=False, upper=1e100)
    k = 1.0 + sigma2
    if eta == 0:
        if not (0 < p0 < tau / k and p0 <= p < tau / k):
            return np.inf
        return (1 / (tau * p0) - 1 / (tau * p) + (k / tau ** 2) * np.log(p * (tau - k * p0) / (p0 * (tau - k * p))))
    a, b = byol_fixed_points(tau, eta, sigma2)
    if not np.isfinite(a) or not (a < p0 <= p < b):
        return np.inf
    G = lambda q: (np.log(q) / (a * b) + np.log(abs(q - a)) / (a * (a - b))  # noqa: E731
                   + np.log(abs(q - b)) / (b * (b - a)))
    return float(-(G(p) - G(p0)) / k)
