"""The family contract: what a model family declares, and the registry the rest of the library reads.

Everything that is the same for every family (batching, keys, record schedules, dtype, progress,
divergence, settings, the :class:`~dynamics.core.trajectory.Trajectory`, save/load, crosscheck,
sharding across devices) is written once in ``core``.  A family only says what is its own, by
subclassing :class:`Family` -- in the spirit of diffrax's ``AbstractSolver`` or scipy's ``OdeSolver``.

How to add a family (the files and lines a contributor touches)
---------------------------------------------------------------
1. Write the problem type: a frozen dataclass holding the data, the init scale and whatever the
   family's theory needs, with input checks in ``__post_init__``.  Decorate it with
   :func:`register_problem` so that results save and load it.  Serialisation is generic (array
   fields go to the ``.npz`` archive, the rest to its JSON header) unless the class defines
   ``state()`` / ``from_state(arrays, scalars)``.
2. Subclass :class:`Family` in ``dynamics/families/<name>.py`` and fill in the declared attributes:
   ``name``, ``problem_type``, ``primary`` (the recorded field, shape (T, F), that a cross-check
   compares), ``methods``, ``optimizers`` and the abstract methods ``shape`` (what must agree within
   a batch), ``model`` (the engine's gradient and observation for one run, see
   :class:`~dynamics.core.engine.Model`), ``initial_state`` (numpy pytrees for one run from its key)
   and ``context`` (per-problem constants).  Override ``fixed_point`` and ``critical_times`` where
   the family knows them, and ``theory`` where it has an analytic solution.  Where one run's
   ``initial_state`` dispatches several small JAX operations (~0.1 ms each), override
   ``initial_states`` to draw the whole batch at once (equal to the per-run states bit for bit: the
   contract tests check it).
3. Register an instance with :func:`register` at the bottom of the module, and write the public
   ``simulate_<name>`` (and ``solve_<name>``) as thin functions that call
   :func:`dynamics.core.frontend.simulate` and :func:`dynamics.core.frontend.solve` with their
   keywords written out.
   ``method="flow"`` then comes for free: ``core.flow`` integrates d theta/dt = -``Model.grad`` (and
   an auxiliary state at the continuous rate of ``Model.update_aux``) adaptively; refuse it in
   ``check_options`` (method "flow") where the gradient has no flow (minibatches, a per-step rule).
4. Give the family an :meth:`Family.example` (a small problem, a learning rate and a step count at
   which its headline is visible): the contract tests in ``tests/test_contract.py`` then run the
   whole battery (batch = single, keys, save/load, crosscheck, divergence, float32, lr and seed
   batches) on it without any new test.
5. Import the module in ``dynamics/families/__init__.py`` and export the public names from
   ``dynamics/__init__.py``.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .keys import unstack_keys
from .steppers import GD, Flow

__all__ = ["Family", "Example", "register", "get_family", "families", "register_problem",
           "problem_type", "problem_state", "problem_from_state"]

_FAMILIES: dict[str, "Family"] = {}
_PROBLEMS: dict[str, type] = {}


@dataclass(frozen=True)
class Example:
    """A small run of a family for the contract tests and docs.

    problem : a problem instance.   lr : a stable learning rate.   steps : enough to pass the
    family's headline (every critical time reached when it has them).   short_steps : a run too
    short to reach any critical time.   diverging_lr : a learning rate that diverges.
    options : the family's own options.   method : the simulation method.   optimizer : its optimizer.
    has_theory : whether ``Family.theory`` applies to this problem (then crosscheck must pass against it).
    rtol, ctol : the cross-check tolerances at this lr (discretisation error O(lr)).
    diverging_options : options (replacing ``options``) under which ``diverging_lr`` diverges.
    halving : where gradient descent is in its first-order regime against the flow (its error halves
        with lr): a dict with any of "problem", "lr", "steps", "options" replacing the example's
        (default: the example itself).
    """

    problem: Any
    lr: float
    steps: int
    short_steps: int
    diverging_lr: float
    options: dict = field(default_factory=dict)
    has_theory: bool = True
    method: str = "gd"
    optimizer: str = "sgd"
    rtol: float = 0.05
    ctol: float = 0.02
    diverging_options: dict = field(default_factory=dict)
    halving: dict = field(default_factory=dict)


class Family(abc.ABC):
    """The contract of a model family (see the module docstring for the step-by-step guide).

    Declared attributes
    -------------------
    name : registry key; ``Trajectory.model`` of its results.
    problem_type : the problem class (or a tuple of classes) ``simulate`` accepts.
    shape_name : what ``shape(problem)`` returns, in words (for the error on a mixed batch).
    primary : the recorded field a cross-check compares, shape (T, F) for one run.
    steppers : the stepper types it accepts (:mod:`dynamics.core.steppers`): ``GD`` (the engine's
        optimizer steps) and ``Flow`` (the exact gradient flow of the same parameters, adaptive) for
        every family unless ``check_options`` refuses one; the u * v families add ``Dual`` and ``DualRK4``.
        A stepper's ``form`` ("params" or "dual") is what the hooks below receive as ``form``.
    optimizers : whether GD takes any optax optimizer (else only plain "sgd").
    error_floor : relative errors are |a - b| / max(|b|, error_floor * max_t |b|) per feature; 0 is a
        plain relative error (the deep linear modes never cross 0), > 0 for fields that decay to 0.
    """

    name: ClassVar[str]
    problem_type: ClassVar[Any]
    primary: ClassVar[str]
    shape_name: ClassVar[str] = "one shape"
    steppers: ClassVar[tuple] = (GD, Flow)
    optimizers: ClassVar[bool] = True
    error_floor: ClassVar[float] = 0.0

    # ------------------------------------------------------------------ required
    @abc.abstractmethod
    def shape(self, problem) -> tuple:
        """What must agree between the problems of one batch (their arrays are stacked)."""

    @abc.abstractmethod
    def model(self, problem, form: str, options: dict):
        """The engine :class:`~dynamics.core.engine.Model` for one run (cached by the family)."""

    @abc.abstractmethod
    def initial_state(self, problem, key, form: str, options: dict) -> tuple:
        """(params, aux): numpy pytrees of one run's initial parameters and auxiliary state."""

    @abc.abstractmethod
    def context(self, problem, form: str, options: dict) -> dict:
        """Per-problem constants of the step (arrays), shared by the runs of one problem."""

    # ------------------------------------------------------------------ optional
    def initial_states(self, problems, keys, form: str, options) -> list:
        """[(params, aux)] of a batch: ``problems``, ``keys`` (a JAX key array, one init key per run) and
        ``options`` (one dict per run) aligned.  The default calls :meth:`initial_state` per run; a
        family may draw the whole batch at once (it must give the same states, bit for bit)."""
        return [self.initial_state(p, k, form, o) for p, k, o in zip(problems, unstack_keys(keys), options)]

    def check_options(self, problems, method: str, options: dict) -> dict:
        """Validate the family's own options (return them, normalised)."""
        return options

    def flow_tolerances(self, problems, form: str, rtol: float, atol):
        """(rtol, atol) the solver gets for an ODE method, from the user's (atol None: ``core.flow``'s
        default, rtol * 1e-3 * the largest initial parameter).  A family whose integrated variables
        are not its recorded ones rescales them here, so that ``rtol`` means the accuracy of the result."""
        return rtol, atol

    def fixed_point(self, problem, options: dict):
        """(F,) asymptote of the primary field, or None where the family does not know it."""
        return None

    def critical_times(self, problem, fraction: float):
        """(F,) exact times at which the primary field reaches ``fraction`` of its fixed point (inf:
        never), or None where there is no theory for this problem."""
        return None

    def theory(self, problem, times):
        """The analytic reference on the 1-D grid ``times`` (a Trajectory, or a reference object with a
        ``crosscheck`` method such as the rank-growth ``Stages``), or None."""
        return None

    def times(self, problems, lrs, steps, form: str):
        """(t (R, T), extra fields {name: (R, T)}) of the recorded steps. Default: t = lr * step."""
        return np.asarray(lrs, float)[:, None] * np.asarray(steps, float)[None, :], {}

    def warn_float32(self, problems, lrs, options: dict, probe) -> None:
        """Warn where float32 cannot resolve the run (the updates round away).  ``probe()`` is the generic
        check (one float64 gradient: is lr |g| / |theta| of some parameter block below float32's
        resolution?), which this default runs; a family with a sharper criterion replaces it."""
        probe()

    def settings(self, problem, method: str, options: dict) -> dict:
        """The family's own entries of a result's settings record (JSON-able)."""
        return {}

    def example(self) -> Example | None:
        """A small run for the contract tests (see :class:`Example`); every registered family gives
        one (the contract tests refuse a family without), the default is None."""
        return None

    def __repr__(self):
        return f"<family {self.name}: primary {self.primary!r}, steppers {[c.__name__ for c in self.steppers]}>"


