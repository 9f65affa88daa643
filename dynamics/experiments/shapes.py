"""Runners for the any-shape specs in ``sims/`` (theory/saxe.md "Any shape", theory/jepa.md "A narrow encoder"):
saxe_hierarchy and narrow_jepa_mae.

saxe_hierarchy: Saxe, McClelland & Ganguli's tree of items and features (2^levels one-hot items, 2^(levels+1) - 1
binary features), a rectangular regression R^items -> R^features with no padding by the user; gradient descent
from the aligned init against the exact per-mode theory (margin: the cross-check's verdict and error), the
critical times by tree level (broad before fine), and a small gaussian init against the small-init stage theory
(margin: its critical-time error against its stated error, and whether the levels come in the same order).

narrow_jepa_mae: an encoder R^d -> R^k (embed_dim) from small gaussian inits, JEPA and MAE on one spectrum, the
exact flow over seeds against the predicted kept sets (``dy.kept_features``; margin: how many seeds keep exactly
that set, a subset of it -- JEPA's collapsed directions -- or another set).
"""

from __future__ import annotations

import numpy as np

from .spec import NUM, TOP, Experiment, SpecError

__all__ = ["SCHEMAS", "EXPERIMENTS", "tree"]

SCHEMAS = {
    "saxe_hierarchy": {**TOP, "problem": {"levels": ((int,), False, 3), "depth": ((int,), False, 2),
                                          "init_scale": (NUM, False, 1e-3), "seed": ((int,), False, 1)},
                       "run": {"lr": (NUM, False, 0.01), "horizon": (NUM, False, 1.3),
                               "records": ((int,), False, 200)}},
    "narrow_jepa_mae": {**TOP, "problem": {"lam": ((list,), False, [3.0, 2.5, 0.5, 0.4]),
                                           "rho": ((list,), False, [0.3, 0.35, 0.9, 1.0]),
                                           "depth": ((int,), False, 1), "embed_dim": ((int,), False, 2),
                                           "init_scale_mae": (NUM, False, 1e-3), "init_scale_jepa": (NUM, False, 1e-2),
                                           "seed": ((int,), False, 0)},
                        "run": {"seeds": ((int,), False, 8), "horizon": (NUM, False, 60.0),
                                "records": ((int,), False, 240), "rtol": (NUM, False, 1e-8)}},
}


