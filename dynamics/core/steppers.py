"""Steppers: how time advances in a simulation, as typed, frozen configuration objects.

Modelled on diffrax's solvers and step-size controllers: a stepper is built (and validated) once, and
the one driver (:func:`dynamics.core.frontend.simulate`) runs any stepper on any family that declares
it.  A stepper says *how* a run advances; the family says *what* is learned; the record schedule
(``times``, ``t_max``, ``record_every``, ``record_log``) says *where* it is recorded.

=====================  ==============  =========================================================
stepper                form            what it integrates
=====================  ==============  =========================================================
``GD(lr, steps)``      parameters      ``steps`` optimizer steps of size ``lr`` (``"sgd"``: the
                                       explicit Euler step of gradient flow; any optax optimizer)
``Flow(rtol, ...)``    parameters      the exact gradient flow d theta/dt = -grad L, adaptive
                                       (diffrax; ``core.flow``)
``Dual(rtol, ...)``    dual variable   the same flow of a u * v model written in its dual
                                       variable s, in rescaled time tau (theory/rank_growth.md)
``DualRK4(dtau, n)``   dual variable   ``steps`` classical RK4 steps of size ``dtau`` on that
                                       dual vector field (fixed step; the engine's RK4 rule)
=====================  ==============  =========================================================

The *form* names the variables a family's model evolves: ``"params"`` (the network's parameters) or
``"dual"`` (the u * v families' small-init form).  A family lists the steppers it accepts in
``Family.steppers``.  Abstract or final (equinox's rule): :class:`AbstractStepper` and
:class:`AbstractAdaptive` are abstract; the four steppers are final.

A result records its stepper: ``traj.stepper`` rebuilds it from ``traj.settings["stepper"]`` (also
after ``save`` / ``load``), and ``crosscheck`` chooses its tolerances by the stepper's type.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, final

import numpy as np

from .validation import check_array, check_choice, check_int, check_positive

__all__ = ["AbstractStepper", "AbstractAdaptive", "GD", "Flow", "Dual", "DualRK4", "STEPPERS",
           "stepper_from_dict", "DEFAULT_RTOL", "SOLVERS"]

#: the adaptive steppers' default relative tolerance: ~1e-8 relative global accuracy (tests/test_flow.py)
DEFAULT_RTOL = 1e-10
#: adaptive solvers -> gradient evaluations per accepted or rejected step (FSAL pairs reuse a stage)
SOLVERS = {"tsit5": 6, "dopri5": 6, "dopri8": 12, "kvaerno5": 7}
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


class AbstractStepper(abc.ABC):
    """How a simulation advances (abstract).

    method : the name recorded as ``Trajectory.method`` ("gd", "flow", "dual", "dual_rk4").
    form : the variables the family's model evolves: "params" or "dual".
    adaptive : an error-controlled ODE solve recorded on a time grid (else fixed steps).
    """

    method: ClassVar[str]
    form: ClassVar[str] = "params"
    adaptive: ClassVar[bool] = False

    def to_dict(self) -> dict:
        """JSON-able fields with the stepper's type (a custom optimizer is recorded as "custom")."""
        out = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = "custom" if callable(v) else (list(v) if isinstance(v, tuple) else v)
        return out

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for reports: the stepper and its settings."""


def _check_lr(value, name="lr"):
    """A learning rate (float > 0) or a batch of them (tuple of floats > 0, one per run)."""
    a = check_array(name, value)
    if a.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array of learning rates, got shape {a.shape}")
    if a.size == 0 or np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got {a}")
    return float(a) if a.ndim == 0 else tuple(float(x) for x in a)


@final
@dataclass(frozen=True)
class GD(AbstractStepper):
    """Gradient descent: ``steps`` optimizer steps of size ``lr`` on the parameters.

    lr : float > 0, or a 1-D sequence (one per run of a batch).   steps : int >= 1.
    optimizer : "sgd" (x <- x - lr grad L: the explicit Euler step of gradient flow, so a run differs
        from the flow by O(lr) at gradient-flow time t = lr * step), "momentum", "adam", "adamw", or a
        callable lr -> optax.GradientTransformation.
    """

    lr: Any
    steps: int
    optimizer: str | Callable = "sgd"

    method: ClassVar[str] = "gd"

    def __post_init__(self):
        object.__setattr__(self, "lr", _check_lr(self.lr))
        object.__setattr__(self, "steps", check_int("steps", self.steps, minimum=1))
        if not callable(self.optimizer):
            check_choice("optimizer", self.optimizer, set(OPTIMIZERS))

    def describe(self):
        opt = self.optimizer if isinstance(self.optimizer, str) else "custom optimizer"
        return f"GD(lr={self.lr}, steps={self.steps}, {opt})"


@final
@dataclass(frozen=True)
class DualRK4(AbstractStepper):
    """Fixed-step classical RK4 on a u * v family's dual vector field ds/dtau = -g(beta(s)).

    dtau : the step in rescaled time tau = t / log(1/alpha) (or a 1-D sequence, one per run).
    steps : int >= 1.
    Fourth order in dtau; the adaptive :class:`Dual` reaches a given accuracy in far fewer steps
    (benchmarks/results/flow.md), this one is kept as a fixed-step reference.
    """

    dtau: Any
    steps: int

    method: ClassVar[str] = "dual_rk4"
    form: ClassVar[str] = "dual"

    def __post_init__(self):
        object.__setattr__(self, "dtau", _check_lr(self.dtau, "dtau"))
        object.__setattr__(self, "steps", check_int("steps", self.steps, minimum=1))

    @property
    def lr(self):
        """The engine's step size (dtau)."""
        return self.dtau

    def describe(self):
        return f"DualRK4(dtau={self.dtau}, steps={self.steps})"


