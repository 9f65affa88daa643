"""Spec parsing: one place for the schema checks of every experiment (each error names the key)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

__all__ = ["SpecError", "NoTheoryError", "NUM", "TOP", "Experiment", "check_table", "check_values", "RULES",
           "MAX_SPEC_DEPTH"]


class SpecError(ValueError):
    """A bad experiment spec (the message names the key)."""


class NoTheoryError(SpecError):
    """A good spec whose experiment has no closed-form theory to ``solve``."""


NUM = (int, float)
# key -> (accepted types, required, default)
TOP = {"experiment": ((str,), True, None), "title": ((str,), False, ""),
       # the figure's file name (without .png) when the experiment draws one figure; `dynamics run`
       # defaults it to the spec file's name, so two specs of one experiment never share a figure name
       "figure": ((str,), False, "")}


@dataclass(frozen=True)
class Experiment:
    """One spec kind: its schema (tables of key -> (types, required, default)), an extra check of
    the parsed spec, the runner ``run(spec, out, progress, echo) -> (figures {name: fig}, summary,
    results {file name: Trajectory})`` and, where a theory summary exists, ``solve(spec) -> dict``."""

    name: str
    schema: dict
    run: Callable
    check: Callable | None = None
    solve: Callable | None = None
    figure: str | None = None


#: the largest depth a spec may ask for: the exact theory's cost grows with L (partial fractions of
#: psi^(2L)), a depth-100 MAE critical time already takes seconds
MAX_SPEC_DEPTH = 64

# value rules by key name, applied to every experiment's tables after the type checks (parse time):
# key -> (test, what it must be)
_POS = (lambda v: v > 0 and v < float("inf"), "a finite number > 0")
RULES = {
    "lr": _POS, "horizon": _POS, "t_max": _POS, "init_scale": _POS, "tau_max": _POS, "sigma2": (
        lambda v: 0 <= v < float("inf"), "a finite number >= 0"), "eta": (lambda v: 0 <= v < float("inf"),
                                                                          "a finite number >= 0"),
    "alpha_p": _POS, "head_lr_ratio": _POS,
    "records": (lambda v: v >= 2, "an integer >= 2"), "steps": (lambda v: v >= 1, "an integer >= 1"),
    "random_runs": (lambda v: v >= 0, "an integer >= 0"), "seed": (lambda v: v >= 0, "an integer >= 0"),
    "fraction": (lambda v: 0 < v < 1, "a number in (0, 1)"), "top": (lambda v: v >= 1, "an integer >= 1"),
    "n": (lambda v: v >= 1, "an integer >= 1"), "d": (lambda v: v >= 1, "an integer >= 1"),
    "n_samples": (lambda v: v >= 1, "an integer >= 1"), "n_tokens": (lambda v: v >= 1, "an integer >= 1"),
    "depth": (lambda v: 1 <= v <= MAX_SPEC_DEPTH, f"an integer in [1, {MAX_SPEC_DEPTH}]"),
    "depths": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SPEC_DEPTH,
               f"integers in [1, {MAX_SPEC_DEPTH}]"),
}


def check_values(spec):
    """Apply :data:`RULES` to every table of a parsed spec (lists: every entry; tables such as
    ``lr = {sgd = ..}``: every value); a SpecError names the key, the rule and the value."""
    for table_name, table in spec.items():
        if not isinstance(table, dict):
            continue
        for key, val in table.items():
            if key not in RULES or val is None:
                continue
            ok, what = RULES[key]
            vals = list(val.values()) if isinstance(val, dict) else (val if isinstance(val, list) else [val])
            for v in vals:
                good = isinstance(v, (int, float)) and not isinstance(v, bool)
                try:
                    good = good and bool(ok(v))
                except TypeError:
                    good = False
                if not good:
                    raise SpecError(f"{table_name}.{key} must be {what}, got {val!r}")


def check_table(table, schema, where):
    out = {}
    for key in table:
        if key not in schema:
            raise SpecError(f"unknown key {where}{key!r}; accepted: {sorted(schema)}")
    for key, rule in schema.items():
        if isinstance(rule, dict):
            if key not in table:
                raise SpecError(f"missing table [{key}]")
            if not isinstance(table[key], dict):
                raise SpecError(f"{key!r} must be a table [{key}], got {type(table[key]).__name__}")
            out[key] = check_table(table[key], rule, f"{key}.")
            continue
        types, required, default = rule
        if key not in table:
            if required:
                raise SpecError(f"missing required key {where}{key}")
            out[key] = copy.deepcopy(default)
            continue
        val = table[key]
        if isinstance(val, bool) and bool not in types:
            raise SpecError(f"{where}{key} must be {'/'.join(t.__name__ for t in types)}, got a bool")
        if not isinstance(val, types):
            raise SpecError(f"{where}{key} must be {'/'.join(t.__name__ for t in types)}, "
                            f"got {type(val).__name__} {val!r}")
        if isinstance(val, list) and not val:
            raise SpecError(f"{where}{key} must hold at least one value, got an empty list")
        out[key] = val
    return out
