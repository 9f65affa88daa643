"""Diagonal linear networks (Pesme & Flammarion 2023; Berthier 2023): saddle-to-saddle dynamics.

Regression with beta = u * v:  L(beta) = (1/2n) sum_i (y_i - <x_i, beta>)^2, gradient flow on (u, v) from
u(0) = sqrt(2) alpha 1, v(0) = 0 (so beta(0) = 0, u^2 - v^2 = 2 alpha^2 and beta = alpha^2 sinh(2 S)).
As alpha -> 0, beta(t / log(1/alpha)) is piecewise constant; each jump solves in closed form

    beta = argmin L(beta')  s.t.  s_j beta'_j >= 0 where |s_j| = 1,  beta'_j = 0 elsewhere,

a non-negative least squares problem (theory/dln.md). The last plateau of an
over-parametrised problem is the minimum-l1-norm interpolator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..core.family import Example, register, register_problem
from ..core.keys import as_key
from ..core.validation import check_array, check_int, check_positive, check_instance
from .hadamard.family import HadamardFamily, simulate_uv
from .hadamard.implicit_bias import EndpointCheck, ImplicitBias, effective_init_scale, implicit_bias
from .hadamard.interpolator import hyperbolic_interpolator
from .hadamard.model import HadamardProblem, check_alpha
from .hadamard.stages import crosscheck_stages
from .hadamard.stages import stages as _stages

__all__ = ["DLNProblem", "simulate_dln", "dln_stages", "nnls_jump"]


@register_problem
@dataclass(frozen=True, eq=False)
class DLNProblem(HadamardProblem):
    """Diagonal linear network on data X (n, d), y (n,), init scale alpha in (0, 1)."""

    X: np.ndarray
    y: np.ndarray
    init_scale: float
    source: dict = field(default_factory=dict)
    name = "dln"

    def __post_init__(self):
        X = check_array("X", self.X, ndim=2)
        y = check_array("y", self.y, ndim=1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X and y must have the same number of samples, got X {X.shape} and y {y.shape}")
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"X must have at least one sample and one feature, got {X.shape}")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "init_scale", check_alpha(self.init_scale))

    @property
    def data(self):
        return {"X": self.X, "y": self.y}

    @property
    def u0(self):
        return np.full(self.X.shape[1], np.sqrt(2.0))

    @property
    def v0(self):
        return np.zeros(self.X.shape[1])

    @staticmethod
    def loss_fn(beta, data):
        r = data["y"] - data["X"] @ beta
        return 0.5 * jnp.mean(r * r)

    @classmethod
    def random(cls, n, d, *, beta_star=None, sparsity=None, noise=0.0, correlation=0.0, init_scale=1e-8,
               key=0):
        """Gaussian data: X ~ N(0, 1) with x_2 += correlation * x_1 (optional), y = X beta* + noise.
        ``beta_star`` (d,) or a random ``sparsity``-sparse one with N(0, 1) entries."""
        n = check_int("n", n, minimum=1)
        d = check_int("d", d, minimum=1)
        noise = check_positive("noise", noise, strict=False)
        correlation = float(check_array("correlation", correlation, ndim=0))
        from ..core.resources import check_memory
        check_memory(f"the data X (n x d = {n:,} x {d:,}) and its d x d Gram matrix", 8 * (3 * n * d + 4 * d * d),
                     hint="a smaller n or d")
        k1, k2, k3, k4 = jax.random.split(as_key(key), 4)
        X = np.array(jax.random.normal(k1, (n, d), dtype=jnp.float64))
        if d >= 2 and correlation:
            X[:, 1] += correlation * X[:, 0]
        if beta_star is None:
            sparsity = d if sparsity is None else check_int("sparsity", sparsity, minimum=1)
            beta_star = np.zeros(d)
            idx = np.asarray(jax.random.permutation(k2, d))[:sparsity]
            beta_star[idx] = np.asarray(jax.random.normal(k3, (sparsity,), dtype=jnp.float64))
        beta_star = check_array("beta_star", beta_star, shape=(d,))
        y = X @ beta_star + noise * np.asarray(jax.random.normal(k4, (n,), dtype=jnp.float64))
        return cls(X=X, y=y, init_scale=init_scale,
                   source={"beta_star": beta_star.tolist(), "noise": noise, "correlation": correlation})

    def jump(self, beta, s, entering):
        return nnls_jump(self, beta, s, entering)

    def regression(self):
        return self.X, self.y

    def flow_endpoint(self):
        """The gradient flow's endpoint: the hyperbolic-entropy interpolator at alpha (exact;
        theory/dln_steps.md eq. 3)."""
        return hyperbolic_interpolator(self.X, self.y, self.init_scale)


def nnls_jump(problem: DLNProblem, beta, s, entering, *, boundary_tol=1e-12):
    """Closed-form jump: argmin L on the sign-constrained face {s_j beta_j >= 0 if |s_j| = 1, else 0}."""
    J = np.nonzero(np.abs(s) >= 1.0 - boundary_tol)[0]
    n = problem.X.shape[0]
    out = np.zeros(problem.p)
    if J.size:
        A = problem.X[:, J] * np.sign(s[J])[None, :] / np.sqrt(n)
        from scipy.optimize import nnls   # imported when first used (import dynamics stays light)

        gamma, _ = nnls(A, problem.y / np.sqrt(n), maxiter=50 * max(10, J.size))
        out[J] = np.sign(s[J]) * gamma
        out[np.abs(out) < 1e-14 * np.abs(out).max()] = 0.0      # relative: the units of y do not matter
    return out


def dln_stages(problem: DLNProblem, **kw):
    """Stage algorithm with the closed-form NNLS jump (Pesme & Flammarion's Algorithm 1)."""
    check_instance("problem", problem, DLNProblem)
    return _stages(problem, **kw)


def _example():
    # noiseless, n > d: three stages, the last one the exact fit (alpha = 1e-16: stage errors ~1e-2)
    prob = DLNProblem.random(60, 4, beta_star=[3.0, -1.0, 0.3, 0.0], init_scale=1e-16, key=0)
    tau_end = float(_stages(prob).times[-1])
    dtau = 0.02 / prob.log_inv_alpha
    # gd is first order against the flow once lr g^2 t << 1 (log-growth error per step ~ (lr g)^2 / 2):
    # at alpha = 1e-3 and lr = 1e-3 (the time shift of the jumps is then ~1 % of their width)
    small = DLNProblem.random(30, 3, beta_star=[2.0, -1.0, 0.0], init_scale=1e-3, key=0)
    t_end = 1.2 * float(_stages(small).times[-1]) * small.log_inv_alpha
    return Example(problem=prob, lr=dtau, steps=int(np.ceil((1.15 * tau_end + 0.3) / dtau)),
                   short_steps=int(0.3 * tau_end / dtau), diverging_lr=50.0, method="dual_rk4",
                   halving={"problem": small, "lr": 1e-3, "steps": int(t_end / 1e-3)})


DLN = register(HadamardFamily("dln", DLNProblem, example=_example))


def simulate_dln(problem, *, stepper=None, method=None, lr=None, steps=None, tau_max=None, dtau=None, times=None,
                 t_max=None, rtol=None, atol=None, solver=None, record_every=None, record_log=None, runs=1, key=0,
                 dtype=None, optimizer=None, progress=None, on_divergence="raise"):
    """Gradient descent on (u, v) (``method="gd"``, needs ``lr``; ``steps`` or ``tau_max``), its exact
    gradient flow (``method="flow"``), or the exact small-init form of that flow (``method="dual"``,
    adaptive in rescaled time up to ``tau_max``, default past the last predicted stage), or fixed-step
    RK4 on that form (``method="dual_rk4"`` with ``dtau``); or any ``stepper=``.  See ``hadamard.family.simulate_uv`` for every argument.
    Returns .t, .tau = t / log(1/alpha), .beta, .loss.
    The reference is ``dy.stages(problem)``: ``dy.crosscheck(sim, dy.stages(problem))``."""
    return simulate_uv(DLN, problem, stepper=stepper, method=method, lr=lr, steps=steps, tau_max=tau_max,
                       dtau=dtau, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                       record_every=record_every, record_log=record_log, runs=runs, key=key, dtype=dtype,
                       optimizer=optimizer, progress=progress, on_divergence=on_divergence)


# the result classes ImplicitBias and EndpointCheck are importable here too, documented where they are defined
# (dynamics.families.hadamard.implicit_bias) and exported as dy.ImplicitBias, dy.EndpointCheck
__all__ += ["crosscheck_stages", "implicit_bias", "effective_init_scale", "hyperbolic_interpolator"]
