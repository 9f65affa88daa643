"""Experiment specs (TOML, in ``sims/``): a registry of spec kinds, one parser, one writer.

A spec names an ``experiment`` (a key of :data:`REGISTRY`), a ``[problem]`` table and a ``[run]``
table. Every key is checked (``spec.check_table``): an unknown key, a wrong type or a missing field is
a :class:`SpecError` naming it.  Each kind is an :class:`~dynamics.experiments.spec.Experiment` in
one module (``jepa_vs_mae``, ``rank_growth``, ``heads``, ``shapes``, ...); runners return their figures, summary and
results, and :func:`run_spec` writes them (``output.write_outputs``).  Runners never import each other.
"""

from __future__ import annotations

import time
import tomllib

from . import adam_spikes, generalized, heads, jepa_vs_mae, policy_gradient, rank_growth, shapes
from .output import write_outputs
from .spec import Experiment, NoTheoryError, SpecError, check_table, check_values

__all__ = ["SpecError", "NoTheoryError", "Experiment", "REGISTRY", "EXPERIMENTS", "DEFAULT_SPEC", "SCHEMAS", "parse_spec",
           "load_spec", "run_spec", "solve_spec", "register_experiment"]

REGISTRY: dict[str, Experiment] = {}


def register_experiment(exp: Experiment) -> Experiment:
    REGISTRY[exp.name] = exp
    return exp


for _exp in (jepa_vs_mae.EXPERIMENT, *rank_growth.EXPERIMENTS, *heads.EXPERIMENTS, *generalized.EXPERIMENTS,
             *policy_gradient.EXPERIMENTS, *adam_spikes.EXPERIMENTS, *shapes.EXPERIMENTS):
    register_experiment(_exp)

EXPERIMENTS = tuple(REGISTRY)
SCHEMAS = {name: exp.schema for name, exp in REGISTRY.items()}
SCHEMA = jepa_vs_mae.SCHEMA
DEFAULT_SPEC = jepa_vs_mae.DEFAULT_SPEC


def parse_spec(spec: dict) -> dict:
    """Check a spec dict (as loaded from TOML) and fill defaults; raises SpecError naming the key."""
    if not isinstance(spec, dict):
        raise SpecError("a spec must be a TOML table")
    name = spec.get("experiment")
    if not isinstance(name, str):
        raise SpecError("missing required key experiment (a string)" if name is None else
                        f"experiment must be str, got {type(name).__name__} {name!r}")
    if name not in REGISTRY:
        raise SpecError(f"experiment must be one of {list(EXPERIMENTS)}, got {name!r}")
    exp = REGISTRY[name]
    spec = check_table(spec, exp.schema, "")
    fig = spec.get("figure") or ""
    if any(c in fig for c in "/\\\0") or fig in (".", ".."):
        raise SpecError(f"figure must be a file name without a folder, got {fig!r}")
    check_values(spec)
    if exp.check is not None:
        exp.check(spec)
    return spec


def load_spec(path) -> dict:
    try:
        with open(path, "rb") as fh:
            text = fh.read()
        # a UTF-8 byte-order mark (some editors write one) is not TOML: read past it
        raw = tomllib.loads(text.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        spec = parse_spec(raw)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    if not spec.get("figure"):
        import os
        spec["figure"] = os.path.splitext(os.path.basename(str(path)))[0]
    return spec


def solve_spec(spec, *, seed=None):
    """Theory only (critical times, stages, fixed points); a JSON-able dict."""
    exp = REGISTRY[spec["experiment"]]
    if exp.solve is None:
        raise NoTheoryError(f"{exp.name} has no closed-form theory to solve; simulate it with `dynamics run`")
    return exp.solve(spec, seed=seed)


def run_spec(spec, out_dir, *, seed=None, dtype=None, progress=True, echo=print):
    """Run a spec, write its figure(s), summary.json, result files and texts into ``out_dir``; returns
    the summary."""
    exp = REGISTRY[spec["experiment"]]
    t0 = time.perf_counter()
    out = exp.run(spec, seed=seed, dtype=dtype, progress=progress, echo=echo)
    figures = out.get("figures") or {}
    if spec.get("figure") and len(figures) == 1:
        out["figures"] = {spec["figure"]: next(iter(figures.values()))}
    summary = {"spec": spec, **out.get("summary", {}), "wall_time_s": time.perf_counter() - t0}
    write_outputs(out_dir, figures=out.get("figures"), summary=summary, results=out.get("results"),
                  texts=out.get("texts"))
    written = [f"{k}.png" for k in out.get("figures", {})] + sorted(out.get("texts") or {}) + ["summary.json"]
    echo(f"wrote {', '.join(written)} and {len(out.get('results', {}))} .npz file(s) in {out_dir} "
         f"({summary['wall_time_s']:.1f} s)")
    return summary