class AbstractAdaptive(AbstractStepper):
    """An error-controlled ODE solve (diffrax), recorded on a time grid (abstract).

    rtol : relative tolerance of the local error (default 1e-10: ~1e-8 relative global accuracy of
        the recorded fields in float64).   atol : absolute tolerance; None = the family's default
        (``rtol * 1e-3 * max |theta(0)|`` per run: a tiny init is resolved relatively).
    solver : "tsit5" (default), "dopri5", "dopri8" or "kvaerno5" (theory/flow.md sec. 2).
    max_steps : most solver steps between two records (then the run stops with a message).
    """

    rtol: float
    atol: float | None
    solver: str
    max_steps: int
    adaptive: ClassVar[bool] = True

    def _validate(self):
        object.__setattr__(self, "rtol", check_positive("rtol", self.rtol, upper=0.1))
        if self.atol is not None:
            object.__setattr__(self, "atol", check_positive("atol", self.atol))
        check_choice("solver", self.solver, set(SOLVERS))
        object.__setattr__(self, "max_steps", check_int("max_steps", self.max_steps, minimum=16))

    def describe(self):
        atol = "" if self.atol is None else f", atol={self.atol:g}"
        return f"{type(self).__name__}(rtol={self.rtol:g}{atol}, {self.solver})"


@final
@dataclass(frozen=True)
class Flow(AbstractAdaptive):
    """The exact gradient flow d theta/dt = -grad L(theta) of the parameters, adaptive (``core.flow``).

    lr : the step size whose per-step rules define the flow's rates where a family has them (an EMA
        target with decay m per step moves at rate (1 - m) / lr; identity_head's head rate) and on
        whose grid lr * step a flow "on gd's grid" records; default 1.  Otherwise unused.
    """

    rtol: float = DEFAULT_RTOL
    atol: float | None = None
    solver: str = "tsit5"
    max_steps: int = 1_000_000
    lr: Any = 1.0

    method: ClassVar[str] = "flow"

    def __post_init__(self):
        self._validate()
        object.__setattr__(self, "lr", _check_lr(self.lr))


@final
@dataclass(frozen=True)
class Dual(AbstractAdaptive):
    """The gradient flow of a u * v model in its dual variable s, in rescaled time tau, adaptive.

    beta_i = (1/4) [a_i alpha^(2(1 - s_i)) - b_i alpha^(2(1 + s_i))], ds/dtau = -g(beta(s))
    (theory/rank_growth.md): reaches alpha = 1e-128 and below without underflow.  ``rtol`` is the
    accuracy of beta (the family rescales it for s).  Record grids (``times``) are in tau.
    """

    rtol: float = DEFAULT_RTOL
    atol: float | None = None
    solver: str = "tsit5"
    max_steps: int = 1_000_000

    method: ClassVar[str] = "dual"
    form: ClassVar[str] = "dual"

    def __post_init__(self):
        self._validate()


STEPPERS = {cls.__name__: cls for cls in (GD, Flow, Dual, DualRK4)}


def stepper_from_dict(d) -> AbstractStepper | None:
    """The stepper a result recorded (``to_dict``), or None for a record without one and for a GD
    with a custom optimizer (a callable cannot be rebuilt from its record)."""
    if not isinstance(d, dict) or d.get("type") not in STEPPERS:
        return None
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "type"}
    if fields.get("optimizer") == "custom":
        return None
    return STEPPERS[d["type"]](**fields)
