"""Deep linear JEPA vs MAE (Littwin et al. 2024): simulators, exact per-mode theory, critical times.

Losses (theory/jepa.md sec. 2), encoder Wbar = W_L ... W_1, predictor/decoder V:

    JEPA: L = 1/2 E || V Wbar x - SG(Wbar y) ||^2        MAE: L = 1/2 E || V Wbar x - y ||^2

From the aligned balanced init W_a(0) = V(0) = eps^(1/L) I each feature decouples, v = w per layer,
Wbar_i = v^L, and in gradient-flow time t = lr * steps (sec. 3):

    JEPA: dv/dt = lam v^(2L) (1 - v/rho)          v -> rho,             Wbar_i -> rho^L
    MAE:  dv/dt = lam v^L (1 - v^(L+1)/rho)       v -> rho^(1/(L+1)),   Wbar_i -> rho^(L/(L+1))

solved exactly by ``mode_integrals``.  The paper's time units are t_paper = L t (``units="paper"``).
"""

from __future__ import annotations

import numpy as np

from ..core import frontend
from ..core.frontend import critical_times  # noqa: F401  (public through jepa: dy.critical_times)
from ..core.family import register
from ..core.validation import check_choice, check_instance
from .linear.family import LinearFamily
from .linear.network import Objective
from .linear.finite_samples import FiniteSampleStudy, finite_sample_study  # noqa: F401  (public through jepa)
from .linear.generalized import commutator, generalized_modes  # noqa: F401  (public through jepa)
from .linear.generalized import generalized_fixed_points as _generalized_fixed_points
from .linear.problems import SSLProblem
from .linear.theory import on_kept, solve_linear, theory_inputs

__all__ = ["JEPA", "MAE", "simulate_jepa", "simulate_mae", "solve_jepa", "solve_mae",
           "critical_times", "critical_times_asymptotic", "fixed_points", "SSLProblem", "generalized_modes",
           "generalized_fixed_points", "commutator", "finite_sample_study", "FiniteSampleStudy"]

JEPA = Objective(name="jepa", target="self", head=True,
                 k=lambda L: 2 * L, n=lambda L: 1,
                 scale=lambda rho, L: np.asarray(rho, float),
                 pref=lambda lam, rho, L: np.asarray(rho, float) ** (1 - 2 * L) / lam)

MAE = Objective(name="mae", target="identity", head=True,
                k=lambda L: L, n=lambda L: L + 1,
                scale=lambda rho, L: np.asarray(rho, float) ** (1.0 / (L + 1)),
                pref=lambda lam, rho, L: np.asarray(rho, float) ** ((1.0 - L) / (L + 1)) / lam)

OBJECTIVES = {"jepa": JEPA, "mae": MAE}
JEPA_FAMILY = register(LinearFamily(JEPA), default_for=(SSLProblem,))
MAE_FAMILY = register(LinearFamily(MAE))

_SIM_DOC = """Simulate {name} by gradient descent on the full (dense) network.

    problem : SSLProblem, or a list of problems with one (d, depth) for a batch.
    lr : float or (R,) array of learning rates (a batch).   steps : number of steps.
    record_every : record every k steps (default steps // 500), or record_log=N log-spaced records.
    runs : number of runs (seeds) in the batch.   key : int seed, PRNG key, or a sequence of them
        (one per run); run i of a batch uses fold_in(key, i) (dynamics.core.keys), so runs=1
        reproduces run 0, and key=[k0, k1, ...] reproduces each seed run alone.
    init : "aligned" (the theory's eps^(1/L) I), "aligned_gauge" (dense hidden layers, same
        dynamics), "orthogonal", "gaussian", or a dict of arrays.
    optimizer : "sgd" (gradient flow's Euler step), "momentum", "adam", "adamw", or lr -> optax.
    batch_size : None for population gradients; an int for minibatch SGD on fresh Gaussian samples
        (or on ``data``).   data : (x, y) arrays (n, d) for a finite sample (full batch unless
        batch_size).   {extra}snapshots : also record the parameters.
    method : "gd" (the default: optimizer steps of size lr) or "flow" (the exact gradient flow of the
        same network by an adaptive solver, ``dynamics.core.flow``: on ``times``, up to ``t_max``, or
        on the grid lr * step that "gd" records; ``rtol`` / ``atol`` its tolerances, default 1e-10).
    progress : tqdm bar (None = when stderr is a terminal).   on_divergence : "raise" or "stop".
    dtype : float64 (default) or float32.

    Returns a Trajectory: .t (T,) gradient-flow time lr * step ((R, T) for several lr), .modes (T, d)
    encoder strength u_i^T Wbar u_i in the feature basis, .head (T, d) the same for V, .loss (T,);
    leading axis R for a batch.  See theory/jepa.md.
    """


