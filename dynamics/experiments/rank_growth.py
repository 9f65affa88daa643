"""Runners for the rank-growth specs in ``sims/`` (dln_staircase, attention_staircase,
dense_attention_rank): simulate, solve the stages, compare at plateau middles, draw and save."""

from __future__ import annotations

import warnings

import numpy as np

from .spec import NUM, TOP, Experiment, SpecError

__all__ = ["EXPERIMENTS"]

_ATTN_PROBLEM = {
    "n_samples": ((int,), False, 100), "n_tokens": ((int,), False, 6), "d": ((int,), False, 5),
    "heads": ((int,), False, 1), "layers": ((int,), False, 1), "seed": ((int,), False, 0),
}
SCHEMAS = {
    "dln_staircase": {**TOP, "problem": {
        "n": ((int,), True, None), "d": ((int,), True, None), "beta_star": ((list,), False, None),
        "sparsity": ((int,), False, None), "noise": (NUM, False, 0.0), "correlation": (NUM, False, 0.0),
        "seed": ((int,), False, 0)},
        "run": {"alphas": ((list,), True, None), "tau_max": (NUM, False, None),
                "records": ((int,), False, 1000)}},
    "attention_staircase": {**TOP, "problem": _ATTN_PROBLEM,
                            "run": {"alphas": ((list,), True, None), "tau_max": (NUM, False, None),
                                    "records": ((int,), False, 1000)}},
    "dense_attention_rank": {**TOP, "problem": _ATTN_PROBLEM,
                             "run": {"init_scales": ((list,), True, None), "lr": (NUM, True, None),
                                     "steps": ((int,), True, None), "optimizer": ((str,), False, "sgd"),
                                     "records": ((int,), False, 200)}},
}


def check_spec(spec):
    run, pb = spec["run"], spec["problem"]
    for name in ("alphas", "init_scales"):
        for v in run.get(name) or []:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < (1 if name == "alphas" else np.inf)):
                raise SpecError(f"run.{name} entries must be numbers in (0, {'1' if name == 'alphas' else 'inf'}), got {v!r}")
    if spec["experiment"] == "dln_staircase" and pb["beta_star"] is not None and len(pb["beta_star"]) != pb["d"]:
        raise SpecError(f"problem.beta_star must have d = {pb['d']} entries, got {len(pb['beta_star'])}")


def _problem(spec, alpha):
    from ..families.attention import AttentionProblem
    from ..families.dln import DLNProblem
    pb = spec["problem"]
    try:
        if spec["experiment"] == "dln_staircase":
            return DLNProblem.random(pb["n"], pb["d"], beta_star=pb["beta_star"], sparsity=pb["sparsity"],
                                     noise=float(pb["noise"]), correlation=float(pb["correlation"]),
                                     init_scale=alpha, key=pb["seed"])
        return AttentionProblem.teacher_student(pb["n_samples"], pb["n_tokens"], pb["d"], heads=pb["heads"],
                                                layers=pb["layers"], init_scale=alpha, key=pb["seed"])
    except (ValueError, TypeError) as exc:
        raise SpecError(f"[problem]: {exc}") from None


def solve_stages(spec, *, seed=None):
    from ..families.hadamard.stages import stages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stages(_problem(spec, 1e-8)).to_dict()


def run_staircase(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..families.hadamard.api import simulate_hadamard
    from ..core.compare import verdict
    from ..families.hadamard.stages import crosscheck_stages, stages
    from ..plot import plot_staircase
    run = spec["run"]
    alphas = sorted((float(a) for a in run["alphas"]), reverse=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        st = stages(_problem(spec, alphas[-1]))
    for w in caught:
        echo(f"warning: {w.message}")
    echo(st.summary())
    finite_end = st.times[-1] if st.times[-1] < 50 else st.times[min(len(st.times) - 1, 4)]
    tau_max = float(run["tau_max"]) if run["tau_max"] is not None else 1.15 * finite_end + 0.1
    sims, checks, results = [], {}, {}
    for a in alphas:
        pb = _problem(spec, a)
        # the adaptive dual flow, recorded every tau_max / records in rescaled time
        sim = simulate_hadamard(pb, method="dual", tau_max=tau_max, record_every=tau_max / run["records"],
                                progress=progress)
        results[f"dual_alpha{a:.0e}.npz"] = sim
        chk = crosscheck_stages(sim, st)
        checks[f"{a:.0e}"] = chk.to_dict()
        echo(f"alpha = {a:.0e}: simulated jumps {np.round(chk.jump_sim, 4).tolist()} "
             "(nan: the loss never crossed halfway to the next plateau within the run)")
        echo(f"crosscheck alpha = {a:.0e} (dual flow vs stages): {verdict(chk.outcome)} (tolerance {chk.rtol:g})")
        sims.append((a, sim))
    echo(f"predicted jumps      {np.round(st.times[1:], 4).tolist()}")
    fig = plot_staircase(sims, st, title=spec["title"] or None)
    return {"figures": {spec["experiment"]: fig}, "results": results,
            "summary": {"stages": st.to_dict(), "crosschecks": checks, "tau_max": tau_max}}


def run_dense(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..families.attention import simulate_dense_attention
    from ..plot import plot_dense_rank
    run = spec["run"]
    pb = _problem(spec, 1e-2)
    sim = simulate_dense_attention(pb, init_scales=[float(s) for s in run["init_scales"]], lr=float(run["lr"]),
                                   steps=run["steps"], optimizer=run["optimizer"],
                                   record_every=max(1, run["steps"] // run["records"]), progress=progress)
    for j, sc in enumerate(run["init_scales"]):
        echo(f"init scale {sc:g}: final loss {sim.loss[j, -1]:.4g}, stable rank of Delta W_K W_Q^T "
             f"{sim.stable_rank_kq[j, -1].mean():.3g}, of Delta W_V W_O^T {sim.stable_rank_vo[j, -1].mean():.3g}")
    fig = plot_dense_rank(sim, title=spec["title"] or None)
    return {"figures": {"dense_attention_rank": fig}, "results": {"dense_attention.npz": sim},
            "summary": {"final_stable_rank_kq": sim.stable_rank_kq[:, -1],
                        "final_stable_rank_vo": sim.stable_rank_vo[:, -1], "final_loss": sim.loss[:, -1]}}


EXPERIMENTS = (
    Experiment("dln_staircase", SCHEMAS["dln_staircase"], run_staircase, check=check_spec, solve=solve_stages),
    Experiment("attention_staircase", SCHEMAS["attention_staircase"], run_staircase, check=check_spec,
               solve=solve_stages),
    Experiment("dense_attention_rank", SCHEMAS["dense_attention_rank"], run_dense, check=check_spec),
)
