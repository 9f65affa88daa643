"""Experiments beyond commuting covariances (theory/generalized.md):

* ``finite_samples``: critical times and learning order over resampled finite data sets of each size n,
  against the population theory (``finite_sample_study``);
* ``image_modes``: JEPA and MAE on paired patch views of natural images (``datasets.image_views``): the
  generalised modes' lam and rho, the predicted (``approx="generalized"``) and simulated (exact flow and
  gd) learning orders side by side, and the measured error of the approximation on this data.
"""

from __future__ import annotations

import warnings

import numpy as np

from .spec import NUM, TOP, Experiment, SpecError

__all__ = ["EXPERIMENTS"]

FINITE_SCHEMA = {
    **TOP,
    "problem": {
        "generative": ((str,), False, "static"),
        "signal": ((list,), True, None),
        "noise": ((list,), True, None),
        "gamma": ((list,), False, None),
        "depth": ((int,), True, None),
        "init_scale": (NUM, True, None),
        "rotate": ((bool,), False, True),
    },
    "run": {
        "objective": ((str,), False, "jepa"),
        "ns": ((list,), True, None),
        "resamples": ((int,), False, 8),
        "fraction": (NUM, False, 0.5),
        "horizon": (NUM, False, 2.0),
        "seed": ((int,), False, 0),
    },
}

IMAGE_SCHEMA = {
    **TOP,
    "problem": {
        "kind": ((str,), False, "neighbor"),
        "patch": ((int,), False, 4),
        "n": ((int,), False, 20000),
        "images": ((str,), False, "photos"),
        "depth": ((int,), True, None),
        "init_scale": (NUM, True, None),
    },
    "run": {
        "objectives": ((list,), False, ["jepa", "mae"]),
        "top": ((int,), False, 4),
        "lr": (NUM, False, 0.05),
        "horizon": (NUM, False, 1.5),
        "records": ((int,), False, 400),
        "fraction": (NUM, False, 0.5),
        "seed": ((int,), False, 0),
    },
}


def _check_finite(spec):
    if spec["problem"]["generative"] not in ("static", "temporal"):
        raise SpecError(f"problem.generative must be 'static' or 'temporal', got {spec['problem']['generative']!r}")
    run = spec["run"]
    if run["objective"] not in ("jepa", "mae"):
        raise SpecError(f"run.objective must be 'jepa' or 'mae', got {run['objective']!r}")
    if not run["ns"] or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in run["ns"]):
        raise SpecError(f"run.ns must be a non-empty list of integers >= 2, got {run['ns']!r}")
    if run["resamples"] < 2:
        raise SpecError("run.resamples must be >= 2 (error bars need two data sets)")


def _check_image(spec):
    for o in spec["run"]["objectives"]:
        if o not in ("jepa", "mae"):
            raise SpecError(f"run.objectives entries must be 'jepa' or 'mae', got {o!r}")
    if spec["run"]["top"] < 1:
        raise SpecError("run.top must be >= 1")


def _population(spec):
    from ..families.linear.problems import SSLProblem
    pb = spec["problem"]
    try:
        return SSLProblem.from_generative(pb["generative"], pb["signal"], pb["noise"], pb["depth"],
                                          float(pb["init_scale"]), gamma=pb["gamma"], rotate=pb["rotate"],
                                          key=spec["run"]["seed"] if pb["rotate"] else None)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"[problem]: {exc}") from None


