"""Runners for the prediction-head and stepwise specs in ``sims/``: byol_phase_portrait,
byol_alignment, identity_head, stepwise_staircase."""

from __future__ import annotations

import warnings

import numpy as np

from .spec import NUM as _NUM
from .spec import TOP as _TOP
from .output import verdict_line
from .spec import Experiment, SpecError

__all__ = ["SCHEMAS", "EXPERIMENTS"]
SCHEMAS = {
    "byol_phase_portrait": {**_TOP, "problem": {
        "sigma2": (_NUM, False, 0.5), "eta": (_NUM, False, 0.05), "alpha_p": (_NUM, False, 1.0),
        "p0": ((list,), True, None), "s0": ((list,), True, None), "seed": ((int,), False, 0)},
        "run": {"lr": (_NUM, False, 0.02), "t_max": (_NUM, False, 60.0)}},
    "byol_alignment": {**_TOP, "problem": {
        "n": ((int,), False, 4), "sigma2": (_NUM, False, 0.5), "alpha_p": (_NUM, False, 1.0),
        "etas": ((list,), True, None), "seed": ((int,), False, 0)},
        "run": {"lr": (_NUM, False, 0.01), "t_max": (_NUM, False, 30.0)}},
    "identity_head": {**_TOP, "problem": {
        "d": ((int,), False, 64), "patches": ((int,), False, 16), "feature_patches": ((int,), False, 4),
        "alpha": ((list,), False, [4.0, 2.5]), "head_lr_ratio": (_NUM, False, 10.0), "seed": ((int,), False, 0)},
        "run": {"lr": (_NUM, False, 0.02), "steps": ((int,), False, 4000)}},
    "stepwise_staircase": {**_TOP, "problem": {
        "gammas": ((list,), True, None), "init_scale": (_NUM, False, 1e-3), "seed": ((int,), False, 0)},
        "run": {"lr": (_NUM, False, 1e-3), "horizon": (_NUM, False, 1.3), "random_runs": ((int,), False, 3)}},
}


