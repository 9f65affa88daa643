"""Experiment specs (TOML, in ``sims/``): parsing with key-by-key checks, and the runners.

A spec names an ``experiment`` (a runner below), a ``[problem]`` table and a ``[run]`` table. Every
key is checked: an unknown key, a wrong type or a missing field is a :class:`SpecError` naming it.
"""

from __future__ import annotations

import copy
import json
import os
import time
import tomllib
import warnings

import numpy as np

from .results import _jsonable, atomic_write

__all__ = ["SpecError", "DEFAULT_SPEC", "parse_spec", "load_spec", "run_spec", "solve_spec"]


class SpecError(ValueError):
    """A bad experiment spec (the message names the key)."""


_NUM = (int, float)
# key -> (accepted types, required, default)
_TOP = {"experiment": ((str,), True, None), "title": ((str,), False, "")}

SCHEMA = {
    **_TOP,
    "problem": {
        "lam": ((list,), False, None),
        "rho": ((list,), False, None),
        "generative": ((str,), False, None),
        "signal": ((list,), False, None),
        "noise": ((list,), False, None),
        "gamma": ((list,), False, None),
        "init_scale": (_NUM, True, None),
        "rotate": ((bool,), False, True),
    },
    "run": {
        "depths": ((list,), True, None),
        "objectives": ((list,), False, ["jepa", "mae"]),
        "lr": (_NUM, True, None),
        "horizon": (_NUM, False, 1.3),
        "records": ((int,), False, 400),
        "init": ((str,), False, "aligned_gauge"),
        "fraction": (_NUM, False, 0.5),
        "seed": ((int,), False, 0),
    },
}

DEFAULT_SPEC = {
    "experiment": "jepa_vs_mae",
    "title": "JEPA vs MAE: which feature is learned first, at depths 1, 2, 3",
    "problem": {"lam": [1.0, 1.0, 0.5, 0.5], "rho": [0.4, 1.0, 1.0, 0.4], "init_scale": 0.01,
                "rotate": True},
    "run": {"depths": [1, 2, 3], "objectives": ["jepa", "mae"], "lr": 0.02, "horizon": 1.3,
            "records": 400, "init": "aligned_gauge", "fraction": 0.5, "seed": 0},
}

_ATTN_PROBLEM = {
    "n_samples": ((int,), False, 100), "n_tokens": ((int,), False, 6), "d": ((int,), False, 5),
    "heads": ((int,), False, 1), "layers": ((int,), False, 1), "seed": ((int,), False, 0),
}
SCHEMAS = {
    "jepa_vs_mae": SCHEMA,
    "dln_staircase": {**_TOP, "problem": {
        "n": ((int,), True, None), "d": ((int,), True, None), "beta_star": ((list,), False, None),
        "sparsity": ((int,), False, None), "noise": (_NUM, False, 0.0), "correlation": (_NUM, False, 0.0),
        "seed": ((int,), False, 0)},
        "run": {"alphas": ((list,), True, None), "tau_max": (_NUM, False, None),
                "records": ((int,), False, 1000)}},
    "attention_staircase": {**_TOP, "problem": _ATTN_PROBLEM,
                            "run": {"alphas": ((list,), True, None), "tau_max": (_NUM, False, None),
                                    "records": ((int,), False, 1000)}},
    "dense_attention_rank": {**_TOP, "problem": _ATTN_PROBLEM,
                             "run": {"init_scales": ((list,), True, None), "lr": (_NUM, True, None),
                                     "steps": ((int,), True, None), "optimizer": ((str,), False, "sgd"),
                                     "records": ((int,), False, 200)}},
}
from .head_experiments import SCHEMAS as _HEAD_SCHEMAS  # noqa: E402

SCHEMAS.update(_HEAD_SCHEMAS)
EXPERIMENTS = tuple(SCHEMAS)
RANK_EXPERIMENTS = ("dln_staircase", "attention_staircase", "dense_attention_rank")


def _check_table(table, schema, where):
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
            out[key] = _check_table(table[key], rule, f"{key}.")
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


def parse_spec(spec: dict) -> dict:
    """Check a spec dict (as loaded from TOML) and fill defaults; raises SpecError naming the key."""
    if not isinstance(spec, dict):
        raise SpecError("a spec must be a TOML table")
    exp = spec.get("experiment")
    if not isinstance(exp, str):
        raise SpecError("missing required key experiment (a string)" if exp is None else
                        f"experiment must be str, got {type(exp).__name__} {exp!r}")
    if exp not in EXPERIMENTS:
        raise SpecError(f"experiment must be one of {list(EXPERIMENTS)}, got {exp!r}")
    spec = _check_table(spec, SCHEMAS[exp], "")
    if exp in RANK_EXPERIMENTS:
        from .rank_experiments import check_spec
        check_spec(spec)
        return spec
    if exp != "jepa_vs_mae":
        return spec
    pb = spec["problem"]
    if pb["generative"] is None and (pb["lam"] is None or pb["rho"] is None):
        raise SpecError("problem needs lam and rho, or generative = 'static'|'temporal' with signal and noise")
    if pb["generative"] is not None and (pb["signal"] is None or pb["noise"] is None):
        raise SpecError("problem.generative needs problem.signal and problem.noise")
    for o in spec["run"]["objectives"]:
        if o not in ("jepa", "mae"):
            raise SpecError(f"run.objectives entries must be 'jepa' or 'mae', got {o!r}")
    for L in spec["run"]["depths"]:
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise SpecError(f"run.depths entries must be integers >= 1, got {L!r}")
    return spec


