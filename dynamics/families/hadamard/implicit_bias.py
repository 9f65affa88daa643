"""Where gradient descent on a diagonal linear network ends, at any step size (theory/dln_steps.md).

Gradient descent on (u, v), stepped in w = u + v, z = u - v (``hadamard.family``), is

    w <- w (1 - lr g),   z <- z (1 + lr g),   g = grad L(beta_k) = X^T (X beta_k - y) / n,

so with x_j = lr g_j (|x_j| < 1) and the init w_0 = z_0 = sqrt(2) alpha, exactly

    alpha_k^2 := w_k z_k / 2 = alpha^2 prod_j (1 - x_j^2),                                      (1)
    beta_k = alpha_k^2 sinh(phi_k),   phi_k / 2 = -sum_j arctanh(x_j) = m_k + delta_k,            (2)

with m_k = -lr sum_j g_j in range(X^T) and delta_k = -sum_j (arctanh(x_j) - x_j).  At convergence
(X beta = P y, P the projection onto range(X)) these are the optimality conditions of

    beta_inf = argmin_{X beta = P y}  psi_{alpha_inf}(beta) - <delta_inf, beta>,                 (3)
    psi_a(beta) = (1/2) sum_i [beta_i arcsinh(beta_i / a_i^2) - sqrt(beta_i^2 + a_i^4) + a_i^2],

a strictly convex problem with one solution (Even, Pesme, Gunasekar & Flammarion, NeurIPS 2023,
Theorem 1: their perturbation beta~_0 is alpha_inf^2 sinh(2 delta_inf) here).  As lr -> 0, alpha_inf =
alpha and delta_inf = 0: (3) is then the exact endpoint of the gradient flow (Woodworth et al. 2020).

At lr > 0 the effective init alpha_inf and the shift delta_inf depend on the path gradient descent
takes.  :func:`implicit_bias` evaluates the sums in (1)-(2) along the *flow's* path (Euler-Maclaurin):

    sum_k F(lr g_k)  ~  (1/lr) int_0^inf F(lr g(t)) dt + F(lr g(0)) / 2,                          (4)

an approximation whose error is O(lr) in the path (GD's iterates vs the flow at t = lr k); its
measured validity is in benchmarks/results/dln_finite_step.md.  :func:`hyperbolic_interpolator`
solves (3) by Newton's method on its dual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.compare import FLOW_ERROR_FACTOR, GD_TOLERANCES, Outcome, Reference, closing_lines, flow_rtol, verdict
from ...core.io import jsonable
from ...core.steppers import GD, Flow
from ...core.trajectory import Trajectory
from ...core.validation import check_instance, check_positive
from .interpolator import hyperbolic_interpolator
from .model import HadamardProblem
from .stages import default_tau_max

__all__ = ["ImplicitBias", "EndpointCheck", "implicit_bias", "hyperbolic_interpolator", "effective_init_scale"]

#: the flow's relative tolerance for the path integrals of (4)
_PATH_RTOL = 1e-10
#: the sums of eq. (4) are taken to have converged when their estimated tail is below this (far below the
#: approximation's own O(lr) error and the quadrature's ~1e-5)
TAIL_TOL = 1e-8
#: records of the flow's path per pass (trapezoid rule; the error estimate halves them)
_PATH_POINTS = 4097


def effective_init_scale(sim):
    """alpha_k per coordinate at each record of a gradient-descent run (or its flow) of a DLN, from the
    recorded conserved quantity u^2 - v^2 = w z = 2 alpha_k^2 (eq. 1): (T, p); the last row is
    Even et al.'s effective init alpha_inf once the run has converged.  Constant (= alpha) for the flow."""
    check_instance("sim", sim, Trajectory, "a DLN simulation with method 'gd' or 'flow'")
    if "conserved" not in sim.fields:
        raise ValueError("sim has no 'conserved' field (u^2 - v^2): simulate the DLN with method 'gd' or 'flow'")
    c = np.asarray(sim.conserved, float)
    if np.any(c <= 0):
        raise ValueError("u^2 - v^2 <= 0 in some coordinate: lr |g| >= 1 flipped a sign in that run (eq. 1 "
                         "needs lr |g| < 1)")
    return np.sqrt(c / 2.0)


