"""The ``jepa_vs_mae`` experiment: simulate every (objective, depth) on the dense rotated network,
solve the theory on the same grid, tabulate the critical times and cross-check them."""

from __future__ import annotations

import warnings

import numpy as np

from .spec import NUM, TOP, Experiment, SpecError

__all__ = ["EXPERIMENT", "DEFAULT_SPEC", "format_table", "order_line", "order_margin"]

SCHEMA = {
    **TOP,
    "problem": {
        "lam": ((list,), False, None),
        "rho": ((list,), False, None),
        "generative": ((str,), False, None),
        "signal": ((list,), False, None),
        "noise": ((list,), False, None),
        "gamma": ((list,), False, None),
        "init_scale": (NUM, True, None),
        "rotate": ((bool,), False, True),
    },
    "run": {
        "depths": ((list,), True, None),
        "objectives": ((list,), False, ["jepa", "mae"]),
        "lr": (NUM, True, None),
        "horizon": (NUM, False, 1.3),
        "records": ((int,), False, 400),
        "init": ((str,), False, "aligned_gauge"),
        "fraction": (NUM, False, 0.5),
        "seed": ((int,), False, 0),
    },
}

DEFAULT_SPEC = {
    "experiment": "jepa_vs_mae",
    "title": "JEPA vs MAE: which feature is learned first, at depths 1, 2, 3",
    "problem": {"lam": [1.0, 1.0, 0.5, 0.5], "rho": [0.4, 1.0, 1.0, 0.4], "init_scale": 0.005,
                "rotate": True},
    "run": {"depths": [1, 2, 3], "objectives": ["jepa", "mae"], "lr": 0.02, "horizon": 1.3,
            "records": 400, "init": "aligned_gauge", "fraction": 0.5, "seed": 0},
}


def check(spec):
    pb = spec["problem"]
    if pb["generative"] is None and (pb["lam"] is None or pb["rho"] is None):
        raise SpecError("problem needs lam and rho, or generative = 'static'|'temporal' with signal and noise")
    if pb["generative"] is not None and pb["generative"] not in ("static", "temporal"):
        raise SpecError(f"problem.generative must be 'static' or 'temporal', got {pb['generative']!r}")
    if pb["generative"] is not None and (pb["signal"] is None or pb["noise"] is None):
        raise SpecError("problem.generative needs problem.signal and problem.noise")
    if pb["generative"] is not None and (pb["lam"] is not None or pb["rho"] is not None):
        given = [k for k in ("lam", "rho") if pb[k] is not None]
        raise SpecError(f"problem.generative and problem.{'/'.join(given)}: the generative model sets lam and rho "
                        "from signal and noise; give one or the other")
    for o in spec["run"]["objectives"]:
        if o not in ("jepa", "mae"):
            raise SpecError(f"run.objectives entries must be 'jepa' or 'mae', got {o!r}")
    for L in spec["run"]["depths"]:
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise SpecError(f"run.depths entries must be integers >= 1, got {L!r}")
    # parse time: the number of steps each run will take (the theory's last critical time x horizon / lr)
    from ..core.resources import ResourceError, check_steps
    from ..families.jepa import critical_times
    for L in spec["run"]["depths"]:
        prob = _problem(spec, L, spec["run"]["seed"])
        for obj in spec["run"]["objectives"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tc = critical_times(prob, obj, spec["run"]["fraction"])
            finite = tc[np.isfinite(tc)]
            steps = int(np.ceil(spec["run"]["horizon"] * (finite.max() if finite.size else 1.0) / spec["run"]["lr"]))
            try:
                check_steps(steps)
            except ResourceError as exc:
                raise SpecError(f"run.horizon = {spec['run']['horizon']:g} with run.lr = {spec['run']['lr']:g} at depth "
                                f"{L} ({obj}): {exc}") from None


def _problem(spec, depth, seed):
    from ..families.linear.problems import SSLProblem
    pb = spec["problem"]
    kw = dict(depth=depth, init_scale=float(pb["init_scale"]), rotate=pb["rotate"],
              key=seed if pb["rotate"] else None)     # the seed draws the basis only when rotated
    try:
        if pb["generative"] is not None:
            return SSLProblem.from_generative(pb["generative"], pb["signal"], pb["noise"],
                                              gamma=pb["gamma"], **kw)
        return SSLProblem.from_spectrum(pb["lam"], pb["rho"], **kw)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"[problem]: {exc}") from None


