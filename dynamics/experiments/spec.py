"""Spec parsing: one place for the schema checks of every experiment (each error names the key)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

__all__ = ["SpecError", "NoTheoryError", "NUM", "TOP", "Experiment", "check_table"]


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
        out[key] = val
    return out
