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
    "dense_attention_rank": {**TOP, "problem": {
        **_ATTN_PROBLEM,
        # "diagonal": the toy of theory/attention.md; "rotated": one dense head whose products have the
        # singular values kq, vo in random bases (dynamics.rotated_teacher)
        "teacher": ((str,), False, "diagonal"), "kq": ((list,), False, [3.0, 2.0, 1.2]),
        "vo": ((list,), False, [2.5, 1.5, 0.8])},
        "run": {"init_scales": ((list,), True, None),
                # one number for every optimizer, or a table {sgd = ..., adam = ...}
                "lr": (NUM + (dict,), True, None), "steps": ((int, dict), True, None),
                "optimizer": ((str,), False, "sgd"), "optimizers": ((list,), False, None),
                "records": ((int,), False, 200), "fraction": (NUM, False, 0.5)}},
}


def check_spec(spec):
    run, pb = spec["run"], spec["problem"]
    for name in ("alphas", "init_scales"):
        for v in run.get(name) or []:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < (1 if name == "alphas" else np.inf)):
                raise SpecError(f"run.{name} entries must be numbers in (0, {'1' if name == 'alphas' else 'inf'}), got {v!r}")
    if spec["experiment"] == "dln_staircase" and pb["beta_star"] is not None and len(pb["beta_star"]) != pb["d"]:
        raise SpecError(f"problem.beta_star must have d = {pb['d']} entries, got {len(pb['beta_star'])}")
    if spec["experiment"] == "dense_attention_rank":
        if pb["teacher"] not in ("diagonal", "rotated"):
            raise SpecError(f"problem.teacher must be 'diagonal' or 'rotated', got {pb['teacher']!r}")
        for opt in _optimizers(run):
            if opt not in ("sgd", "adam"):
                raise SpecError(f"run.optimizers entries must be 'sgd' or 'adam', got {opt!r}")
            for key, types in (("lr", (int, float)), ("steps", (int,))):
                val = run[key].get(opt) if isinstance(run[key], dict) else run[key]
                if isinstance(val, bool) or not isinstance(val, types) or not val > 0:
                    raise SpecError(f"run.{key} must be a positive number, or a table with a positive entry for "
                                    f"every optimizer; {opt!r} has {val!r}")


def _optimizers(run):
    return list(run["optimizers"]) if run.get("optimizers") else [run["optimizer"]]


