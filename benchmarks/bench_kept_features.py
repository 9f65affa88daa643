"""Which features a narrow network keeps from a small random init: the prediction (``dy.kept_features``:
Saxe and MAE the largest lam * rho, JEPA the largest rho; theory/jepa.md "A narrow encoder") against the exact
flow over many problems and seeds.

Per cell (family, depth, init, init scale): PROBLEMS random problems of d = 4 features through a network that
carries m = 2 (SSL: embed_dim = 2; Saxe: hidden width 2), lam ~ U(0.3, 2) and rho ~ U(0.2, 1) drawn independently
(so the three orders -- lam, lam rho, rho -- mostly differ), SEEDS random inits each ("gaussian" or
"orthogonal", per-layer scale init_scale^(1/L)).  The exact flow (rtol 1e-8) runs to t_end = HORIZON x the
largest critical time the aligned theory gives the predicted kept features; a feature counts as kept where its
gain ||Wbar v_i|| is at least half its fixed point at t_end.  Columns: the fraction of runs whose kept set is
exactly the predicted one, the fraction holding only part of it (fewer than m features learned by t_end: still
on a plateau), the fraction holding another set; and for the runs that match, the median and 90th percentile of
|t_obs - t_aligned| / t_aligned over kept features (t_obs: first record at half the fixed point; t_aligned: the
aligned init's exact critical time at the same per-layer scale -- how far a random init moves the clock).

    python benchmarks/bench_kept_features.py          # ~10 min on 2 cores
Tables: benchmarks/results/kept_features.{md,json}.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings

import numpy as np

import dynamics as dy
from dynamics.core.io import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
PROBLEMS, SEEDS, HORIZON, D, M = 8, 4, 100.0, 4, 2
NEAR = 0.1          # a near tie: the m-th and (m+1)-th features' scores within 10 %
CELLS = [("saxe", 2, "gaussian", 1e-3), ("saxe", 2, "orthogonal", 1e-3), ("saxe", 3, "gaussian", 1e-3),
         ("mae", 1, "gaussian", 1e-3), ("mae", 1, "orthogonal", 1e-3), ("mae", 2, "gaussian", 1e-3),
         ("jepa", 1, "gaussian", 1e-2), ("jepa", 1, "orthogonal", 1e-2), ("jepa", 2, "gaussian", 1e-2)]


def problems(family, depth, eps, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(PROBLEMS):
        lam, rho = rng.uniform(0.3, 2.0, D), rng.uniform(0.2, 1.0, D)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if family == "saxe":
                p = dy.RegressionProblem.from_spectrum(lam, rho, depth, eps, widths=[M] * (depth - 1))
            else:
                p = dy.SSLProblem.from_spectrum(lam, rho, depth, eps, embed_dim=M)
        out.append(p)
    return out


def first_crossing(t, y, level):
    above = np.flatnonzero(y >= level)
    return t[above[0]] if above.size else np.inf


def cell(index, family, depth, init, eps):
    probs = problems(family, depth, eps, seed=100 + index)
    objective = dy.get_family(family).objective
    match = partial = other = 0
    errors, others, near = [], [], 0
    t0 = time.perf_counter()
    for p in probs:
        kept = dy.kept_features(p, family=family)
        tc = dy.critical_times(p, family)                 # the aligned theory of the kept features
        t_end = HORIZON * float(np.max(tc[kept]))
        t = np.geomspace(1e-3 * t_end, t_end, 240)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim = getattr(dy, f"simulate_{family}")(p, method="flow", times=t, init=init, runs=SEEDS, key=1,
                                                      rtol=1e-8, progress=False)
        fp = objective.fixed_point(p.rho, depth)
        score = np.sort(p.lam * p.rho if objective.target == "identity" else p.rho)[::-1]
        gap = (score[M - 1] - score[M]) / score[M - 1]          # how close the m-th and (m+1)-th features are
        frac = np.asarray(sim.fields["gains"]) / fp          # (R, T, F)
        for r in range(SEEDS):
            got = np.flatnonzero(frac[r, -1] >= 0.5)
            if np.array_equal(got, kept):
                match += 1
                for i in kept:
                    errors.append(abs(first_crossing(t, frac[r, :, i], 0.5) - tc[i]) / tc[i])
            elif np.all(np.isin(got, kept)) and got.size < kept.size:
                partial += 1
            else:
                other += 1
                others.append({"predicted": kept.tolist(), "observed": got.tolist(),
                               "score": np.round(score, 4).tolist(), "t_end": t_end})
                near += gap < NEAR
    n = PROBLEMS * SEEDS
    e = np.asarray(errors)
    return {"family": family, "depth": depth, "init": init, "init_scale": eps, "runs": n,
            "match": match / n, "partial": partial / n, "other": other / n, "other_near_tie": near / n,
            "median_time_error": float(np.median(e)) if e.size else None,
            "p90_time_error": float(np.quantile(e, 0.9)) if e.size else None,
            "seconds": time.perf_counter() - t0, "other_cases": others}


def main():
    rows = []
    for i, c in enumerate(CELLS):
        rows.append(cell(i, *c))
        r = rows[-1]
        print(f"{r['family']:5s} L={r['depth']} {r['init']:10s} eps={r['init_scale']:g}: match {r['match']:.0%} "
              f"partial {r['partial']:.0%} other {r['other']:.0%}  time error median "
              f"{r['median_time_error']}  ({r['seconds']:.0f} s)", flush=True)
    lines = [
        "# Which features a narrow network keeps (kept-feature prediction vs the exact flow)", "",
        f"d = {D} features, the network carries m = {M} (SSL embed_dim = {M}; Saxe hidden width {M}); {PROBLEMS} random "
        f"problems x {SEEDS} seeds per cell (lam ~ U(0.3, 2), rho ~ U(0.2, 1)); exact flow at rtol 1e-8 to {HORIZON:g} x "
        "the predicted features' largest aligned critical time; kept = gain >= half the fixed point at t_end.",
        "Prediction (`dy.kept_features`): Saxe and MAE the largest lam rho (reduced-rank regression), JEPA the largest "
        "rho (theory/jepa.md, \"A narrow encoder\"). `partial`: a proper subset of the predicted set at t_end -- for "
        "JEPA a collapsed direction (the predictor's eigenvalue there <= 0: every feature decays along it, for good). "
        "`other`: any other set; `of which near ties`: runs in `other` on problems whose m-th and (m+1)-th scores "
        "(lam rho, or rho) are within 10 % (the displacement of the first-learned feature is then slower than t_end). "
        "Time error: |t_obs - t_aligned| / "
        "t_aligned over kept features of matching runs, t_aligned the aligned init's exact critical time -- how far a "
        "random init moves the clock (a stage theory for random inits would close it: issue 29).", "",
        "| family | depth | init | init scale | runs | predicted set | partial | other | of which near ties | time error median | time error p90 | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['family']} | {r['depth']} | {r['init']} | {r['init_scale']:g} | {r['runs']} | {r['match']:.0%} "
                     f"| {r['partial']:.0%} | {r['other']:.0%} | {r['other_near_tie']:.0%} | {fmt(r['median_time_error'])} | "
                     f"{fmt(r['p90_time_error'])} | {r['seconds']:.0f} |")
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; dynamics "
              f"{dy.__version__}."]
    os.makedirs(OUT, exist_ok=True)
    md, js = "\n".join(lines) + "\n", json.dumps(rows, indent=1)
    atomic_write(os.path.join(OUT, "kept_features.md"), lambda fh: fh.write(md.encode()))
    atomic_write(os.path.join(OUT, "kept_features.json"), lambda fh: fh.write(js.encode()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
