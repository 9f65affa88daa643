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
from .linear.network import INITS, Objective, encoder, init_params
from .linear.problems import RegressionProblem
from .linear.balanced_flow import balance_gaps, end_to_end_flow
from .linear.riccati import two_layer_flow
from .linear.theory import solve_linear
from .linear.small_init import VALIDITY, effective_init, effective_modes, error_estimates

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
    same draw as ``simulate_saxe(problem, init=..., key=key)``).  From a non-aligned init the exact answers are
    the two-layer lambda-balanced flow (depth 2, whitened input Sxx = I, W2^T W2 - W1 W1^T = lambda I: the
    matrix Riccati closed form, theory/saxe.md "From any lambda-balanced init") and, for a zero-balanced init
    at any depth and any covariances, the end-to-end flow (Arora, Cohen & Hazan 2018; theory/saxe.md
    "Balanced deep networks"); ``.settings["theory"]`` names the one used.  At depth 2 from a small unbalanced
    init (``init="gaussian"``) the small-init stage theory answers (the init's zero-balanced growing part, then the
    exact balanced flow; theory/saxe.md "From a small random init"), an approximation stated with its error in
    ``.settings["approximation"]``.  Anything else is refused, naming why (the exact flow is the reference there)."""
    if init is None or (isinstance(init, str) and init == "aligned"):
        if key is not None:
            raise ValueError(f"key={key!r} without init: the key draws a random init (init='orthogonal', ...) and "
                             "nothing else here; drop it, or pass init")
        return frontend.solve(lambda p, t, lr=None: solve_linear(SAXE, p, times=t, lr=lr), problem, times,
                              per_run={"lr": lr})
    return _solve_from_init(problem, times, init, key, lr)


def _own_shapes(problem, W):
    """The layers W_1, W_2 in their own shapes from the simulator's n x n slots."""
    return [w[:r, :c] for w, (r, c) in zip(W, problem.layer_shapes())]


def _small(problem, W):
    """(features whose effective init exceeds VALIDITY["max_init"] of their fixed point, every feature's fraction,
    the effective init's layers (W1_eff, W2_eff), its modes m0): whether the two-matrix stage theory applies to the
    layers W, and what it starts from (linear.small_init)."""
    W1e, W2e = effective_init(*_own_shapes(problem, W), problem.Syx)
    m0 = effective_modes(W1e, W2e, problem.basis, problem.right_basis)
    frac = np.abs(m0 / (problem.lam / problem.sigma2))
    return np.flatnonzero(frac > VALIDITY["max_init"]), frac, (W1e, W2e), m0


