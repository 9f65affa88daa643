"""A family's configuration: one frozen, typed object per family, validated when it is built.

A run is (family, problem, stepper, configuration): the problem holds the data and the numbers of the
task, the stepper how time advances (``core.steppers``), and the configuration everything else a family
lets its user choose -- an init kind, a minibatch size, a data set, an EMA rate, an init scale.  As in
diffrax (``diffeqsolve(terms, solver, ..., stepsize_controller=...)``) the choices arrive as typed
objects; the driver (``core.frontend``) builds one from the ``simulate_*`` keywords.

Two kinds of field
------------------
* **structural** (the default): a choice that decides the compiled program (an init kind, a batch
  size, whether to record snapshots, a data set).  One value for every run of a call; the family builds
  its engine model from it.
* **numbers** (declared with :func:`number`): a float that the family reads from its per-run context,
  never from the model's closure -- a scalar (every run) or a 1-D sequence (one value per run), so a batch
  may vary it and equals its single runs (the contract tests check it).  Whether a number is None (the
  feature off, e.g. no EMA target) is structural.

The model is built from :meth:`Config.structure`, a copy whose numbers are placeholders that refuse
arithmetic: a family that bakes a number into its model fails loudly instead of giving every run of a
batch run 0's value.

A family's configuration is a final frozen dataclass subclass of :class:`Config` (abstract-or-final):
validation that needs no problem goes in ``__post_init__`` (after ``super().__post_init__()``, which
normalises the numbers), validation that needs the problems and the stepper in :meth:`Config.check`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .steppers import GD

__all__ = ["Config", "NoConfig", "configclass", "number", "PerRun", "sgd_only"]


def configclass(cls):
    """Decorator of a family's configuration: a frozen dataclass (compared by identity: its fields may
    hold arrays) that keeps :class:`Config`'s repr."""
    return dataclass(frozen=True, repr=False, eq=False)(cls)


def sgd_only(family, stepper):
    """Refuse a GD stepper with an optimizer other than plain "sgd" (for a family whose model is not a
    plain gradient: e.g. a multiplicatively stepped u * v model, or BYOL's EMA and DirectPred updates)."""
    if isinstance(stepper, GD) and stepper.optimizer != "sgd":
        name = stepper.optimizer if isinstance(stepper.optimizer, str) else "a custom optimizer"
        raise ValueError(f"{family.name} integrates its flow with plain gradient steps: optimizer must be "
                         f"'sgd', got {name!r}")


def number(default=None, *, doc: str = ""):
    """A dataclass field for a per-run number (see the module docstring): a float, a 1-D sequence of
    floats (one per run) or None."""
    return dataclasses.field(default=default, metadata={"number": True, "doc": doc})


class PerRun:
    """The placeholder of a number in :meth:`Config.structure`: the model must read it from ``ctx``."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<per-run number {self.name}: read it from the context>"

    def _refuse(self, *args):
        raise TypeError(f"{self.name} is a per-run number of the configuration: a model must read it from its "
                        "context (Family.context puts it there), not from the configuration it was built from")

    __float__ = __int__ = __bool__ = __index__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __pow__ = __rpow__ = __neg__ = __lt__ = __le__ = __gt__ = __ge__ = __array__ = _refuse


def _as_number(name, value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        raise TypeError(f"{name} must be a number or a 1-D sequence of numbers (one per run), got "
                        f"{type(value).__name__}: {value!r:.60}")
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a 1-D sequence of numbers (one per run), got "
                        f"{type(value).__name__}: {value!r:.60}") from None
    if a.ndim > 1 or (a.ndim == 1 and a.size == 0):
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence (one per run), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {value!r:.80}")
    return float(a) if a.ndim == 0 else tuple(float(x) for x in a)


@dataclass(frozen=True, repr=False, eq=False)
class Config:
    """Base of the family configurations (see the module docstring).  Subclasses are final frozen
    dataclasses; their ``__post_init__`` calls ``super().__post_init__()`` first."""

    def __post_init__(self):
        if type(self) is Config:
            raise TypeError("Config is abstract: use a family's configuration (e.g. dy.LinearConfig, dy.NoConfig)")
        for name in self.numbers():
            object.__setattr__(self, name, _as_number(name, getattr(self, name)))

    # ------------------------------------------------------------------ the two kinds of field
    @classmethod
    def numbers(cls) -> tuple[str, ...]:
        """The names of the per-run numbers."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("number"))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every field's name."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def per_run(self) -> dict:
        """{name: values} of the numbers given one per run (1-D sequences)."""
        return {k: getattr(self, k) for k in self.numbers() if isinstance(getattr(self, k), tuple)}

    def split(self, runs: int) -> list:
        """One configuration per run (each number a scalar): a per-run sequence has 1 or ``runs`` values."""
        seqs = self.per_run()
        for k, v in seqs.items():
            if len(v) not in (1, runs):
                raise ValueError(f"{k} has {len(v)} values for a batch of {runs} runs: give 1 or {runs}")
        if not seqs:
            return [self] * runs
        return [dataclasses.replace(self, **{k: v[0 if len(v) == 1 else i] for k, v in seqs.items()})
                for i in range(runs)]

    def structure(self):
        """A copy whose numbers are :class:`PerRun` placeholders (None stays None): what a model is built from."""
        out = object.__new__(type(self))
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            object.__setattr__(out, f.name, PerRun(f.name) if f.metadata.get("number") and v is not None else v)
        return out

    # ------------------------------------------------------------------ the family's own checks and record
    def check(self, family, problems, stepper):
        """Validate this configuration against the problems of a call and its stepper; return it, normalised
        (e.g. defaults that depend on the problem filled in).  Refuse a stepper where it does not apply
        (e.g. ``Flow`` with minibatches: no gradient flow).  Default: no check."""
        return self

    def record(self, problem) -> dict:
        """The JSON-able entries a result's settings record (default: every field; arrays and dicts as
        "custom").  ``problem`` is a run's problem, for a family that records some of its numbers too."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) and f.metadata.get("number") else (
                v if v is None or isinstance(v, (str, bool, int, float)) else "custom")
        return out

    def __repr__(self):
        fields = ", ".join(f"{f.name}={_short(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"


def _short(v):
    if isinstance(v, np.ndarray):
        return f"array{v.shape}"
    if isinstance(v, (tuple, list)) and any(isinstance(x, np.ndarray) for x in v):
        return "(" + ", ".join(_short(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_short(x)}" for k, x in v.items()) + "}"
    return repr(v)


@configclass
class NoConfig(Config):
    """The configuration of a family that has no options of its own."""