@dataclass(frozen=True)
class EndpointCheck(Outcome):
    """A run's last record against the predicted endpoint.

    error : max_i |beta_sim - beta_pred| / max(max_i |beta_pred|, tiny);  rtol : the one tolerance;
    gradient : max |grad L| at the run's last record, relative to max |grad L(0)| (the run has converged
    when it is <= ``converged_below``); outcome "passed" | "failed" | "inconclusive" (not converged).
    """

    error: float
    rtol: float
    gradient: float
    converged_below: float
    outcome: str
    reasons: tuple = ()
    advice: str = ""

    def __repr__(self):
        return f"EndpointCheck({verdict(self.outcome)}: error {self.error:.3g}, tolerance {self.rtol:g})"

    def summary(self):
        lines = [f"crosscheck simulation vs implicit-bias endpoint: {verdict(self.outcome)} "
                 f"(relative error {self.error:.3e}, tolerance {self.rtol:g}; gradient at the last record "
                 f"{self.gradient:.2e} of its initial size)"]
        return "\n".join(lines + closing_lines(self.reasons, self.advice))

    __str__ = summary

    def to_dict(self):
        return jsonable({"outcome": self.outcome, "passed": self.passed, "error": self.error, "rtol": self.rtol,
                         "gradient": self.gradient, "reasons": list(self.reasons), "advice": self.advice})


@dataclass(frozen=True)
class ImplicitBias(Reference):
    """The predicted endpoint of a diagonal linear network trained from alpha (sqrt(2), 0).

    beta (p,) : the endpoint, eq. (3).   lr : None for the gradient flow (exact), else the step of the
    gradient descent it predicts (eq. (4): approximate, O(lr) in the path).
    init_scale (p,) : alpha_inf;  shift (p,) : delta_inf;  flow_beta (p,) : the flow's endpoint (lr -> 0),
    so that ``step_effect`` = max |beta - flow_beta| is the size of what the step changes.
    quadrature_error : estimated relative error of the path integrals (0 for the flow).
    problem : the DLNProblem (its gradient tells whether a run has converged).
    """

    problem: HadamardProblem
    beta: np.ndarray
    lr: float | None
    init_scale: np.ndarray
    shift: np.ndarray
    flow_beta: np.ndarray
    quadrature_error: float = 0.0

    def __repr__(self):
        what = "the gradient flow's endpoint (exact)" if self.lr is None else f"gradient descent's at lr = {self.lr:g}"
        return (f"ImplicitBias({what}: p = {self.beta.size}, max |beta| = {np.abs(self.beta).max():.4g}, step effect "
                f"{self.step_effect:.3g}, min alpha_inf / alpha = {float(np.min(self.init_scale)) / self.problem.init_scale:.3g})")

    @property
    def step_effect(self) -> float:
        return float(np.abs(self.beta - self.flow_beta).max())

    def crosscheck(self, sim, *, rtol=None):
        """Compare the last record of a DLN run with this endpoint (see :class:`EndpointCheck`).  The
        tolerance: for the flow's endpoint against a flow, FLOW_ERROR_FACTOR x its rtol; against
        gradient descent, or for a finite lr, 5 % (GD's curve tolerance; measured errors in
        benchmarks/results/dln_finite_step.md)."""
        check_instance("sim", sim, Trajectory, "a DLN simulation")
        if getattr(sim, "batched", False):
            raise ValueError("ImplicitBias.crosscheck compares one run: pick it with sim.run(i)")
        stepper = sim.stepper
        run_lr = float(stepper.lr) if isinstance(stepper, GD) else None
        if isinstance(stepper, GD) and stepper.optimizer != "sgd":
            raise ValueError(f"sim is {stepper.describe()}: the implicit-bias endpoint is plain gradient "
                             "descent's (optimizer 'sgd')")
        if self.lr is not None and run_lr != self.lr:
            raise ValueError(f"this endpoint is gradient descent's at lr = {self.lr:g}, the run's "
                             f"{'lr = %g' % run_lr if run_lr is not None else 'is the flow'}: compare with "
                             f"implicit_bias(problem, lr={run_lr})")
        frtol = flow_rtol(sim)
        if rtol is None:
            rtol = FLOW_ERROR_FACTOR * frtol if (frtol is not None and self.lr is None) else GD_TOLERANCES[0]
        rtol = check_positive("rtol", rtol)
        beta = np.asarray(sim.beta, float)[-1]
        if beta.shape != self.beta.shape:
            raise ValueError(f"sim.beta has {beta.shape[0]} coordinates, this endpoint {self.beta.shape[0]}")
        scale = max(float(np.abs(self.beta).max()), np.finfo(float).tiny)
        error = float(np.abs(beta - self.beta).max() / scale)
        # converged: the gradient left is small against the one at the init (an unconverged run that
        # differs is INCONCLUSIVE, never FAIL)
        gtol = 1e-2 * rtol
        g0 = float(np.abs(self.problem.grad(np.zeros_like(beta))).max())
        grad = float(np.abs(self.problem.grad(beta)).max()) / max(g0, np.finfo(float).tiny)
        reasons, advice = [], ""
        if error <= rtol:
            outcome = "passed"
        elif grad > gtol:
            outcome = "inconclusive"
            reasons.append(f"the run has not converged: max |grad L| at its last record (t = {float(sim.t[-1]):.4g}) "
                           f"is {grad:.2e} of its initial size (> {gtol:.1e}); its error {error:.3g} > {rtol:g} "
                           "may be distance still to travel")
            advice = "run longer (more steps, or a larger t_max) until the gradient has decayed"
        else:
            outcome = "failed"
            reasons.append(f"the converged run ends {error:.3g} (relative to max |beta|) from the predicted "
                           f"endpoint > {rtol:g}")
            if self.lr is not None:
                advice = ("at a finite lr the prediction is approximate (O(lr) in the path, "
                          "benchmarks/results/dln_finite_step.md): compare at a smaller lr, or pass a wider rtol")
            elif run_lr is not None:
                advice = (f"gradient descent at lr = {run_lr:g} ends elsewhere than the flow (the step changes "
                          f"the solution, theory/dln_steps.md): compare with implicit_bias(problem, lr={run_lr:g}), "
                          "or run at a smaller lr")
            else:
                advice = "the flow's endpoint is exact: check the run's init and its solver tolerance"
        return EndpointCheck(error=error, rtol=rtol, gradient=grad, converged_below=gtol, outcome=outcome,
                             reasons=tuple(reasons), advice=advice)

    def to_dict(self):
        return jsonable({"problem": self.problem.name, "beta": self.beta, "lr": self.lr, "init_scale": self.init_scale, "shift": self.shift,
                         "flow_beta": self.flow_beta, "step_effect": self.step_effect,
                         "quadrature_error": self.quadrature_error})