def simulate_jepa(problem, *, stepper=None, lr=None, steps=None, method=None, times=None, t_max=None, rtol=None, atol=None,
                  solver=None, record_every=None, record_log=None, runs=1, key=0,
                  init="aligned", optimizer=None, batch_size=None, data=None, ema=None,
                  snapshots=False, progress=None, on_divergence="raise", dtype=None):
    return frontend.simulate(JEPA_FAMILY, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer,
                             options={"init": init, "batch_size": batch_size, "data": data, "ema": ema,
                                      "snapshots": snapshots})


def simulate_mae(problem, *, stepper=None, lr=None, steps=None, method=None, times=None, t_max=None, rtol=None, atol=None,
                 solver=None, record_every=None, record_log=None, runs=1, key=0,
                 init="aligned", optimizer=None, batch_size=None, data=None, snapshots=False,
                 progress=None, on_divergence="raise", dtype=None):
    return frontend.simulate(MAE_FAMILY, problem, stepper, lr=lr, steps=steps, record_every=record_every,
                             method=method, times=times, t_max=t_max, rtol=rtol, atol=atol, solver=solver,
                             record_log=record_log, runs=runs, key=key, dtype=dtype, progress=progress,
                             on_divergence=on_divergence, optimizer=optimizer,
                             options={"init": init, "batch_size": batch_size, "data": data,
                                      "snapshots": snapshots})


simulate_jepa.__doc__ = _SIM_DOC.format(
    name="JEPA (stop-gradient self-distillation)",
    extra="ema : None (stop-gradient on the online encoder, the theory) or a decay in [0, 1) for an\n"
          "        EMA target encoder (simulator only).\n    ")
simulate_mae.__doc__ = _SIM_DOC.format(name="MAE (reconstruction of y)", extra="")


def solve_jepa(problem, *, times, units="gf", approx=None, lr=None):
    """Exact JEPA trajectory at ``times`` (aligned balanced init): the implicit solution

        lam t = [ -sum_{m=1}^{2L-1} 1/(m rho^(2L-m-1) v^m) + rho^(1-2L) ln(v/(rho - v)) ]_{v0}^{v}

    inverted for v by a vectorised safeguarded Newton iteration.  Returns a Trajectory with the
    simulator's fields (.modes = v^L, .head = v, .loss).  ``units="paper"``: times are t_paper = L t.
    Features with rho <= eps^(1/L) shrink (RuntimeWarning).  theory/jepa.md sec. 3.
    ``times`` may be the (R, T) times of a batch, ``problem`` a list (one per run): a batched result.
    A problem whose covariances do not commute is refused (the error names its normalised commutator)
    unless ``approx="generalized"``: the same formulas on its generalised modes, an approximation named
    with its estimated error in ``.settings["approximation"]`` (theory/generalized.md).
    ``lr``: gradient descent at this step size instead of the flow, exactly (the per-mode discrete map,
    theory/discrete.md), on times that lie on its grid lr * step (a simulation's ``t``); one lr per run
    for a batch.  ``crosscheck(gd, solve_jepa(p, times=gd.t, lr=lr))`` then compares to rounding.
    """
    return frontend.solve(lambda p, t, lr=None: solve_linear(JEPA, p, times=t, units=units, approx=approx, lr=lr),
                          problem, times, per_run={"lr": lr})