def solve(spec, *, seed=None):
    """Theory only: critical times per (objective, depth)."""
    from ..families.jepa import critical_times
    seed = spec["run"]["seed"] if seed is None else seed
    out = {}
    for L in spec["run"]["depths"]:
        prob = _problem(spec, L, seed)
        for obj in spec["run"]["objectives"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[f"{obj}_L{L}"] = critical_times(prob, obj, spec["run"]["fraction"]).tolist()
    return out


def run(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..core.compare import crosscheck
    from ..families import jepa
    from .output import verdict_line
    from ..plot import plot_jepa_vs_mae

    run = spec["run"]
    seed = run["seed"] if seed is None else seed
    fraction = float(run["fraction"])
    pairs, rows, checks, results, verdicts, crit_sim = {}, [], {}, {}, [], {}
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
            rep = crosscheck(sim, th, fraction=fraction)     # the library's tolerance policy for gd
            pairs[(obj, L)] = (sim, th)
            checks[f"{obj}_L{L}"] = rep.to_dict()
            crit_sim[(obj, L)] = rep.critical_a
            verdicts.append(verdict_line(f"{obj} L={L}", rep))
            results[f"{obj}_L{L}_sim.npz"] = sim
            results[f"{obj}_L{L}_theory.npz"] = th
            for i in range(prob.d):
                rows.append((obj, L, i, prob.lam[i], prob.rho[i], tc[i], rep.critical_a[i],
                             rep.critical_rel_error[i]))
    table = format_table(rows, fraction)
    echo(table)
    orders = {}
    for (obj, L), (sim, th) in pairs.items():
        line, orders[f"{obj}_L{L}"] = order_line(obj, L, jepa.critical_times(sim.problem, obj, fraction),
                                                 crit_sim[(obj, L)], sim.problem)
        verdicts.append(line)
    for v in verdicts:
        echo(v)
    fig = plot_jepa_vs_mae(pairs, fraction=fraction, title=spec["title"] or None)
    order = {f"{o}_L{L}": np.argsort(pairs[(o, L)][1].critical_times(fraction), kind="stable").tolist()
             for (o, L) in pairs}
    summary = {"seed": seed, "fraction": fraction, "crosschecks": checks, "learning_order_theory": order,
               "orders": orders,
               "table": [dict(zip(("objective", "depth", "feature", "lam", "rho", "t_theory", "t_sim",
                                   "rel_error"), r)) for r in rows]}
    return {"figures": {"jepa_vs_mae": fig}, "summary": summary, "results": results,
            "texts": {"table.txt": table + "\n" + "\n".join(verdicts)}}


def order_margin(tc):
    """(order, margin, pair): the features sorted by critical time ``tc`` (never-learned last), and the
    smallest relative gap (t_later - t_earlier) / t_later between consecutive learned features -- how
    far the predicted order is from a tie -- with the pair of features where it occurs."""
    tc = np.asarray(tc, float)
    order = [int(i) for i in np.argsort(tc, kind="stable")]
    finite = [i for i in order if np.isfinite(tc[i])]
    gaps = [((tc[b] - tc[a]) / tc[b], (a, b)) for a, b in zip(finite, finite[1:]) if tc[b] > 0]
    if not gaps:
        return order, float("inf"), None
    margin, pair = min(gaps)
    return order, float(margin), pair


def order_line(obj, L, tc_theory, tc_sim, problem):
    """One line: the predicted and the simulated learning order, whether they agree, the margin of the
    prediction (:func:`order_margin`) and where the features start relative to their fixed point
    (psi0 = eps^(1/L) / c; c = rho for JEPA, rho^(1/(L+1)) for MAE: theory/jepa.md); and its dict."""
    order_t, margin, pair = order_margin(tc_theory)
    order_s, _, _ = order_margin(np.where(np.isfinite(np.asarray(tc_sim, float)), tc_sim, np.inf))
    rho = np.asarray(problem.rho, float)
    c = rho if obj == "jepa" else np.abs(rho) ** (1.0 / (L + 1))
    psi0 = float(np.max(problem.init_scale ** (1.0 / L) / c))
    same = order_t == order_s
    gap = "no two features learned" if pair is None else \
        f"closest: features {pair[0]} and {pair[1]}, {margin:.0%} apart"
    line = (f"learning order {obj} L={L}: theory {order_t}, simulation {order_s} "
            f"({'same' if same else 'DIFFERENT'}); {gap}; start psi0 <= {psi0:.2f} of the fixed point")
    return line, {"theory": order_t, "simulation": order_s, "same": same, "margin": margin,
                  "pair": pair, "psi0_max": psi0}


def format_table(rows, fraction):
    head = (f"critical times (time to reach {fraction:g} of the fixed point; gradient-flow time)\n"
            f"{'objective':>9} {'L':>2} {'feat':>4} {'lambda':>7} {'rho':>6} {'theory':>12} "
            f"{'simulation':>12} {'rel.err':>9}")
    lines = [head, "-" * len(head.splitlines()[1])]
    for obj, L, i, lam, rho, tt, ts, e in rows:
        lines.append(f"{obj:>9} {L:>2} {i:>4} {lam:>7.3g} {rho:>6.3g} {tt:>12.5g} {ts:>12.5g} {e:>9.2e}")
    return "\n".join(lines)


EXPERIMENT = Experiment(name="jepa_vs_mae", schema=SCHEMA, run=run, check=check, solve=solve)