def _regression(problem):
    """(X, y) of a u * v linear regression started at alpha (sqrt(2), 0) (a DLN), else ValueError."""
    reg = problem.regression()
    if reg is None or not (np.allclose(problem.u0, np.sqrt(2.0)) and np.all(problem.v0 == 0)):
        raise ValueError(f"problem: the implicit-bias endpoint is that of a diagonal linear network (beta = u * v "
                         f"on a linear regression, from alpha (sqrt(2), 0)), got a {type(problem).__name__}")
    return reg


def _path_integrals(problem, lr, t_end):
    """(A, D, quadrature error, max |lr g|, where) of eq. (4) on the flow's path up to ``t_end``:
    A = sum_k ln(1 - x_k^2), D = -sum_k (arctanh x_k - x_k), x = lr g(t), by the trapezoid rule on a grid
    dense in log time early and in linear time late (the error estimate: the rule on every other point)."""
    from ...core import frontend
    from ...core.family import get_family

    lin = np.linspace(0.0, t_end, _PATH_POINTS)
    t = np.unique(np.concatenate([lin, np.geomspace(t_end * 1e-7, t_end, _PATH_POINTS)]))
    sim = frontend.simulate(get_family(problem.name), problem, Flow(rtol=_PATH_RTOL), times=t, progress=False)
    g = np.asarray([problem.grad(b) for b in np.asarray(sim.beta, float)])
    x = lr * g
    xmax = np.abs(x).max(axis=1)
    if xmax.max() >= 1.0:
        i = int(np.argmax(xmax >= 1.0))
        raise ValueError(f"lr = {lr:g}: lr |grad L| reaches {xmax.max():.3g} >= 1 on the flow's path (first at t = "
                         f"{t[i]:.4g}): a step then flips the sign of u + v or u - v and eq. (1)-(3) do not apply; "
                         f"the prediction needs lr < {lr / xmax.max():.4g} (theory/dln_steps.md)")
    fa, fd = np.log1p(-x * x), -(np.arctanh(x) - x)

    def integrals(sl):
        ts = t[sl]
        return (np.trapezoid(fa[sl], ts, axis=0) / lr + 0.5 * fa[0],
                np.trapezoid(fd[sl], ts, axis=0) / lr + 0.5 * fd[0])

    A, D = integrals(slice(None))
    A2, D2 = integrals(slice(None, None, 2)) if (t.size - 1) % 2 == 0 else integrals(slice(0, t.size - 1, 2))
    # what the sums still lack past t_end: ~ lr g(t_end)^2 times the time the gradient takes to decay, bounded
    # by t_end itself once it decays (a coordinate heading to 0 decays on ~1 / alpha^2: slowly, but its
    # gradient, and so its share of the sums, is then already tiny)
    tail = float(lr * np.max(g[-1] ** 2) * t[-1])
    return A, D, (np.abs(A - A2).max(), np.abs(D - D2).max()), tail


