"""The exact gradient flow (``method="flow"``, adaptive Tsit5) against gradient descent at equal accuracy,
and the adaptive small-init integrator (``method="dual"``) against the fixed-step RK4 it replaces.

For each case and each target accuracy (1e-3 and 1e-6 relative, in the critical times where the family
has them, else in the primary field), both answers are measured against a reference -- the flow at
rtol = 1e-13 on the same record grid -- and each is run at its cheapest setting that reaches the target:

* gradient descent: the largest learning rate (a divisor of the record spacing) whose error is within
  the target, found by measurement (two runs give the first-order constant, the guess is verified and
  refined by halving: stability may bind before accuracy does);
* the flow: the loosest rtol in 1e-3, 1e-4, ... that reaches the target.

Wall times are warm (each setting run once before timing); compilation is reported separately.
The ratios are against gradient descent in the same process.  Tables: benchmarks/results/flow.{md,json}.

    python benchmarks/bench_flow.py            # every case (~5-10 min on 2 cores)
    python benchmarks/bench_flow.py --quick    # the small cases only
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings

import numpy as np

import dynamics as dy
from dynamics.core import frontend

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
RECORDS = 200


def timed(fn):
    t0 = time.perf_counter()
    fn()                                        # first call: compile + run
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    return out, wall, max(0.0, first - wall)


def error(rep, measure):
    if measure == "critical":
        ce = np.asarray(rep.critical_rel_error, float)
        ce = ce[np.isfinite(ce)]
        return float(ce.max()) if ce.size else float("nan")
    return float(rep.max_rel_error)


def run_gd(fam, prob, dt, m, options):
    steps = RECORDS * m
    return frontend.simulate(fam, prob, lr=dt / m, steps=steps, record_every=m, options=options,
                             dtype=np.float64)


def run_flow(fam, prob, grid, rtol, options):
    return frontend.simulate(fam, prob, method="flow", times=grid, rtol=rtol, options=options)


def gd_at(fam, prob, dt, ref, acc, measure, options, m0=1, max_steps=4e7, max_run_s=60.0, per_step=0.0):
    """The smallest m (lr = dt / m) whose error is <= acc: (m, error, tried) or (None, last error, tried)
    when the run it needs would take more than ``max_steps`` steps or ``max_run_s`` seconds (estimated
    from the last run's speed; tried then holds the extrapolated steps under "needed")."""
    m, tried = m0, {}
    while RECORDS * m <= max_steps and RECORDS * m * per_step <= max_run_s:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tic = time.perf_counter()
                e = error(dy.crosscheck(run_gd(fam, prob, dt, m, options), ref), measure)
                if RECORDS * m >= 10_000:       # below that, fixed costs dominate the estimate
                    per_step = (time.perf_counter() - tic) / (RECORDS * m)
        except FloatingPointError:
            e = math.inf
        tried[m] = e
        if e <= acc:
            return m, e, tried
        if math.isfinite(e) and len([v for v in tried.values() if math.isfinite(v)]) >= 1:
            # first order: e ~ C / m; jump to the predicted m (x1.2 margin), at least doubling
            m = max(2 * m, int(math.ceil(1.2 * m * e / acc)))
        else:
            m *= 2
    tried["needed"] = RECORDS * m
    return None, e, tried


def case(name, fam, prob, t_max, measure, options=None, accs=(1e-3, 1e-6)):
    fam = dy.get_family(fam)
    options = options or {}
    dt = t_max / RECORDS
    grid = dt * np.arange(RECORDS + 1)
    ref = run_flow(fam, prob, grid, 1e-13, options)
    compile_s = float(ref.settings["compile_time_s"])      # the first flow call of this case compiles
    rows, per_step = [], 0.0
    for acc in accs:
        row = {"case": name, "family": fam.name, "target": acc, "measure": measure}
        m, e, tried = gd_at(fam, prob, dt, ref, acc, measure, options, per_step=per_step)
        if m is None:   # beyond the budget: the steps it would need, from the first-order extrapolation
            row.update(gd_lr=None, gd_steps=None, gd_wall_s=None, gd_error=e, gd_steps_needed=tried["needed"])
        else:
            _, wall, comp = timed(lambda: run_gd(fam, prob, dt, m, options))
            row.update(gd_lr=dt / m, gd_steps=RECORDS * m, gd_wall_s=wall, gd_compile_s=comp, gd_error=e)
            per_step = max(per_step, wall / (RECORDS * m))      # the next target's budget estimate
        failed = []
        for rtol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11):
            try:
                f = run_flow(fam, prob, grid, rtol, options)
            except FloatingPointError:
                failed.append(rtol)
                continue
            ef = error(dy.crosscheck(f, ref), measure)
            if ef <= acc:
                break
        row["flow_failed_rtols"] = failed
        f, wall, comp = timed(lambda: run_flow(fam, prob, grid, rtol, options))
        st = f.settings["solver_stats"]
        row.update(flow_rtol=rtol, flow_steps=st["accepted"] + st["rejected"], flow_evals=st["evaluations"],
                   flow_wall_s=wall, flow_compile_s=compile_s, flow_error=ef)
        row["speedup"] = (row["gd_wall_s"] / wall) if row["gd_wall_s"] else None
        rows.append(row)
        print(f"  {name:34s} {acc:g}: gd lr={row['gd_lr']} steps={row['gd_steps']} {row['gd_wall_s']} s | "
              f"flow rtol={rtol:g} steps={row['flow_steps']} {wall:.3f} s | x{row['speedup']}", flush=True)
    return rows