def _solve_portrait(spec, *, seed=None):
    from ..families.byol import byol_collapse_threshold, byol_fixed_points
    pb = spec["problem"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pm, pp = byol_fixed_points(1.0, pb["eta"], pb["sigma2"])
    return {"p_minus": float(pm), "p_plus": float(pp),
            "eta_threshold": float(byol_collapse_threshold(1.0, pb["sigma2"]))}


def _solve_stepwise(spec, *, seed=None):
    from ..families.stepwise import StepwiseProblem, step_times
    pb = spec["problem"]
    prob = StepwiseProblem.from_spectrum(pb["gammas"], pb["init_scale"], key=pb["seed"])
    return {"step_times": step_times(prob).tolist()}


def _runner(fn, name):
    def run(spec, *, seed=None, dtype=None, progress=True, echo=print):
        results = {}
        fig, summary = fn(spec, results, progress, echo)
        return {"figures": {name: fig}, "summary": summary, "results": results}
    return run


def _phase_portrait(spec, results, progress, echo):
    from ..core.compare import crosscheck
    from ..families.byol import BYOLProblem, byol_fixed_points, simulate_byol, solve_byol
    from ..plot import plot_byol_portrait
    pb, run = spec["problem"], spec["run"]
    p0, s0 = np.asarray(pb["p0"], float), np.asarray(pb["s0"], float)
    prob = BYOLProblem.isotropic(p0.size, pb["sigma2"], alpha_p=pb["alpha_p"], eta=pb["eta"], beta=None,
                                 w0=np.sqrt(s0), p0=p0, rotate=True, key=pb["seed"])
    steps = int(np.ceil(run["t_max"] / run["lr"]))
    sim = simulate_byol(prob, lr=run["lr"], steps=steps, record_every=max(1, steps // 400), progress=progress)
    th = solve_byol(prob, times=sim.t)
    results["byol_sim.npz"] = sim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pm, pp = byol_fixed_points(1.0, pb["eta"], pb["sigma2"])
    fate = ["learned" if s > 1e-3 else "collapsed" for s in th.s[-1]]
    margin = float(np.min(np.abs(p0 - pm)) / pm) if np.isfinite(pm) and pm > 0 else float("nan")
    echo(f"p- = {pm:.4g}, p+ = {pp:.4g}; final p (sim) {np.round(sim.p[-1], 4).tolist()}: {fate} "
         f"(the start closest to the separatrix p- is {margin:.0%} of p- away from it)")
    rep = crosscheck(sim, th)                 # the library's tolerance policy for gd
    echo(verdict_line("p (simulation vs per-mode theory)", rep))
    return plot_byol_portrait(sim, th, prob, fixed_points=(pm, pp), title=spec["title"] or None), {
        "crosscheck": rep.to_dict(),
        "p_minus": pm, "p_plus": pp, "final_p_sim": sim.p[-1], "final_p_theory": th.p[-1], "fate": fate,
        "max_abs_error_p": float(np.abs(sim.p - th.p).max())}


def _alignment(spec, results, progress, echo):
    from ..families.byol import BYOLProblem, simulate_byol
    from ..plot import plot_alignment
    pb, run = spec["problem"], spec["run"]
    rng = np.random.default_rng(pb["seed"])
    n = pb["n"]
    A = rng.normal(size=(n, n))
    init = {"W": 0.5 * rng.normal(size=(n, n)), "Wp": 0.15 * (A + A.T) + 0.5 * np.eye(n)}
    from ..families.byol import byol_collapse_threshold
    steps = int(np.ceil(run["t_max"] / run["lr"]))
    eta_star = byol_collapse_threshold(1.0, pb["sigma2"])
    sims, fates = [], {}
    for eta in pb["etas"]:
        prob = BYOLProblem.isotropic(n, pb["sigma2"], alpha_p=pb["alpha_p"], eta=float(eta), symmetric=True)
        sim = simulate_byol(prob, lr=run["lr"], steps=steps, record_every=max(1, steps // 300), init=init,
                            progress=progress)
        sims.append((float(eta), sim))
        s_end = np.asarray(sim.s[-1], float)          # eigenvalues of W W^T at the end
        fates[str(eta)] = "collapsed" if s_end.max() < 1e-3 else f"{int(np.sum(s_end > 1e-3))} of {s_end.size} modes learned"
        echo(f"eta = {eta} ({float(eta) / eta_star:.2f} x the collapse threshold eta* = {eta_star:.3g}): "
             f"||[F, W_p]|| {sim.commutator[0]:.3g} -> {sim.commutator[-1]:.3g} "
             f"({sim.commutator[0] / max(sim.commutator[-1], 1e-300):.2g}x smaller), min K {sim.K_min.min():.3g}; "
             f"{fates[str(eta)]}")
    return plot_alignment(sims, title=spec["title"] or None), {
        "eta_star": eta_star, "fates": fates,
        "commutator_final": {str(e): s.commutator[-1] for e, s in sims},
        "commutator_initial": {str(e): s.commutator[0] for e, s in sims},
        "K_min": {str(e): s.K_min.min() for e, s in sims}}


def _identity_head(spec, results, progress, echo):
    from ..families.identity_head import HeadProblem, head_phases, simulate_head
    from ..plot import plot_identity_head
    pb, run = spec["problem"], spec["run"]
    prob = HeadProblem(d=pb["d"], patches=pb["patches"], feature_patches=pb["feature_patches"],
                       alpha=tuple(pb["alpha"]), head_lr_ratio=pb["head_lr_ratio"], key=pb["seed"])
    # the cost scales with steps x batch x d x patches; the default spec measured 45 s on 2 CPU cores
    est = 45.0 * run["steps"] / 4000 * prob.batch / 512 * prob.d / 64 * prob.patches / 16
    echo(f"identity_head: 3 runs of {run['steps']} SGD steps on fresh samples (d = {prob.d}, {prob.patches} patches, "
         f"batch {prob.batch}); expect about {est:.0f} s on 2 CPU cores")
    runs = {}
    for name, kw in (("head", dict(head=True)), ("no head", dict(head=False)),
                     ("head, no BatchNorm", dict(head=True, batchnorm=False))):
        runs[name] = simulate_head(prob, lr=run["lr"], steps=run["steps"], record_every=max(1, run["steps"] // 100),
                                   progress=progress, **kw)
        results[name.replace(" ", "_").replace(",", "") + ".npz"] = runs[name]
    phases = {k: head_phases(v) for k, v in runs.items()}
    for k, ph in phases.items():
        echo(f"{k:>20}: weak feature learned: {ph['weak_learned']}; phases strong {ph['strong']}, "
             f"substitution {ph['substitution']}, weak {ph['weak']}, back {ph['back']}")
    return plot_identity_head(runs, phases, title=spec["title"] or None), {"phases": phases}


def _stepwise(spec, results, progress, echo):
    from ..plot import plot_stepwise
    from ..families.stepwise import StepwiseProblem, simulate_stepwise, solve_stepwise, step_times
    pb, run = spec["problem"], spec["run"]
    prob = StepwiseProblem.from_spectrum(pb["gammas"], pb["init_scale"], key=pb["seed"])
    T = run["horizon"] * step_times(prob).max()
    steps = int(np.ceil(T / run["lr"]))
    sim = simulate_stepwise(prob, lr=run["lr"], steps=steps, record_every=max(1, steps // 400), progress=progress)
    th = solve_stepwise(prob, times=sim.t)
    rnd = None
    if run["random_runs"]:
        rnd = simulate_stepwise(prob, lr=run["lr"], steps=steps, record_every=max(1, steps // 400), init="random",
                                runs=run["random_runs"], key=pb["seed"], progress=progress)
    results["stepwise_sim.npz"] = sim
    echo(f"step times {np.round(step_times(prob), 4).tolist()}; max |sim - theory| "
         f"{np.abs(sim.eigenvalues - th.eigenvalues).max():.2e}")
    return plot_stepwise(sim, th, prob, rnd, title=spec["title"] or None), {
        "step_times": step_times(prob), "max_abs_error": float(np.abs(sim.eigenvalues - th.eigenvalues).max())}


def _check(spec):
    """Parse-time checks beyond the value rules: per-mode lists of one length, and the number of steps."""
    from ..core.resources import ResourceError, check_steps
    pb, run = spec["problem"], spec["run"]
    if spec["experiment"] == "byol_phase_portrait" and len(pb["p0"]) != len(pb["s0"]):
        raise SpecError(f"problem.p0 and problem.s0 must have one entry per mode each: {len(pb['p0'])} vs "
                        f"{len(pb['s0'])}")
    try:
        if "t_max" in run:
            check_steps(int(np.ceil(run["t_max"] / run["lr"])))
        elif "steps" in run:
            check_steps(run["steps"])
        elif spec["experiment"] == "stepwise_staircase":
            from ..families.stepwise import StepwiseProblem, step_times
            tj = step_times(StepwiseProblem.from_spectrum(pb["gammas"], pb["init_scale"], key=pb["seed"]))
            if not np.max(tj) > 0:
                raise SpecError(f"problem.init_scale = {pb['init_scale']:g}: every mode starts at or past half its "
                                "fixed point (gamma s0^2 >= 1/2), so there is no staircase to run; use init_scale < "
                                f"{np.sqrt(0.5 / max(pb['gammas'])):.3g}")
            check_steps(int(np.ceil(run["horizon"] * np.max(tj) / run["lr"])), 1 + run["random_runs"])
    except ResourceError as exc:
        raise SpecError(f"run.lr / run.t_max / run.steps: {exc}") from None
    except SpecError:
        raise
    except (ValueError, TypeError) as exc:
        raise SpecError(f"[problem]: {exc}") from None


EXPERIMENTS = (
    Experiment("byol_phase_portrait", SCHEMAS["byol_phase_portrait"], _runner(_phase_portrait, "byol_phase_portrait"),
               check=_check, solve=_solve_portrait),
    Experiment("byol_alignment", SCHEMAS["byol_alignment"], _runner(_alignment, "byol_alignment"), check=_check),
    Experiment("identity_head", SCHEMAS["identity_head"], _runner(_identity_head, "identity_head"), check=_check),
    Experiment("stepwise_staircase", SCHEMAS["stepwise_staircase"], _runner(_stepwise, "stepwise_staircase"),
               check=_check, solve=_solve_stepwise),
)