def _solve_from_init(problem, times, init, key, lr, *, stage=False):
    """The exact flow from a balanced ``init`` -- the two-layer closed form (``linear.riccati``) or the end-to-end
    flow (``linear.balanced_flow``) -- as a theory Trajectory, or a refusal naming why neither applies."""
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
    W = params["W"]
    L, d = problem.depth, problem.d
    gaps, lams = balance_gaps(list(W))
    # the balanced closed forms are written for the square network; a shaped one has the stage theory only
    whitened = problem.plain and float(np.abs(problem.Sxx - np.eye(d)).max()) <= 1e-12
    if L == 2 and whitened and gaps.max() <= 1e-10:
        try:
            Wbar, lam = two_layer_flow(W[0], W[1], problem.Syx, times)
        except ValueError as exc:       # name the argument that set the init (the fuzzers check it, and so do users)
            src = f"init={init!r} drawn from key={key!r}" if isinstance(init, str) else "init"
            raise ValueError(f"{src}: {exc}" + (" -- or another key" if isinstance(init, str) else "")) from None
        theory = "two-layer lambda-balanced flow (matrix Riccati closed form; theory/saxe.md)"
    elif (problem.plain or stage or problem.capacity >= problem.d) and (L == 1 or (gaps.max() <= 1e-10 and np.abs(lams).max()
                                                  <= 1e-10 * max(float(np.abs(W).max()) ** 2, 1e-300))):
        Wbar0 = encoder(W)[:problem.d_out, :problem.d_in]          # the padded slots' block (theory/saxe.md)
        square = problem.d_out == problem.d_in
        # slogdet's sign: det itself underflows to 0 at a small init in many dimensions
        sign0 = np.linalg.slogdet(Wbar0)[0] if square else 1.0
        sign_s = np.linalg.slogdet(problem.Syx)[0] if square else 1.0
        if L >= 2 and sign0 * sign_s < 0:
            src = f"init={init!r} drawn from key={key!r}" if isinstance(init, str) else "init"
            raise ValueError(f"{src}: det(W_L ... W_1) has the sign {sign0:+.0f}, opposite to det(Syx)'s {sign_s:+.0f}: "
                             "a balanced network cannot change that sign, so in exact arithmetic one mode stays on a "
                             "saddle for all time, and any floating-point run leaves it at a time its rounding sets (no "
                             "theory predicts it; measured in benchmarks/results/small_init_validity.md): draw another "
                             "key, or flip the sign of one row of W_L (or one column of W_1)")
        Wbar, lam = end_to_end_flow(Wbar0, problem.Sxx, problem.Syx, L, times), 0.0
        theory = ("end-to-end flow of a balanced network (Arora, Cohen & Hazan 2018: a d x d ODE, adaptive at rtol "
                  "1e-12; theory/saxe.md)")
    elif L == 2 and not stage and (problem.plain or problem.capacity >= problem.d) and \
            (small := _small(problem, W))[0].size == 0:
        # not balanced: the small-init stage theory (linear.small_init) -- the zero-balanced growing part of the
        # init, then the exact balanced flow from it (any shape without a bottleneck: the layers in their own shapes)
        (W1e, W2e), m0 = small[2], small[3]
        rho = problem.lam / problem.sigma2
        out = _solve_from_init(problem, times, {"W": [W1e, W2e]}, None, None, stage=True)
        t_err, c_err = error_estimates(m0, rho)
        out.settings.update(init=label, theory="small-init stage theory (two matrices): the init's zero-balanced "
                            "growing part, then " + out.settings["theory"],
                            approximation={"name": "small-init stages (two matrices)", "error_estimate": t_err,
                                           "curve_error": c_err, "exact": False, "effective_init": m0.tolist(),
                                           "source": VALIDITY["source"],
                                           "source_page": "theory/saxe.md, \"From a small random init\""})
        return out
    else:
        why = [] if gaps.max() <= 1e-10 else [f"the layers are not balanced (max |W_(a+1)^T W_(a+1) - W_a W_a^T - "
                                              f"lam I| = {gaps.max():.2g} of max |W_a|^2)"]
        if L == 2 and not whitened:
            why.append("the two-layer closed form needs whitened input, Sxx = I")
        if L == 2 and (problem.plain or problem.capacity >= problem.d):
            big, frac = _small(problem, W)[:2]
            why.append(f"it is not small enough for the small-init stage theory (feature(s) {big.tolist()} start at an "
                       f"effective {np.round(frac[big], 3).tolist()} of their fixed point, above "
                       f"{VALIDITY['max_init']:g})")
        if not problem.plain:
            why.append(f"this network has layers {problem.layer_shapes()}: from a non-aligned init a shaped network has "
                       "the end-to-end flow (balanced) and the small-init stage theory (depth 2), without a bottleneck "
                       f"(capacity >= its {problem.d} features)")
        if L > 2 and gaps.max() <= 1e-10:
            why.append(f"at depth {L} the end-to-end flow needs zero balance (W_(a+1)^T W_(a+1) = W_a W_a^T), the "
                       f"layers have lam = {np.round(lams, 4).tolist()}")
        raise ValueError("no exact theory from this init: " + "; ".join(why) + ". Exact: depth 2 with Sxx = I from a "
                         "lambda-balanced init (the matrix Riccati solution), or any depth and covariances from a "
                         "zero-balanced one (the end-to-end flow); dy.inits.balanced builds both; simulate this init "
                         "with method='flow'")
    U, V = problem.basis, problem.right_basis
    WV = Wbar @ V
    modes = np.einsum("ji,tji->ti", U, WV)
    loss = (0.5 * np.einsum("tij,jk,tik->t", Wbar, problem.Sxx, Wbar) - np.einsum("tij,ij->t", Wbar, problem.Syx)
            + 0.5 * float(np.trace(problem.Syy)))
    settings = {"units": "gf", "objective": "saxe", "init": label, "lambda": lam,
                "theory": theory, **versions()}
    return Trajectory(t=times, fields={"modes": modes, "gains": np.linalg.norm(WV, axis=1), "loss": loss},
                      kind="theory", model="saxe", problem=problem, settings=settings,
                      fixed_point=np.einsum("ji,jk,ki->i", U, np.linalg.solve(problem.Sxx, problem.Syx.T).T, V),
                      method="exact", primary="modes")
