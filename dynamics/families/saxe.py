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
from .linear.family import LinearFamily
from .linear.network import Objective
from .linear.problems import RegressionProblem
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


def solve_saxe(problem, *, times, lr=None):
    """Exact mode trajectories at ``times``. For L = 2 this is Saxe et al.'s logistic solution
    u(t) = rho e^(2 lam t) / (e^(2 lam t) - 1 + rho/u0) (theory/saxe.md). ``times`` and ``problem``
    may be those of a batch.  ``lr``: gradient descent at this step size, exactly (the per-mode discrete
    map, theory/discrete.md; for L = 2, u <- u (1 + lr (lam - sigma2 u))^2), on times lr * step."""
    return frontend.solve(lambda p, t, lr=None: solve_linear(SAXE, p, times=t, lr=lr), problem, times,
                          per_run={"lr": lr})