def tree(levels):
    """(Y features x items, level of each feature): the balanced binary tree of 2^levels items, one feature per
    node (root, 2 halves, ..., 2^levels leaves)."""
    items = 2 ** levels
    rows = [np.kron(np.eye(2 ** k), np.ones((1, items // 2 ** k))) for k in range(levels + 1)]
    return np.vstack(rows), np.concatenate([[k] * 2 ** k for k in range(levels + 1)])


def _hierarchy(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..core.compare import crosscheck, verdict
    from ..core.frontend import critical_times
    from ..families.linear.problems import RegressionProblem
    from ..families.saxe import simulate_saxe, solve_saxe
    from ..plot import plot_hierarchy
    pb, run = spec["problem"], spec["run"]
    Y, _ = tree(pb["levels"])
    items = Y.shape[1]
    prob = RegressionProblem.from_covariances(np.eye(items) / items, Y / items, pb["depth"], pb["init_scale"])
    levels = np.round(prob.lam, 10)
    uniq = sorted(set(levels.tolist()), reverse=True)
    names = {0: "root", 1: "halves", 2: "quarters", 3: "eighths"}
    names = [names.get(k, f"level {k}") for k in range(len(uniq) - 1)] + ["items"]
    tc = critical_times(prob, "saxe")
    lr = run["lr"]
    steps = int(run["horizon"] * tc.max() / lr)
    every = max(1, steps // run["records"])
    kw = dict(record_every=every, dtype=dtype, progress=progress)
    sim = simulate_saxe(prob, lr=lr, steps=steps, **kw)
    th = solve_saxe(prob, times=sim.t)
    rep = crosscheck(sim, th)
    by_level = [float(tc[levels == lv].max()) for lv in uniq]
    echo(f"{items} items -> {Y.shape[0]} features through hidden width {prob.layer_shapes()[0][0]}: singular values "
         f"{[round(v, 4) for v in uniq]}, critical times by level {[round(t, 2) for t in by_level]}; aligned init: "
         f"{verdict(rep.outcome)} (max error {rep.max_rel_error:.2g}, tolerance {rep.rtol:g})")
    key = pb["seed"] if seed is None else seed
    rnd = simulate_saxe(prob, lr=lr, steps=2 * steps, init="gaussian", key=key, **{**kw, "record_every": 2 * every})
    rth = solve_saxe(prob, times=rnd.t, init="gaussian", key=key)
    rrep = crosscheck(rnd, rth)
    t_half = [float(np.min(rrep.critical_a[levels == lv])) for lv in uniq]
    in_order = all(a < b for a, b in zip(t_half, t_half[1:]))
    fin = np.isfinite(rrep.critical_a) & np.isfinite(rrep.critical_b)
    t_err = float(np.max(np.abs(rrep.critical_a[fin] - rrep.critical_b[fin]) / rrep.critical_b[fin]))
    stated = rth.settings["approximation"]["error_estimate"]
    echo(f"small gaussian init (key {key}): the stage theory {verdict(rrep.outcome)}, critical times within {t_err:.1%} "
         f"(stated {stated:.1%}); the levels learned {'broad to fine' if in_order else 'OUT OF ORDER'}")
    fig = plot_hierarchy(sim, th, rnd, rth, levels, names, title=spec["title"] or None)
    summary = {"singular_values": uniq, "critical_times_by_level": by_level, "aligned": rep.outcome,
               "aligned_max_error": rep.max_rel_error, "gaussian": rrep.outcome, "gaussian_time_error": t_err,
               "gaussian_stated_error": stated, "broad_to_fine": in_order}
    return {"figures": {"saxe_hierarchy": fig}, "summary": summary,
            "results": {"hierarchy_aligned.npz": sim, "hierarchy_gaussian.npz": rnd}}


def _narrow(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..core.frontend import critical_times
    from ..core.family import get_family
    from ..families.jepa import simulate_jepa, simulate_mae, solve_jepa, solve_mae
    from ..families.linear.family import kept_features_of
    from ..families.linear.problems import SSLProblem
    from ..plot import plot_kept_features
    pb, run = spec["problem"], spec["run"]
    key = pb["seed"] if seed is None else seed
    panels, summary, results = [], {}, {}
    for family, sim_f, solve_f in (("mae", simulate_mae, solve_mae), ("jepa", simulate_jepa, solve_jepa)):
        prob = SSLProblem.from_spectrum(pb["lam"], pb["rho"], pb["depth"], pb[f"init_scale_{family}"],
                                        embed_dim=pb["embed_dim"])
        kept = kept_features_of(prob, family=family)
        tc = critical_times(prob, family)
        t = np.geomspace(1e-2 * tc[kept].min(), run["horizon"] * tc[kept].max(), run["records"])
        sim = sim_f(prob, method="flow", times=t, init="gaussian", runs=run["seeds"], key=key, rtol=run["rtol"],
                    dtype=dtype, progress=progress)
        th = solve_f(prob, times=t)
        fp = get_family(family).objective.fixed_point(prob.rho, prob.depth)
        ends = np.asarray(sim.modes)[..., -1, :] / fp
        ends = ends[None] if ends.ndim == 1 else ends
        sets = [np.flatnonzero(e >= 0.5) for e in ends]
        same = sum(np.array_equal(k, kept) for k in sets)
        subset = sum(not np.array_equal(k, kept) and np.all(np.isin(k, kept)) for k in sets)
        rule = "largest lam rho" if family == "mae" else "largest rho"
        echo(f"{family.upper()} keeps {kept.tolist()} ({rule}) in {same}/{len(sets)} seeds, a subset of it in {subset} "
             f"(a collapsed direction), another set in {len(sets) - same - subset}")
        panels.append({"sim": sim, "theory": th, "kept": kept, "critical_times": tc, "fixed_point": fp,
                       "label": f"{family.upper()}, R^{prob.d} -> R^{pb['embed_dim']}: keeps {kept.tolist()} ({rule})"})
        summary[family] = {"kept": kept.tolist(), "seeds": len(sets), "exactly": same, "subset": subset,
                           "other": len(sets) - same - subset, "observed": [k.tolist() for k in sets]}
        results[f"narrow_{family}.npz"] = sim
    fig = plot_kept_features(panels, title=spec["title"] or None)
    return {"figures": {"narrow_jepa_mae": fig}, "summary": summary, "results": results}


def _check_hierarchy(spec):
    if not 1 <= spec["problem"]["levels"] <= 6:
        raise SpecError(f"problem.levels must be an integer in [1, 6] (2^levels items), got {spec['problem']['levels']}")


def _check_narrow(spec):
    pb = spec["problem"]
    lam, rho = pb["lam"], pb["rho"]
    if not lam or len(lam) != len(rho) or any(isinstance(x, bool) or not isinstance(x, NUM) or not x > 0
                                              for x in lam + rho):
        raise SpecError("problem.lam and problem.rho must be lists of positive numbers of one length (one per feature)")
    if not 1 <= pb["embed_dim"] < len(lam):
        raise SpecError(f"problem.embed_dim must be in [1, {len(lam) - 1}] (narrower than the {len(lam)} features), "
                        f"got {pb['embed_dim']}")
    for name in ("init_scale_mae", "init_scale_jepa", "horizon", "rtol"):
        table = pb if name in pb else spec["run"]
        if not table[name] > 0:
            raise SpecError(f"{'problem' if table is pb else 'run'}.{name} must be > 0, got {table[name]!r}")
    if spec["run"]["seeds"] < 1 or spec["run"]["records"] < 2:
        raise SpecError("run.seeds must be >= 1 and run.records >= 2")


EXPERIMENTS = (Experiment("saxe_hierarchy", SCHEMAS["saxe_hierarchy"], _hierarchy, check=_check_hierarchy),
               Experiment("narrow_jepa_mae", SCHEMAS["narrow_jepa_mae"], _narrow, check=_check_narrow))
