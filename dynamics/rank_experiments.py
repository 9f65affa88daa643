"""Runners for the rank-growth specs in ``sims/`` (dln_staircase, attention_staircase,
dense_attention_rank): simulate, solve the stages, compare at plateau middles, draw and save."""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np

from .results import _jsonable, atomic_write

__all__ = ["check_spec", "solve_rank_spec", "run_rank_spec"]


def check_spec(spec):
    from .experiments import SpecError
    run, pb = spec["run"], spec["problem"]
    for name in ("alphas", "init_scales"):
        for v in run.get(name) or []:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < (1 if name == "alphas" else np.inf)):
                raise SpecError(f"run.{name} entries must be numbers in (0, {'1' if name == 'alphas' else 'inf'}), got {v!r}")
    if spec["experiment"] == "dln_staircase" and pb["beta_star"] is not None and len(pb["beta_star"]) != pb["d"]:
        raise SpecError(f"problem.beta_star must have d = {pb['d']} entries, got {len(pb['beta_star'])}")


def _problem(spec, alpha):
    from .diagonal import DLNProblem
    from .experiments import SpecError
    from .transformer import AttentionProblem
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


def solve_rank_spec(spec):
    from .hadamard import stages
    if spec["experiment"] == "dense_attention_rank":
        from .experiments import SpecError
        raise SpecError("dense_attention_rank has no theory to solve; use `run`")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stages(_problem(spec, 1e-8)).to_dict()


def run_rank_spec(spec, out_dir, *, progress=True, echo=print):
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    if spec["experiment"] == "dense_attention_rank":
        summary = _run_dense(spec, out_dir, progress)
    else:
        summary = _run_staircase(spec, out_dir, progress, echo)
    summary["wall_time_s"] = time.perf_counter() - t0
    atomic_write(os.path.join(out_dir, "summary.json"),
                 lambda fh: fh.write(json.dumps(_jsonable(summary), indent=2).encode()))
    echo(f"wrote the figure, summary.json and .npz files in {out_dir} ({summary['wall_time_s']:.1f} s)")
    return summary


def _run_staircase(spec, out_dir, progress, echo):
    from .hadamard import crosscheck_stages, simulate_hadamard, stages
    from .plot import plot_staircase
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
    sims, checks = [], {}
    for a in alphas:
        pb = _problem(spec, a)
        steps = int(np.ceil(tau_max / (0.02 / pb.log_inv_alpha)))
        sim = simulate_hadamard(pb, method="dual", tau_max=tau_max,
                                record_every=max(1, steps // run["records"]), progress=progress)
        sim.save(os.path.join(out_dir, f"dual_alpha{a:.0e}.npz"))
        chk = crosscheck_stages(sim, st)
        checks[f"{a:.0e}"] = {"beta_error_mid": chk.beta_error, "loss_error_mid": chk.loss_error,
                              "jump_sim": chk.jump_sim, "jump_pred": chk.jump_pred}
        echo(f"alpha = {a:.0e}: simulated jumps {np.round(chk.jump_sim, 4).tolist()}")
        sims.append((a, sim))
    echo(f"predicted jumps      {np.round(st.times[1:], 4).tolist()}")
    fig = plot_staircase(sims, st, title=spec["title"] or None)
    atomic_write(os.path.join(out_dir, f"{spec['experiment']}.png"),
                 lambda fh: fig.savefig(fh, format="png", dpi=110))
    return {"spec": spec, "stages": st.to_dict(), "crosschecks": checks, "tau_max": tau_max}


def _run_dense(spec, out_dir, progress):
    from .plot import plot_dense_rank
    from .transformer import simulate_dense_attention
    run = spec["run"]
    pb = _problem(spec, 1e-2)
    sim = simulate_dense_attention(pb, init_scales=[float(s) for s in run["init_scales"]], lr=float(run["lr"]),
                                   steps=run["steps"], optimizer=run["optimizer"],
                                   record_every=max(1, run["steps"] // run["records"]), progress=progress)
    sim.save(os.path.join(out_dir, "dense_attention.npz"))
    fig = plot_dense_rank(sim, title=spec["title"] or None)
    atomic_write(os.path.join(out_dir, "dense_attention_rank.png"),
                 lambda fh: fig.savefig(fh, format="png", dpi=110))
    return {"spec": spec, "final_stable_rank_kq": sim.stable_rank_kq[:, -1],
            "final_stable_rank_vo": sim.stable_rank_vo[:, -1], "final_loss": sim.loss[:, -1]}
