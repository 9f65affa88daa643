"""The family contract: what a model family declares, and the registry the rest of the library reads.

Everything that is the same for every family (batching, keys, record schedules, dtype, progress,
divergence, settings, the :class:`~dynamics.core.trajectory.Trajectory`, save/load, crosscheck,
sharding across devices) is written once in ``core``.  A family only says what is its own, by
subclassing :class:`Family` -- in the spirit of diffrax's ``AbstractSolver`` or scipy's ``OdeSolver``.

How to add a family (the worked example, with line counts: docs/adding_a_family.md)
-----------------------------------------------------------------------------------
1. Write the problem type: a frozen dataclass holding the data, the init scale and whatever the
   family's theory needs, with input checks in ``__post_init__``.  Decorate it with
   :func:`register_problem` so that results save and load it.  Serialisation is generic (array
   fields go to the ``.npz`` archive, the rest to its JSON header) unless the class defines
   ``state()`` / ``from_state(arrays, scalars)``.
2. Write the configuration: a final frozen dataclass subclass of :class:`~dynamics.core.config.Config`
   (decorated with ``configclass``) holding the family's own options -- structural choices as plain
   fields, numbers as ``number()`` fields (one per run) -- checked in ``__post_init__``; what needs the
   problems or the stepper in ``check`` (refuse a stepper there where it does not apply, e.g. ``Flow``
   for minibatches).  A family without options uses ``NoConfig``.
3. Write the engine :class:`~dynamics.core.engine.Model` of one run: ``grad``, ``observe`` and an
   optional ``update_aux``, pure JAX functions of (params, aux, ctx, key).  Build it from the
   problem's *structure* and the configuration's (``config.structure()``; cache it with
   ``functools.lru_cache``): every *number* (rates, weight decay, EMA rate, ...) is read from ``ctx``,
   so that a batch may vary it -- the contract tests check that a batch over each float field of the
   problem and each number of the configuration equals its single runs.
   Then subclass :class:`Family` in ``dynamics/families/<name>.py``: declare ``name``, ``problem_type``,
   ``primary`` (the recorded field, shape (T, F), that a cross-check compares), ``config`` and, where
   not the default ``(GD, Flow)``, ``steppers``; implement ``shape`` (the structure, as {label: value}),
   ``model``, ``initial_state`` (numpy pytrees for one run from its key) and ``context`` (the per-run
   arrays and numbers).  Override ``theory`` where the family has one: a
   :class:`~dynamics.core.theory.Theory` of the reference trajectory, fixed point, critical times and
   stability limit, each where known.  Where one run's ``initial_state`` dispatches several small JAX
   operations (~0.1 ms each), override ``initial_states`` to draw the whole batch at once (bit for bit
   the per-run states: the contract tests check it).
4. Register an instance with :func:`register` at the bottom of the module, and write the public
   ``simulate_<name>`` as a short alias of :func:`dynamics.core.frontend.simulate` (the one driver)
   with its keywords written out (``stepper=`` among them), and ``solve_<name>`` through
   :func:`dynamics.core.frontend.solve`.  Every stepper the family declares then comes for free:
   ``core.flow`` integrates d theta/dt = -``Model.grad`` adaptively for ``Flow``.
5. Give the family an :meth:`Family.example` (a small problem, a learning rate and a step count at
   which its headline is visible): the contract tests in ``tests/test_contract.py`` then run the
   whole battery (batch = single, a batch over every number, keys, save/load, crosscheck,
   divergence, float32, lr and seed batches, the generic driver = the alias, t = lr * step, Flow up
   to ``t_max``) on it; add its alias to the test's ``ALIASES``.
6. Import the module in ``dynamics/families/__init__.py``, export the public names from
   ``dynamics/__init__.py``, and derive its equations in ``theory/<name>.md``.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .config import NoConfig
from .keys import unstack_keys
from .steppers import GD, Flow
from .theory import Theory

__all__ = ["Family", "Example", "register", "default_family", "get_family", "families", "register_problem",
           "problem_type", "problem_state", "problem_from_state", "StatefulProblem"]

_FAMILIES: dict[str, "Family"] = {}
_PROBLEMS: dict[str, type] = {}
_DEFAULTS: dict[type, str] = {}


@dataclass(frozen=True)
class Example:
    """A small run of a family for the contract tests and docs.

    problem : a problem instance.   lr : a stable learning rate.   steps : enough to pass the
    family's headline (every critical time reached when it has them).   short_steps : a run too
    short to reach any critical time.   diverging_lr : a learning rate that diverges, or None for a
    family whose gradient descent cannot (a bounded objective with bounded gradients: the policy gradient).
    options : the family's own options.   method : the simulation method.   optimizer : its optimizer.
    has_theory : whether ``Family.theory`` applies to this problem (then crosscheck must pass against it).
    rtol, ctol : the cross-check tolerances at this lr (discretisation error O(lr)).
    diverging_options : options (replacing ``options``) under which ``diverging_lr`` diverges.
    halving : where gradient descent is in its first-order regime against the flow (its error halves
        with lr): a dict with any of "problem", "lr", "steps", "options" replacing the example's
        (default: the example itself); "options" may be a callable lr -> options, for a family whose flow
        limit keeps a per-step number's rate fixed (Adam's betas: beta = 1 - rate x lr).
    random_init : options (replacing ``options``) under which the initial state is drawn from each run's
        key, or None where the init is deterministic (the contract tests then check that different keys
        give different runs).
    """

    problem: Any
    lr: float
    steps: int
    short_steps: int
    diverging_lr: float | None
    options: dict = field(default_factory=dict)
    has_theory: bool = True
    method: str = "gd"
    optimizer: str = "sgd"
    rtol: float = 0.05
    ctol: float = 0.02
    diverging_options: dict = field(default_factory=dict)
    halving: dict = field(default_factory=dict)
    random_init: dict | None = None


class Family(abc.ABC):
    """The contract of a model family (see the module docstring for the step-by-step guide).

    Declared attributes (5)
    -----------------------
    name : registry key; ``Trajectory.model`` of its results.
    problem_type : the problem class (or a tuple of classes) ``simulate`` accepts.
    primary : the recorded field a cross-check compares, shape (T, F) for one run.
    config : the family's configuration type (a final frozen :class:`~dynamics.core.config.Config`
        dataclass; :class:`~dynamics.core.config.NoConfig` where it has no options).  The driver builds it
        from the ``simulate_*`` keywords, ``Config.check`` validates it against the problems and the
        stepper (and refuses a stepper where it does not apply), ``Config.record`` goes into a result's
        settings.  Its numbers are per run (a batch may vary them): the hooks below get each run's own.
    steppers : the stepper types it accepts (:mod:`dynamics.core.steppers`): ``GD`` (the engine's
        optimizer steps) and ``Flow`` (the exact gradient flow of the same parameters, adaptive) by
        default; the u * v families add ``Dual`` and ``DualRK4``.  A stepper's ``form`` ("params" or
        "dual") is what the hooks receive as ``form``.

    Required (4): ``shape``, ``model``, ``initial_state``, ``context``.
    Optional (6, with defaults): ``theory``, ``example``, ``variants`` (more examples), ``initial_states`` (a batch at once),
    ``times`` and ``flow_tolerances`` (a family whose time or integrated variable is not the default).
    """

    name: ClassVar[str]
    problem_type: ClassVar[Any]
    primary: ClassVar[str]
    config: ClassVar[type] = NoConfig
    steppers: ClassVar[tuple] = (GD, Flow)

    # ------------------------------------------------------------------ required
    @abc.abstractmethod
    def shape(self, problem) -> dict:
        """The structure that must agree between the problems of one batch, as {label: value} (shapes and
        structural choices: their arrays are stacked, and the engine model is built from run 0's).
        Every *number* of a problem (rates, weight decay, EMA rate, init scale, ...) must instead reach
        the model through :meth:`context`, one per run, so that a batch may vary it: the contract tests
        check that a batch over each number equals its single runs."""

    @abc.abstractmethod
    def model(self, problem, form: str, config):
        """The engine :class:`~dynamics.core.engine.Model` for one run (cached by the family), built from the
        configuration's *structure* (``config.structure()``: its numbers are placeholders that refuse to
        be used -- read them from the context)."""

    @abc.abstractmethod
    def initial_state(self, problem, key, form: str, config) -> tuple:
        """(params, aux): numpy pytrees of one run's initial parameters and auxiliary state (``config``:
        that run's configuration, its numbers scalars)."""

    @abc.abstractmethod
    def context(self, problem, form: str, config) -> dict:
        """Per-run constants of the step (arrays): the problem's, and the configuration's numbers
        (``config``: that run's)."""

    # ------------------------------------------------------------------ optional
    def theory(self, problem, config=None) -> Theory | None:
        """The family's analytic answers for ``problem`` (a :class:`~dynamics.core.theory.Theory`: the
        reference trajectory, fixed point, critical times, stability limit, ...), or None where it has
        none.  ``config`` (None: the default configuration) where the answers depend on it (a custom
        init has no theory)."""
        return None

    def initial_states(self, problems, keys, form: str, configs) -> list:
        """[(params, aux)] of a batch: ``problems``, ``keys`` (a JAX key array, one init key per run) and
        ``configs`` (one per run) aligned.  The default calls :meth:`initial_state` per run; a family may
        draw the whole batch at once (it must give the same states, bit for bit)."""
        return [self.initial_state(p, k, form, c) for p, k, c in zip(problems, unstack_keys(keys), configs)]

    def flow_tolerances(self, problems, form: str, rtol: float, atol):
        """(rtol, atol) the solver gets for an ODE method, from the user's (atol None: ``core.flow``'s
        default, rtol * 1e-3 * the largest initial parameter).  A family whose integrated variables
        are not its recorded ones rescales them here, so that ``rtol`` means the accuracy of the result."""
        return rtol, atol

    def times(self, problems, lrs, steps, form: str):
        """(t (R, T), extra fields {name: (R, T)}) of the recorded steps. Default: t = lr * step."""
        return np.asarray(lrs, float)[:, None] * np.asarray(steps, float)[None, :], {}

    def example(self) -> Example | None:
        """A small run for the contract tests (see :class:`Example`); every registered family gives
        one (the contract tests refuse a family without), the default is None."""
        return None

    def variants(self) -> dict:
        """More examples the contract battery runs, {label: Example}: structures the family supports beyond
        its example's (the linear families' rectangular layers and bottlenecks).  Default: none."""
        return {}

    def __repr__(self):
        return f"<family {self.name}: primary {self.primary!r}, steppers {[c.__name__ for c in self.steppers]}>"