def implicit_bias(problem, lr=None, *, t_end=None):
    """The predicted endpoint of gradient descent at step ``lr`` on a DLN (an :class:`ImplicitBias`; compare
    a run with ``dy.crosscheck(sim, implicit_bias(problem, lr))``); with ``lr=None`` the gradient flow's
    endpoint (exact: eq. (3) with alpha_inf = alpha, delta = 0).  At lr > 0, alpha_inf and delta_inf come
    from eq. (4) on the flow's path (approximate: O(lr); theory/dln_steps.md).

    t_end : how far along the flow's path to integrate (default: past the last predicted stage, doubled
        until the sums' tail, ~ lr max g(t_end)^2 t_end, is below TAIL_TOL).
    Raises ValueError where lr |grad L| >= 1 on the path (a step would flip a sign: no such theory)."""
    check_instance("problem", problem, HadamardProblem, "a DLNProblem")
    X, y = _regression(problem)
    a = np.full(problem.p, problem.init_scale)
    flow_beta = hyperbolic_interpolator(X, y, a)
    if lr is None:
        return ImplicitBias(problem=problem, beta=flow_beta, lr=None, init_scale=a, shift=np.zeros(problem.p),
                            flow_beta=flow_beta)
    lr = check_positive("lr", lr)
    g0 = float(np.abs(problem.grad(np.zeros(problem.p))).max())
    if lr * g0 >= 1.0:          # refused at the init already, before the flow's solve
        raise ValueError(f"lr = {lr:g}: lr |grad L| reaches {lr * g0:.3g} >= 1 on the flow's path (first at t = 0): "
                         "a step then flips the sign of u + v or u - v and eq. (1)-(3) do not apply; the prediction "
                         f"needs lr < {1.0 / g0:.4g} (theory/dln_steps.md)")
    t_end = (default_tau_max([problem]) * problem.log_inv_alpha if t_end is None
             else check_positive("t_end", t_end))
    for _ in range(12):
        A, D, (errA, errD), tail = _path_integrals(problem, lr, t_end)
        if tail <= TAIL_TOL:
            break
        t_end *= 2.0
    else:
        raise ValueError(f"t_end: the flow has not settled by t = {t_end:.4g} (the sums' tail is still ~{tail:.2e} > "
                         f"{TAIL_TOL:g}); give a larger t_end")
    alpha_inf = problem.init_scale * np.exp(0.5 * A)
    beta = hyperbolic_interpolator(X, y, alpha_inf, D)
    # the quadrature's error moves the endpoint by about its share of the exponent 2 (delta + log alpha)
    qerr = float(max(errA, 2.0 * errD))
    return ImplicitBias(problem=problem, beta=beta, lr=lr, init_scale=alpha_inf, shift=D, flow_beta=flow_beta,
                        quadrature_error=qerr)