def _problem(spec, alpha):
    from ..families.attention import AttentionProblem
    from ..families.dln import DLNProblem
    pb = spec["problem"]
    try:
        if spec["experiment"] == "dln_staircase":
            return DLNProblem.random(pb["n"], pb["d"], beta_star=pb["beta_star"], sparsity=pb["sparsity"],
                                     noise=float(pb["noise"]), correlation=float(pb["correlation"]),
                                     init_scale=alpha, key=pb["seed"])
        if pb.get("teacher", "diagonal") == "rotated":
            from ..families.attention import rotated_teacher
            return rotated_teacher(pb["n_samples"], pb["n_tokens"], pb["d"], kq=pb["kq"], vo=pb["vo"],
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
    sims, checks, convergence, results = [], {}, {}, {}
    for a in alphas:
        pb = _problem(spec, a)
        # the adaptive dual flow, recorded every tau_max / records in rescaled time
        sim = simulate_hadamard(pb, method="dual", tau_max=tau_max, record_every=tau_max / run["records"],
                                progress=progress)
        results[f"dual_alpha{a:.0e}.npz"] = sim
        chk = crosscheck_stages(sim, st)
        echo(f"alpha = {a:.0e}: simulated jumps {np.round(chk.jump_sim, 4).tolist()} "
             "(nan: the loss never crossed halfway to the next plateau within the run)")
        err = np.abs(chk.jump_error[np.isfinite(chk.jump_error)])
        if a == alphas[-1]:
            # the check: the smallest alpha against the alpha -> 0 stages
            checks[f"{a:.0e}"] = chk.to_dict()
            echo(f"crosscheck alpha = {a:.0e} (dual flow vs stages): {verdict(chk.outcome)} (tolerance {chk.rtol:g})")
            for line in (*chk.reasons, chk.advice):      # every FAIL / INCONCLUSIVE says why and what to do
                if line and chk.outcome != "passed":
                    echo(f"  {line}")
        else:
            # larger alphas show the convergence; the stages are their limit, not their prediction
            convergence[f"{a:.0e}"] = {"max_jump_error": float(err.max()) if err.size else float("nan"),
                                       "within_tolerance": chk.outcome == "passed"}
            echo(f"alpha = {a:.0e} (dual flow vs the alpha -> 0 stages, shown for the convergence, not a check): "
                 f"max jump error {err.max() if err.size else float('nan'):.3g}, shrinking like 1/log(1/alpha)")
        sims.append((a, sim))
    echo(f"predicted jumps      {np.round(st.times[1:], 4).tolist()}")
    fig = plot_staircase(sims, st, title=spec["title"] or None)
    return {"figures": {spec["experiment"]: fig}, "results": results,
            "summary": {"stages": st.to_dict(), "crosschecks": checks, "convergence": convergence,
                        "tau_max": tau_max}}


def singular_value_times(sim, run, field, fraction=0.5, top=None):
    """(top,) the times at which each of the ``top`` largest singular values of a learned perturbation
    (``field`` = "sv_kq" or "sv_vo", first head of the first layer) first reaches ``fraction`` of its
    final value, for run ``run`` of a dense-attention trajectory (nan where it never does)."""
    from ..core.metrics import hitting_times
    sv = np.asarray(sim.fields[field])[run][:, 0, 0, :]
    top = sv.shape[-1] if top is None else top
    fin = sv[-1, :top]
    return np.where(fin > 0, hitting_times(sim.t, sv[:, :top], np.where(fin > 0, fin, 1.0), fraction), np.nan)


def numerical_rank(sv, rel=0.1):
    """The number of singular values above ``rel`` x the largest."""
    sv = np.asarray(sv, float)
    return int(np.sum(sv > rel * sv.max())) if sv.size and sv.max() > 0 else 0


def run_dense(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..families.attention import simulate_dense_attention
    from ..plot import plot_dense_rank
    run, pb = spec["run"], spec["problem"]
    prob = _problem(spec, 1e-2)
    scales = [float(s) for s in run["init_scales"]]
    fraction = float(run["fraction"])
    top = len(pb["vo"]) if pb["teacher"] == "rotated" else prob.d
    sims, summary, results = {}, {"teacher": pb["teacher"], "runs": {}}, {}
    for opt in _optimizers(run):
        lr = float(run["lr"][opt] if isinstance(run["lr"], dict) else run["lr"])
        steps = int(run["steps"][opt] if isinstance(run["steps"], dict) else run["steps"])
        sim = simulate_dense_attention(prob, init_scales=scales, lr=lr, steps=steps, optimizer=opt,
                                       record_log=run["records"], progress=progress, dtype=dtype)
        sims[opt] = sim
        results[f"dense_attention_{opt}.npz"] = sim
        for j, sc in enumerate(scales):
            t_vo = singular_value_times(sim, j, "sv_vo", fraction, top)
            t_kq = singular_value_times(sim, j, "sv_kq", fraction, top)
            ok = np.isfinite(t_vo)
            gaps = np.diff(t_vo[ok]) / t_vo[ok][1:] if ok.sum() > 1 else np.zeros(0)
            rk = (numerical_rank(sim.sv_kq[j, -1, 0, 0]), numerical_rank(sim.sv_vo[j, -1, 0, 0]))
            row = {"optimizer": opt, "lr": lr, "init_scale": sc, "final_loss": sim.loss[j, -1],
                   "vo_times": t_vo, "kq_times": t_kq, "vo_min_gap": float(gaps.min()) if gaps.size else float("nan"),
                   "vo_in_order": bool(gaps.size and np.all(gaps > 0)), "final_rank": rk,
                   "stable_rank": (float(sim.stable_rank_kq[j, -1].mean()), float(sim.stable_rank_vo[j, -1].mean()))}
            summary["runs"][f"{opt}_{sc:g}"] = row
            echo(f"{opt} (lr {lr:g}), init {sc:g}: loss {sim.loss[j, 0]:.3g} -> {row['final_loss']:.2g}; "
                 f"singular values of dW_V W_O^T reach {fraction:g} of their final value at t = "
                 f"{np.round(t_vo, 3).tolist()} ({'one at a time' if row['vo_in_order'] else 'NOT one at a time'}, "
                 f"closest {row['vo_min_gap']:.0%} apart), of dW_K W_Q^T at {np.round(t_kq, 3).tolist()}; "
                 f"final rank (KQ, VO) {rk} (singular values > 10 % of the largest)")
    teacher = (pb["kq"], pb["vo"]) if pb["teacher"] == "rotated" else None
    fig = plot_dense_rank(sims, teacher=teacher, top=top, title=spec["title"] or None)
    return {"figures": {"dense_attention_rank": fig}, "results": results, "summary": summary}


EXPERIMENTS = (
    Experiment("dln_staircase", SCHEMAS["dln_staircase"], run_staircase, check=check_spec, solve=solve_stages),
    Experiment("attention_staircase", SCHEMAS["attention_staircase"], run_staircase, check=check_spec,
               solve=solve_stages),
    Experiment("dense_attention_rank", SCHEMAS["dense_attention_rank"], run_dense, check=check_spec),
)
