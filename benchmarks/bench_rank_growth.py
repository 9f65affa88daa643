"""Rank-growth solvers: the stage algorithm and the exact small-init (dual) integrator against plain
gradient descent on (u, v) reaching the same rescaled time t / log(1/alpha), at alpha = 1e-8.

Plain GD needs about tau log(1/alpha) / lr steps; the dual integrator's step is a fixed fraction of
1 / log(1/alpha) in tau; the stage algorithm does not integrate through the plateaus at all.
Each row reports wall time (compile excluded: every method is run once before timing), the
accuracy at the last plateau middle, and the ratio to GD.  Tables go to benchmarks/results/.

    python benchmarks/bench_rank_growth.py
"""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np

import dynamics as dy
from dynamics.core.io import atomic_write, versions
from dynamics.families.dln import DLNProblem
from dynamics.families.attention import AttentionProblem

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn):
    fn()                                    # warm-up (compilation)
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench(name, pb, tau_max, lr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        st, t_stage = timed(lambda: dy.stages(pb))
    dual, t_dual = timed(lambda: dy.hadamard.simulate_hadamard(pb, method="dual", tau_max=tau_max))
    rk4, t_rk4 = timed(lambda: dy.hadamard.simulate_hadamard(pb, method="dual_rk4", tau_max=tau_max))
    gd, t_gd = timed(lambda: dy.hadamard.simulate_hadamard(pb, method="gd", lr=lr, tau_max=tau_max,
                                                          record_every=100))
    cd, cg, cr = dy.crosscheck(dual, st), dy.crosscheck(gd, st), dy.crosscheck(rk4, st)
    stats = dual.settings["solver_stats"]
    k = np.nonzero(np.isfinite(cd.beta_error))[0]
    rows = [
        {"method": "stage algorithm", "wall_s": t_stage, "steps": int(st.n_stages), "err_mid": 0.0},
        {"method": "dual integrator (adaptive Tsit5)", "wall_s": t_dual,
         "steps": int(stats["accepted"] + stats["rejected"]), "err_mid": float(np.nanmax(cd.beta_error[k]))},
        {"method": "dual integrator (fixed RK4)", "wall_s": t_rk4, "steps": int(rk4.settings["steps"]),
         "err_mid": float(np.nanmax(cr.beta_error[k]))},
        {"method": f"gradient descent on (u, v), lr = {lr:g}", "wall_s": t_gd,
         "steps": int(gd.settings["steps"]), "err_mid": float(np.nanmax(cg.beta_error[k]))},
    ]
    for r in rows:
        r["speedup_vs_gd"] = t_gd / r["wall_s"]
    return {"problem": name, "alpha": pb.init_scale, "tau_max": tau_max, "n_stages": int(st.n_stages),
            "rows": rows}


def main():
    alpha = 1e-8
    cases = [
        bench("DLN n=200 d=6", DLNProblem.random(200, 6, beta_star=[2, -1, 0.5, 0.25, 0, 0],
                                                            noise=0.1, correlation=0.5, init_scale=alpha,
                                                            key=0), 4.0, 0.01),
        bench("diagonal attention M=100 N=6 d=5", AttentionProblem.teacher_student(100, 6, 5, init_scale=alpha,
                                                                                  key=0), 1.3, 0.01),
    ]
    out = os.path.join(HERE, "results")
    os.makedirs(out, exist_ok=True)
    res = {"machine": versions(), "cpus": os.cpu_count(), "cases": cases}
    atomic_write(os.path.join(out, "rank_growth.json"),
                            lambda fh: fh.write(json.dumps(res, indent=2).encode()))
    lines = [f"# Rank-growth solvers at alpha = {alpha:g}", "", f"Machine: {os.cpu_count()} CPUs, jax {res['machine']['jax']}.", "",
             "Same rescaled time for every method; err_mid = max |beta - beta^k| at the plateau middles "
             "(finite-alpha gradient flow itself differs from the alpha -> 0 limit by O(1/log(1/alpha))).", "",
             "Reading: both integrators need a step proportional to 1/log(1/alpha) in tau (the jumps take O(1) "
             "original time), so at alpha = 1e-8 the RK4 dual integrator (4 gradients a step, step 0.02/log(1/alpha);"
             " larger steps lose accuracy in the attention jumps) is not faster than plain GD; what it buys is "
             "exact gradient flow (RK4 error ~1e-7 here vs GD's O(lr) Euler error) with no O(alpha) state. "
             "The stage algorithm skips the plateaus: its cost does not depend on alpha at all. The adaptive "
             "dual integrator (error-controlled Tsit5, large steps on the plateaus) is the default "
             "method='dual'; benchmarks/results/flow.md compares it with the fixed RK4 at equal accuracy.",
             ""]
    for c in cases:
        lines += [f"## {c['problem']}: {c['n_stages']} stages, tau_max = {c['tau_max']}", "",
                  "| method | wall time (s) | steps | err_mid | speed-up vs GD |", "|---|---|---|---|---|"]
        for r in c["rows"]:
            lines.append(f"| {r['method']} | {r['wall_s']:.3f} | {r['steps']} | {r['err_mid']:.2e} | "
                         f"{r['speedup_vs_gd']:.1f}x |" + (f" {r['note']}" if "note" in r else ""))
        lines.append("")
    atomic_write(os.path.join(out, "rank_growth.md"),
                            lambda fh: fh.write("\n".join(lines).encode()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