def run_finite(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..families.jepa import finite_sample_study
    from ..plot import plot_finite_samples
    run = spec["run"]
    seed = run["seed"] if seed is None else seed
    prob = _population(spec)
    study = finite_sample_study(prob, run["ns"], resamples=run["resamples"], objective=run["objective"],
                                fraction=float(run["fraction"]), key=seed, horizon=float(run["horizon"]))
    text = study.summary()
    pop = study.population
    margin = abs(pop[0] - pop[1]) / max(pop[0], pop[1]) if pop.size >= 2 else float("nan")
    text += (f"\npopulation margin between the first two features' critical times: {margin:.1%}; the spread "
             "over data sets (std) is to be read against it")
    echo(text)
    fig = plot_finite_samples(study, title=spec["title"] or None)
    return {"figures": {"finite_samples": fig}, "summary": {"seed": seed, "study": study.to_dict(),
                                                           "population_margin": margin},
            "texts": {"table.txt": text}}


def solve_finite(spec, *, seed=None):
    from ..families.jepa import critical_times
    prob = _population(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"population_critical_times": critical_times(prob, spec["run"]["objective"],
                                                            spec["run"]["fraction"]).tolist()}


def _image_problem(spec, seed):
    from ..core.datasets import image_views
    from ..families.linear.problems import SSLProblem
    pb = spec["problem"]
    try:
        x, y = image_views(pb["kind"], patch=pb["patch"], n=pb["n"], key=seed, images=pb["images"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return SSLProblem.from_samples(x, y, pb["depth"], float(pb["init_scale"]))
    except (ValueError, TypeError) as exc:
        raise SpecError(f"[problem]: {exc}") from None


def solve_image(spec, *, seed=None):
    from ..families.jepa import critical_times, generalized_modes
    seed = spec["run"]["seed"] if seed is None else seed
    prob = _image_problem(spec, seed)
    gm = generalized_modes(prob)
    out = {"commutator": gm.commutator, "lam": gm.lam.tolist(), "rho": gm.rho.tolist()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for obj in spec["run"]["objectives"]:
            out[f"{obj}_critical_times"] = critical_times(prob, obj, spec["run"]["fraction"],
                                                          approx="generalized").tolist()
    return out


def run_image(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..core.metrics import hitting_times
    from ..families import jepa
    from ..plot import plot_image_modes
    run = spec["run"]
    seed = run["seed"] if seed is None else seed
    fraction, top = float(run["fraction"]), int(run["top"])
    prob = _image_problem(spec, seed)
    gm = jepa.generalized_modes(prob)
    lines = [f"{spec['problem']['kind']} views of {spec['problem']['patch']}x{spec['problem']['patch']} patches, "
             f"n = {spec['problem']['n']} pairs, d = {prob.d}; normalised commutator c = {gm.commutator:.3g} "
             "(theory/generalized.md: the generalised-mode prediction is an approximation)"]
    runs, summary, results = {}, {"seed": seed, "commutator": gm.commutator, "lam": gm.lam, "rho": gm.rho}, {}
    for obj in run["objectives"]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tc = jepa.critical_times(prob, obj, fraction, approx="generalized")
        notes = sorted({str(w.message).split(":")[0] for w in caught if "commutator" in str(w.message)})
        learned = np.flatnonzero(np.isfinite(tc) & (tc > 0))     # tc = 0: starts past the threshold
        order_pred = learned[np.argsort(tc[learned], kind="stable")]
        first = order_pred[:top]
        t_end = run["horizon"] * float(tc[first].max())
        grid = np.concatenate([[0.0], np.geomspace(1e-2 * float(tc[first].min()), t_end, run["records"])])
        sim_f = jepa.simulate_jepa if obj == "jepa" else jepa.simulate_mae
        flow = sim_f(prob, method="flow", times=grid, rtol=1e-8, progress=progress)   # float64: the reference
        steps = max(1, int(np.ceil(t_end / run["lr"])))
        gd = sim_f(prob, lr=run["lr"], steps=steps, record_every=max(1, steps // run["records"]),
                   progress=progress, dtype=dtype)
        fp = np.where(np.isfinite(tc), flow.fixed_point, np.inf)
        ts_flow = hitting_times(flow.t, flow.gains, fp, fraction)
        ts_gd = hitting_times(gd.t, gd.gains, fp, fraction)
        reached = first[np.isfinite(ts_flow[first])]
        order_flow = reached[np.argsort(ts_flow[reached], kind="stable")]
        err = np.abs(ts_flow[first] - tc[first]) / tc[first]
        match = bool(np.array_equal(order_flow, first))
        runs[obj] = (flow, gd, tc, order_pred)
        results[f"{obj}_flow.npz"], results[f"{obj}_gd.npz"] = flow, gd
        lines.append(f"{obj.upper()}: predicted first {top} modes {first.tolist()}, exact flow {order_flow.tolist()} "
                     f"({'same order' if match else 'ORDER DIFFERS'}); critical times predicted / flow / gd:")
        for j, e in zip(first, err):
            lines.append(f"    mode {j:>2} (lam {gm.lam[j]:.3g}, rho {gm.rho[j]:.3g}): {tc[j]:.5g} / {ts_flow[j]:.5g} / "
                         f"{ts_gd[j]:.5g}   approximation error {e:.2e}")
        lines += [f"    note: {n}" for n in notes]
        summary[obj] = {"predicted_order": first, "flow_order": order_flow, "order_match": match,
                        "predicted": tc[first], "flow": ts_flow[first], "gd": ts_gd[first],
                        "approximation_error": err}
    text = "\n".join(lines)
    echo(text)
    fig = plot_image_modes(runs, gm, top=top, title=spec["title"] or None)
    return {"figures": {"image_modes": fig}, "summary": summary, "results": results, "texts": {"table.txt": text}}


EXPERIMENTS = (
    Experiment(name="finite_samples", schema=FINITE_SCHEMA, run=run_finite, check=_check_finite, solve=solve_finite),
    Experiment(name="image_modes", schema=IMAGE_SCHEMA, run=run_image, check=_check_image, solve=solve_image),
)