def dual_case(name, prob):
    """Adaptive dual (Tsit5) vs fixed RK4 at equal accuracy to the last stage, and vs RK4 at its former
    default step.  (Kvaerno5, the implicit alternative, is not in the table: with diffrax's default
    chord root finder it fails from the first jump on -- the Jacobian of the dual field changes by
    factors alpha^-2ds within a step -- and exhausts max_steps; measured, see theory/flow.md.)"""
    st = dy.stages(prob)
    tau_max = 1.15 * float(st.times[-1]) + 0.3
    grid = np.linspace(0.0, tau_max, RECORDS + 1)
    ref = dy.simulate_dln(prob, method="dual", times=grid, rtol=1e-10) if isinstance(prob, dy.DLNProblem) \
        else dy.simulate_attention(prob, method="dual", times=grid, rtol=1e-10)
    sim = dy.simulate_dln if isinstance(prob, dy.DLNProblem) else dy.simulate_attention
    out = []
    for rtol in (1e-6, 1e-8):
        ad, wall_ad, comp_ad = timed(lambda: sim(prob, method="dual", times=grid, rtol=rtol))
        e_ad = dy.crosscheck(ad, ref, rtol=1.0).max_rel_error
        stats = ad.settings["solver_stats"]
        n_ad = stats["accepted"] + stats["rejected"]
        # RK4 at the largest step (a divisor of the record spacing) that is as accurate
        m, e_rk, n_rk, wall_rk = 1, math.inf, None, None
        while RECORDS * m <= 2e7:
            dtau = (grid[1] - grid[0]) / m
            try:
                rk = sim(prob, method="dual_rk4", dtau=dtau, steps=RECORDS * m, record_every=m)
                e_rk = dy.crosscheck(rk, ref, rtol=1.0).max_rel_error
            except FloatingPointError:
                e_rk = math.inf
            if e_rk <= e_ad:
                _, wall_rk, _ = timed(lambda: sim(prob, method="dual_rk4", dtau=dtau, steps=RECORDS * m,
                                                  record_every=m))
                n_rk = RECORDS * m
                break
            m *= 2
        # today's default: fixed RK4 at dtau = 0.02 / log(1/alpha)
        n_def = int(math.ceil(tau_max / (0.02 / prob.log_inv_alpha)))
        row = {"case": name, "alpha": prob.init_scale, "tau_max": tau_max, "rtol": rtol,
               "rk4_default_steps": n_def,
               "adaptive_steps": n_ad,
               "adaptive_wall_s": wall_ad, "adaptive_compile_s": comp_ad, "adaptive_error": e_ad,
               "rk4_steps": n_rk, "rk4_wall_s": wall_rk, "rk4_error": e_rk,
               "step_ratio": (n_rk / n_ad) if n_rk else None, "wall_ratio": (wall_rk / wall_ad) if wall_rk else None}
        out.append(row)
        print(f"  {name:34s} rtol {rtol:g}: adaptive {n_ad} steps {wall_ad:.3f} s (err {e_ad:.2e}) | RK4 "
              f"{n_rk} steps {wall_rk} s (err {e_rk:.2e})", flush=True)
    return out


