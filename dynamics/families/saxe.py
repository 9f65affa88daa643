"""Deep linear regression (Saxe, McClelland & Ganguli 2014): the classic sigmoidal mode dynamics.

Loss 1/2 E || y - W_L ... W_1 x ||^2 with Syx = U diag(lam) U^T, Sxx = U diag(sigma2) U^T.  From the
balanced aligned init W_a(0) = eps^(1/L) I, each per-layer mode a obeys (theory/saxe.md)

    da/dt = a^(L-1) (lam - sigma2 a^L) = lam a^(L-1) (1 - a^L / rho),      a^L -> rho = lam / sigma2,

i.e. d psi/d tau = psi^(L-1) (1 - psi^L) with psi = a / rho^(1/L), t = rho^((2-L)/L) tau / lam:
exponential for L = 1, the logistic sigmoid of Saxe et al. for L = 2, and the same closed form as
JEPA/MAE (``mode_integrals``) for any L.  It simulates through the shared engine.
"""

from __future__ import annotations

import numpy as np

from ..core import frontend
from ..core.family import register
from ..core.io import versions
from ..core.keys import init_key, run_keys
from ..core.trajectory import Trajectory
from ..core.validation import check_array, check_choice, check_instance
from .linear.family import LinearFamily
from .linear.network import INITS, Objective, init_params
from .linear.problems import RegressionProblem
from .linear.riccati import two_layer_flow
from .linear.theory import solve_linear

__all__ = ["SAXE", "RegressionProblem", "simulate_saxe", "solve_saxe"]

SAXE = Objective(name="saxe", target="identity", head=False,
                 k=lambda L: L - 1, n=lambda L: L,
                 scale=lambda rho, L: np.asarray(rho, float) ** (1.0 / L),
                 pref=lambda lam, rho, L: np.asarray(rho, float) ** ((2.0 - L) / L) / lam,
                 paper_units=False)
SAXE_FAMILY = register(LinearFamily(SAXE), default_for=(RegressionProblem,))


def simulate_saxe(problem, *, stepper=None, lr=None, steps=None, method=None, times=None, t_max=None, rtol=None, atol=None,
                  solver=None, record_every=None, record_log=None, runs=1, key=0,
                  init="aligned", optimizer=None, batch_size=None, data=None, snapshots=False,
                  progress=None, on_divergence="raise", dtype=None):
    """Gradient descent on the depth-L linear regression network; arguments as ``simulate_jepa``.

    Returns a Trajectory with .t, .modes (end-to-end map u_i^T Wbar u_i per mode), .loss."""
    return frontend.simulate(SAXE_FAMILY, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer,
                             options={"init": init, "batch_size": batch_size, "data": data,
                                      "snapshots": snapshots})


def solve_saxe(problem, *, times, lr=None, init=None, key=None):
    """Exact mode trajectories at ``times``. For L = 2 this is Saxe et al.'s logistic solution
    u(t) = rho e^(2 lam t) / (e^(2 lam t) - 1 + rho/u0) (theory/saxe.md). ``times`` and ``problem``
    may be those of a batch.  ``lr``: gradient descent at this step size, exactly (the per-mode discrete
    map, theory/discrete.md; for L = 2, u <- u (1 + lr (lam - sigma2 u))^2), on times lr * step.

    ``init`` (default: the aligned balanced init of the closed forms above): what ``simulate_saxe`` takes -- a
    dict {"W": (L, d, d)} (e.g. ``dy.inits.balanced(problem, lam, key=...)``) or an init name with ``key`` (the
    same draw as ``simulate_saxe(problem, init=..., key=key)``).  From a non-aligned init the exact answer is
    the two-layer lambda-balanced flow (depth 2, whitened input Sxx = I, W2^T W2 - W1 W1^T = lambda I: the
    matrix Riccati solution, theory/saxe.md "From any lambda-balanced init"); ``.settings["theory"]`` names
    it.  Anything else is refused, naming why (the exact flow is the reference there)."""
    if init is None or (isinstance(init, str) and init == "aligned"):
        if key is not None:
            raise ValueError(f"key={key!r} without init: the key draws a random init (init='orthogonal', ...) and "
                             "nothing else here; drop it, or pass init")
        return frontend.solve(lambda p, t, lr=None: solve_linear(SAXE, p, times=t, lr=lr), problem, times,
                              per_run={"lr": lr})
    return _solve_from_init(problem, times, init, key, lr)


def _solve_from_init(problem, times, init, key, lr):
    """The two-layer lambda-balanced exact flow (``linear.riccati``) from ``init``, as a theory Trajectory."""
    check_instance("problem", problem, RegressionProblem, "one RegressionProblem (not a batch)")
    if lr is not None:
        raise ValueError("lr (the exact discrete map of gradient descent) is of the aligned init; from init=... the "
                         "exact theory is the gradient flow's: drop lr, or compare gradient descent with it at first "
                         "order")
    times = check_array("times", times, ndim=1)
    if isinstance(init, dict):
        params = init_params(problem, SAXE, init, key=0)
        label = "custom"
    else:
        check_choice("init", init, set(INITS))
        if key is None:
            raise ValueError(f"init={init!r} is drawn from a key: pass key= (the same key as simulate_saxe's run gives "
                             "the same init)")
        params = init_params(problem, SAXE, init, key=init_key(run_keys(key, 1)[0]))
        label = init
    if problem.depth != 2:
        raise ValueError(f"solve_saxe from a non-aligned init is exact for depth 2 only (the two-layer lambda-balanced "
                         f"Riccati solution); this problem has depth {problem.depth}: simulate it with method='flow'")
    d = problem.d
    off = float(np.abs(problem.Sxx - np.eye(d)).max())
    if off > 1e-12:
        raise ValueError(f"solve_saxe from a non-aligned init needs whitened input, Sxx = I (max |Sxx - I| = "
                         f"{off:.3g}): simulate with method='flow', or whiten the inputs")
    W = params["W"]
    Wbar, lam = two_layer_flow(W[0], W[1], problem.Syx, times)
    U, V = problem.basis, problem.right_basis
    WV = Wbar @ V
    modes = np.einsum("ji,tji->ti", U, WV)
    loss = (0.5 * np.einsum("tij,jk,tik->t", Wbar, problem.Sxx, Wbar) - np.einsum("tij,ij->t", Wbar, problem.Syx)
            + 0.5 * float(np.trace(problem.Syy)))
    settings = {"units": "gf", "objective": "saxe", "init": label, "lambda": lam,
                "theory": "two-layer lambda-balanced flow (matrix Riccati closed form; theory/saxe.md)", **versions()}
    return Trajectory(t=times, fields={"modes": modes, "gains": np.linalg.norm(WV, axis=1), "loss": loss},
                      kind="theory", model="saxe", problem=problem, settings=settings,
                      fixed_point=SAXE.fixed_point(problem.rho, 2), method="exact", primary="modes")