def register(family: Family, *, default_for: tuple = ()) -> Family:
    """Add a family instance to the registry (the contract tests run over every registered one).

    default_for : problem types for which this family is the default of a theory call that names no
        family (``dy.critical_times(problem)``; e.g. jepa for SSLProblem, saxe for RegressionProblem).
    """
    missing = [a for a in ("name", "problem_type", "primary") if a not in dir(family)]
    if missing:     # declared class attributes (the ClassVars of Family have no defaults)
        raise TypeError(f"{type(family).__name__} must declare {missing} (see dynamics.core.family)")
    _FAMILIES[family.name] = family
    for cls in default_for:
        _DEFAULTS[cls] = family.name
    return family


def default_family(problem) -> Family | None:
    """The family registered as the default for the problem's type (or a base type of it), or None."""
    for cls in type(problem).__mro__:
        if cls in _DEFAULTS:
            return _FAMILIES[_DEFAULTS[cls]]
    return None


def get_family(name) -> Family:
    """The registered family called ``name`` ("jepa", "mae", "saxe", ...; a Family is returned as it is);
    a ValueError lists the registered names."""
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


class StatefulProblem(abc.ABC):
    """A problem type that serialises itself (instead of the generic dataclass split): it implements
    ``state()`` -> (arrays, scalars) and the classmethod ``from_state(arrays, scalars)``, and may give a
    short JSON ``summary()`` for a result's ``to_dict``."""

    @abc.abstractmethod
    def state(self) -> tuple[dict, dict]:
        """(arrays, scalars) that :meth:`from_state` turns back into an equal problem."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, arrays: dict, scalars: dict):
        """The problem from its :meth:`state`."""

    def summary(self) -> dict:
        """A few defining numbers for a JSON summary ({} by default)."""
        return {}


def problem_state(problem) -> tuple[dict, dict]:
    """(arrays, scalars) of a problem: its own ``state()`` or the generic dataclass split."""
    if isinstance(problem, StatefulProblem):
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
    if issubclass(cls, StatefulProblem):
        return cls.from_state(arrays, scalars)
    return cls(**{k: np.asarray(v) for k, v in arrays.items()}, **scalars["fields"])