def median_time(fn, repeats=5):
    fn()                                        # compile
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return float(np.median(walls))


def theory_grid():
    rng = np.random.default_rng(0)
    F = 10_000
    lam, rho = rng.uniform(0.2, 1.0, F), rng.uniform(0.2, 1.0, F)
    t = np.linspace(0, 2000, 1000)
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P_all = dy.SSLProblem.from_spectrum(lam, rho, 3, 1e-2)
        build = time.perf_counter() - tic
        r = rho.copy()
        r[: F // 50] = 0.9 * 0.01 ** (1 / 3)          # 2 %: rho <= eps^(1/L), off the learning branch
        P_mix = dy.SSLProblem.from_spectrum(lam, r, 3, 1e-2)
        w_all = median_time(lambda: dy.solve_jepa(P_all, times=t))
        w_mix = median_time(lambda: dy.solve_jepa(P_mix, times=t))
    return {"features": F, "times": t.size, "from_spectrum_s": build, "solve_all_learnable_s": w_all,
            "solve_2pct_unlearnable_s": w_mix, "ratio": w_mix / w_all}


def main(quick=False):
    os.makedirs(OUT, exist_ok=True)
    rows = []
    print("gd vs flow at equal accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jepa_small = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3)
        rows += case("JEPA L=2 eps=0.05 (short)", "jepa", jepa_small, 130.0, "critical")
        byol = dy.get_family("byol").example().problem
        rows += case("BYOL aligned (short)", "byol", byol, 20.0, "field")
        if not quick:
            jepa_long = dy.SSLProblem.from_spectrum([1.0, 0.6], [0.6, 1.0], 5, 1e-3)
            tc = dy.critical_times(jepa_long, objective="jepa")
            rows += case("JEPA L=5 eps=1e-3 (long)", "jepa", jepa_long, 1.3 * float(np.max(tc)), "critical")
            saxe = dy.RegressionProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 4, 1e-3, rotate=True, key=1)
            tcs = dy.critical_times(saxe)
            rows += case("Saxe L=4 eps=1e-3 (long)", "saxe", saxe, 1.3 * float(np.max(tcs)), "critical")
            rng = np.random.default_rng(0)
            wide = dy.SSLProblem.from_spectrum(rng.uniform(0.3, 1.0, 64), rng.uniform(0.5, 1.0, 64), 3, 1e-2,
                                               rotate=True, key=4)
            tcw = dy.critical_times(wide, objective="jepa")
            rows += case("JEPA d=64 L=3 rotated (large d)", "jepa", wide, 1.3 * float(np.max(tcw)), "critical")
            dln = dy.DLNProblem.random(200, 5, beta_star=[2.0, -1.0, 0.5, 0.25, 0.0], init_scale=1e-8, key=0)
            T = (1.15 * float(dy.stages(dln).times[-1]) + 0.3) * dln.log_inv_alpha
            rows += case("DLN 200x5 alpha=1e-8 (staircase)", "dln", dln, T, "field")
    print("adaptive dual vs fixed RK4")
    duals = []
    # noisy, correlated: the last stage comes at tau ~ 98 (fixed RK4 at dtau = 0.02 / log(1/alpha): 1e5 to 1.4e6 steps)
    base = dy.DLNProblem.random(200, 5, beta_star=[2, -1, 0.5, 0.25, 0], noise=0.1, correlation=0.5,
                                init_scale=1e-8, key=0)
    for a in ((1e-8,) if quick else (1e-8, 1e-64, 1e-128)):
        duals += dual_case(f"DLN 200x5 alpha={a:g}", base.with_init_scale(a))
    if not quick:
        att = dy.AttentionProblem.teacher_student(60, 4, 3, init_scale=1e-8, key=1)
        duals += dual_case("attention 60x4x3 alpha=1e-8", att)
    print("theory on a large grid")
    grid = theory_grid()
    print(" ", grid)
    result = {"gd_vs_flow": rows, "dual": duals, "theory_grid": grid, **dy.core.io.versions()}
    with open(os.path.join(OUT, "flow.json"), "w") as f:
        json.dump(dy.core.io.jsonable(result), f, indent=1)
    write_md(result)


def fmt(x, spec=".3g"):
    return "-" if x is None else format(x, spec)


def write_md(res):
    L = ["# The exact flow against gradient descent (benchmarks/bench_flow.py)", "",
         "Equal accuracy against the flow at rtol = 1e-13 on one record grid (200 records); wall times warm, "
         "compilation separate; speed-up = gd wall / flow wall.", "",
         "| case | target | measure | gd lr | gd steps | gd s | flow rtol | flow steps | flow evals | flow s | "
         "flow compile s | speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["gd_vs_flow"]:
        gd_steps = fmt(r['gd_steps'], ',') if r['gd_steps'] else f"> {r['gd_steps_needed']:,} (not run)"
        L.append(f"| {r['case']} | {r['target']:g} | {r['measure']} | {fmt(r['gd_lr'])} | {gd_steps} | "
                 f"{fmt(r['gd_wall_s'])} | {r['flow_rtol']:g} | {r['flow_steps']:,} | {r['flow_evals']:,} | "
                 f"{r['flow_wall_s']:.3g} | {r['flow_compile_s']:.3g} | {fmt(r['speedup'])} |")
    L += ["", "## Adaptive dual integrator (Tsit5) vs the fixed-step RK4, to the last stage", "",
          "RK4 at the largest step (a divisor of the record spacing) whose error against the rtol = 1e-10 "
          "reference is at most the adaptive run's.", "",
          "| case | rtol (beta) | Tsit5 steps | Tsit5 s | Tsit5 error | RK4 steps at equal accuracy | RK4 s | "
          "step ratio RK4/Tsit5 | wall ratio | RK4 steps at the former default dtau | ratio to Tsit5 |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["dual"]:
        L.append(f"| {r['case']} | {r['rtol']:g} | {r['adaptive_steps']:,} | {r['adaptive_wall_s']:.3g} | "
                 f"{r['adaptive_error']:.2e} | {fmt(r['rk4_steps'], ',')} | {fmt(r['rk4_wall_s'])} | "
                 f"{fmt(r['step_ratio'])} | {fmt(r['wall_ratio'])} | {r['rk4_default_steps']:,} | "
                 f"{r['rk4_default_steps'] / r['adaptive_steps']:.3g} |")
    g = res["theory_grid"]
    L += ["", "## Theory on a large grid", "",
          f"solve_jepa on {g['features']:,} features x {g['times']:,} times: {g['solve_all_learnable_s']:.3g} s "
          f"with every feature learnable, {g['solve_2pct_unlearnable_s']:.3g} s with 2 % off the learning "
          f"branch (ratio {g['ratio']:.2f}); from_spectrum with {g['features']:,} features: "
          f"{g['from_spectrum_s']:.3g} s.", ""]
    with open(os.path.join(OUT, "flow.md"), "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