def register(family: Family) -> Family:
    """Add a family instance to the registry (the contract tests run over every registered one)."""
    for attr in ("name", "problem_type", "primary"):
        if not hasattr(family, attr):
            raise TypeError(f"{type(family).__name__} must declare {attr!r} (see dynamics.core.family)")
    _FAMILIES[family.name] = family
    return family


def get_family(name) -> Family:
    if isinstance(name, Family):
        return name
    if not isinstance(name, str):
        raise TypeError(f"family name must be a str, one of {sorted(_FAMILIES)} (or a Family), got "
                        f"{type(name).__name__}: {name!r:.60}")
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family name {name!r}; registered: {sorted(_FAMILIES)}") from None


def families() -> dict:
    """name -> Family, for every registered family."""
    return dict(_FAMILIES)


# ---------------------------------------------------------------------------------- problem types
def register_problem(cls):
    """Class decorator: make a problem type loadable by ``dynamics.load`` (keyed by class name)."""
    _PROBLEMS[cls.__name__] = cls
    return cls


def problem_type(name) -> type:
    try:
        return _PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem type {name!r} in the file; known: {sorted(_PROBLEMS)}") from None


def problem_state(problem) -> tuple[dict, dict]:
    """(arrays, scalars) of a problem: its own ``state()`` or the generic dataclass split."""
    if hasattr(problem, "state"):
        arrays, scalars = problem.state()
        return arrays, {**scalars, "class": type(problem).__name__}
    if not dataclasses.is_dataclass(problem):
        raise TypeError(f"cannot save a problem of type {type(problem).__name__}: not a dataclass and no state()")
    arrays, scalars = {}, {}
    for f in dataclasses.fields(problem):
        v = getattr(problem, f.name)
        if isinstance(v, np.ndarray):
            arrays[f.name] = v
        else:
            scalars[f.name] = v
    return arrays, {"class": type(problem).__name__, "fields": scalars}


def problem_from_state(arrays: dict, scalars: dict):
    cls = problem_type(scalars["class"])
    if hasattr(cls, "from_state"):
        return cls.from_state(arrays, scalars)
    return cls(**{k: np.asarray(v) for k, v in arrays.items()}, **scalars["fields"])