def load_spec(path) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_spec(raw)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def _problem(spec, depth, seed):
    from .problems import SSLProblem
    pb = spec["problem"]
    kw = dict(depth=depth, init_scale=float(pb["init_scale"]), rotate=pb["rotate"], key=seed)
    try:
        if pb["generative"] is not None:
            return SSLProblem.from_generative(pb["generative"], pb["signal"], pb["noise"],
                                              gamma=pb["gamma"], **kw)
        return SSLProblem.from_spectrum(pb["lam"], pb["rho"], **kw)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"[problem]: {exc}") from None


def solve_spec(spec, *, seed=None):
    """Theory only: critical times per (objective, depth), or the stages; returns a JSON-able dict."""
    if spec["experiment"] in RANK_EXPERIMENTS:
        from .rank_experiments import solve_rank_spec
        return solve_rank_spec(spec)
    if spec["experiment"] != "jepa_vs_mae":
        from .head_experiments import solve_head_spec
        return solve_head_spec(spec)
    from .jepa import critical_times
    seed = spec["run"]["seed"] if seed is None else seed
    out = {}
    for L in spec["run"]["depths"]:
        prob = _problem(spec, L, seed)
        for obj in spec["run"]["objectives"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[f"{obj}_L{L}"] = critical_times(prob, obj, spec["run"]["fraction"]).tolist()
    return out


def run_spec(spec, out_dir, *, seed=None, dtype=None, progress=True, echo=print):
    """Run a spec. ``jepa_vs_mae``: simulate every (objective, depth) on the dense rotated network,
    solve the theory on the same grid, print the table of critical times, write figure + JSON + NPZ.
    The rank-growth experiments are in ``rank_experiments``."""
    if spec["experiment"] in RANK_EXPERIMENTS:
        from .rank_experiments import run_rank_spec
        return run_rank_spec(spec, out_dir, progress=progress, echo=echo)
    if spec["experiment"] != "jepa_vs_mae":
        from .head_experiments import run_head_spec
        return run_head_spec(spec, out_dir, progress=progress, echo=echo)
    from . import jepa
    from .plot import plot_jepa_vs_mae
    from .results import crosscheck

    run = spec["run"]
    seed = run["seed"] if seed is None else seed
    fraction = float(run["fraction"])
    os.makedirs(out_dir, exist_ok=True)
    pairs, rows, checks = {}, [], {}
    t_start = time.perf_counter()
    for L in run["depths"]:
        prob = _problem(spec, L, seed)
        for obj in run["objectives"]:
            tc = jepa.critical_times(prob, obj, fraction)
            finite = tc[np.isfinite(tc)]
            t_end = run["horizon"] * (finite.max() if finite.size else 1.0)
            steps = max(1, int(np.ceil(t_end / run["lr"])))
            sim_f = jepa.simulate_jepa if obj == "jepa" else jepa.simulate_mae
            solve_f = jepa.solve_jepa if obj == "jepa" else jepa.solve_mae
            sim = sim_f(prob, lr=run["lr"], steps=steps, record_every=max(1, steps // run["records"]),
                        init=run["init"], key=seed, progress=progress, dtype=dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                th = solve_f(prob, times=sim.t)
            rep = crosscheck(sim, th, fraction=fraction, rtol=0.05, ctol=0.02)
            pairs[(obj, L)] = (sim, th)
            checks[f"{obj}_L{L}"] = rep.to_dict()
            sim.save(os.path.join(out_dir, f"{obj}_L{L}_sim.npz"))
            th.save(os.path.join(out_dir, f"{obj}_L{L}_theory.npz"))
            for i in range(prob.d):
                rows.append((obj, L, i, prob.lam[i], prob.rho[i], tc[i], rep.critical_a[i],
                             rep.critical_rel_error[i]))
    table = format_table(rows, fraction)
    echo(table)
    fig = plot_jepa_vs_mae(pairs, fraction=fraction, title=spec["title"] or None)
    fig_path = os.path.join(out_dir, "jepa_vs_mae.png")
    atomic_write(fig_path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    order = {f"{o}_L{L}": np.argsort(pairs[(o, L)][1].critical_times(fraction), kind="stable").tolist()
             for (o, L) in pairs}
    summary = {"spec": spec, "seed": seed, "fraction": fraction, "crosschecks": checks,
               "learning_order_theory": order, "table": [dict(zip(
                   ("objective", "depth", "feature", "lam", "rho", "t_theory", "t_sim", "rel_error"), r))
                   for r in rows], "wall_time_s": time.perf_counter() - t_start}
    atomic_write(os.path.join(out_dir, "summary.json"),
                 lambda fh: fh.write(json.dumps(_jsonable(summary), indent=2).encode()))
    atomic_write(os.path.join(out_dir, "table.txt"), lambda fh: fh.write(table.encode() + b"\n"))
    echo(f"wrote {fig_path}, summary.json, table.txt and one .npz per run in {out_dir} "
         f"({summary['wall_time_s']:.1f} s)")
    return summary


def format_table(rows, fraction):
    head = (f"critical times (time to reach {fraction:g} of the fixed point; gradient-flow time)\n"
            f"{'objective':>9} {'L':>2} {'feat':>4} {'lambda':>7} {'rho':>6} {'theory':>12} "
            f"{'simulation':>12} {'rel.err':>9}")
    lines = [head, "-" * len(head.splitlines()[1])]
    for obj, L, i, lam, rho, tt, ts, e in rows:
        lines.append(f"{obj:>9} {L:>2} {i:>4} {lam:>7.3g} {rho:>6.3g} {tt:>12.5g} {ts:>12.5g} {e:>9.2e}")
    return "\n".join(lines)