def solve_mae(problem, *, times, units="gf", approx=None, lr=None):
    """Exact MAE trajectory at ``times``: lam t = int_{v0}^{v} du / (u^L (1 - u^(L+1)/rho)), in closed
    form through partial fractions over the (L+1)-th roots of unity (theory/jepa.md sec. 3).
    ``times`` and ``problem`` may be those of a batch, and ``approx`` and ``lr`` (gradient descent's exact
    discrete map) are as in :func:`solve_jepa`."""
    return frontend.solve(lambda p, t, lr=None: solve_linear(MAE, p, times=t, units=units, approx=approx, lr=lr),
                          problem, times, per_run={"lr": lr})


def _objective(objective):
    check_choice("objective", objective, set(OBJECTIVES))
    return OBJECTIVES[objective]


def critical_times_asymptotic(problem, objective="jepa", *, units="gf", approx=None):
    """The paper's small-init series for the critical time (an approximation; theory/jepa.md sec. 4).

    JEPA:  t* ~ (1/lam) sum_{n=1}^{2L-1} 1 / (n rho^(2L-n-1) eps^(n/L))      (drops Theta(log eps))
    MAE:   t* ~ 1 / (lam (L-1) eps^((L-1)/L))  for L >= 2;   (1/lam) ln(1/eps) for L = 1.
    The leading JEPA term n = 2L-1 is rho-free; rho enters through the 2L-2 sub-leading terms.  Through a narrow
    encoder (``embed_dim``): the kept features' (``dy.kept_features``), inf for the others.
    """
    obj = _objective(objective)
    check_choice("units", units, {"gf", "paper"})
    check_instance("problem", problem, SSLProblem)
    if not problem.plain:       # a narrow encoder: the kept features' series, inf for the others (bottleneck.py)
        return on_kept(obj, problem, "critical_times_asymptotic",
                       lambda sub: critical_times_asymptotic(sub, objective, units=units), fill=np.inf, approx=approx)
    lam, rho, L, eps, scale, psi0 = theory_inputs(obj, problem, "critical_times_asymptotic", approx)
    if np.any(lam <= 0):
        lam, rho = np.where(lam > 0, lam, np.nan), np.where(lam > 0, rho, np.nan)
    if obj is JEPA:
        t = sum(1.0 / (n * rho ** (2 * L - n - 1) * eps ** (n / L)) for n in range(1, 2 * L)) / lam
    elif L >= 2:
        t = 1.0 / (lam * (L - 1) * eps ** ((L - 1) / L))
    else:
        t = np.log(1.0 / eps) / lam
    t = np.where((psi0 >= 1.0) | ~np.isfinite(t), np.inf, t)   # never learned (as critical_times)
    return t * L if units == "paper" else t


def fixed_points(problem, objective="jepa", *, approx=None):
    """Asymptotic encoder modes: rho^L (JEPA) or rho^(L/(L+1)) (MAE), shape (d,); through a narrow encoder
    (``embed_dim``) those of the kept features (``dy.kept_features``), 0 for the others.

    For a non-commuting problem the encoder modes are not determined by the covariances: refused, or
    with ``approx="generalized"`` the same formula on the generalised rho's (0 where rho <= 0).  What is
    exact there is :func:`generalized_fixed_points` (the predictor's eigenvalues, MAE's end-to-end map)."""
    obj = _objective(objective)
    check_instance("problem", problem, SSLProblem)
    if not problem.plain:       # a narrow encoder: the kept features' fixed points, 0 for the others (bottleneck.py)
        return on_kept(obj, problem, "fixed_points", lambda sub: fixed_points(sub, objective), fill=0.0, approx=approx)
    lam, rho, L, *_ = theory_inputs(obj, problem, "fixed_points", approx)   # the exact theory's checks
    with np.errstate(invalid="ignore"):
        return np.where(lam > 0, obj.fixed_point(np.where(lam > 0, rho, 1.0), L), 0.0)


def generalized_fixed_points(problem, objective="jepa"):
    """Exact fixed-point statements for any covariances (theory/generalized.md sec. 2): JEPA's predictor
    eigenvalues (those of Sxx^-1 Syx) and MAE's end-to-end map Syx Sxx^-1. See ``GeneralizedFixedPoints``."""
    _objective(objective)
    check_instance("problem", problem, SSLProblem)
    return _generalized_fixed_points(problem, objective)

