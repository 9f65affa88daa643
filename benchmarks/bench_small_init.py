"""The validity map of the theories from small random inits: per cell (family, depth, init, init scale) the
fraction of runs whose whole learning order is predicted and the critical-time errors, theory vs the exact flow.

Problems: PROBLEMS per cell, d = 4 features with lam ~ U(0.3, 2) and rho ~ U(0.2, 1) in a random rotated basis
(commuting covariances: normalised commutator 0; the stage theory needs a common basis and refuses others),
SEEDS random inits each.  The exact flow runs at rtol 1e-9 on a log grid to 3 x the theory's last critical time.
Theories:

* Saxe at depth 2 and MAE at depth 1 (two matrices), gaussian init: the small-init stage theory
  (``linear.small_init``: effective inits |c_i(0)|^2 / 4, greedy; theory/saxe.md "From a small random init").
  MAE's observable is the encoder's gain ||W u_i|| (its mode u_i^T W u_i depends on the hidden units' gauge
  from a random init); it crosses half its fixed point sqrt(rho) where the product mode reaches rho / 4.
* The same from an orthogonal init: zero-balanced, so exact (the end-to-end flow; `solve_saxe(init=...)`):
  listed as such, measured with the stage theory too.
* Saxe at depth 3, MAE at depth 2 (three matrices) and JEPA: no stage theory here; the rows measure the aligned
  init's theory at the same per-layer scale (order and times) -- the gap a stage theory for these would close.

Columns: runs, whole order right, median / 90th-percentile critical-time error (|t_flow - t_theory| / t_flow over
features), the 90th percentile of the curves' error (max_t |m_flow - m_theory| / max rho), and the calibration
error x ln(rho / m0) (largest over the cell's runs) that sets ``small_init.VALIDITY``.

    python benchmarks/bench_small_init.py             # ~5 min on 2 cores
Tables: benchmarks/results/small_init_validity.{md,json}.
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
from dynamics.core.keys import init_key, run_keys
from dynamics.families.linear.network import init_params
from dynamics.families.linear.small_init import VALIDITY, effective_inits, half_time, logistic_modes

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
PROBLEMS, SEEDS, D = 8, 4, 4
CELLS = [("saxe", 2, "gaussian", 1e-2), ("saxe", 2, "gaussian", 1e-3), ("saxe", 2, "gaussian", 1e-4),
         ("saxe", 2, "orthogonal", 1e-3),
         ("mae", 1, "gaussian", 1e-2), ("mae", 1, "gaussian", 1e-3), ("mae", 1, "gaussian", 1e-4),
         ("mae", 1, "orthogonal", 1e-3),
         ("saxe", 3, "gaussian", 1e-3), ("mae", 2, "gaussian", 1e-3),
         ("jepa", 1, "gaussian", 1e-2), ("jepa", 2, "gaussian", 1e-2)]


def draw(family, depth, eps, rng, k):
    lam, rho = rng.uniform(0.3, 2.0, D), rng.uniform(0.2, 1.0, D)
    cls = dy.RegressionProblem if family == "saxe" else dy.SSLProblem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_spectrum(lam, rho, depth, eps, rotate=True, key=k)


def crossing(t, y, level):
    """The first time y reaches level (linear interpolation between records); inf if never."""
    i = np.flatnonzero(y >= level)
    if not i.size:
        return np.inf
    i = i[0]
    if i == 0:
        return t[0]
    return t[i - 1] + (level - y[i - 1]) / (y[i] - y[i - 1]) * (t[i] - t[i - 1])


def cell(index, family, depth, init, eps):
    rng = np.random.default_rng(1000 + index)
    objective = dy.get_family(family).objective
    two = (family, depth) in (("saxe", 2), ("mae", 1))
    right = t_err = c_err = 0
    terr, cerr, calib = [], [], []
    n = 0
    t0 = time.perf_counter()
    for k in range(PROBLEMS):
        p = draw(family, depth, eps, rng, k)
        fp = objective.fixed_point(p.rho, depth)
        keys = run_keys(k, SEEDS)
        # the theory's times per run (two matrices: the stage theory; else the aligned init's)
        preds, m0s = [], []
        for r in range(SEEDS):
            params = init_params(p, objective, init, key=init_key(keys[r]))
            if two:
                W1, W2 = params["W"][0], (params["W"][1] if family == "saxe" else params["V"])
                m0, _ = effective_inits(W1, W2, p.basis, p.right_basis, p.lam, p.sigma2)
                frac = 0.5 if family == "saxe" else 0.25          # MAE's gain at half of sqrt(rho): m = rho / 4
                preds.append(half_time(p.lam, p.sigma2, m0, frac))
                m0s.append(m0)
            else:
                preds.append(dy.critical_times(p, family))
        t_end = 3.0 * max(float(np.max(x[np.isfinite(x)])) for x in preds)
        t = np.concatenate([[0.0], np.geomspace(1e-4 * t_end, t_end, 400)])
        sim = getattr(dy, f"simulate_{family}")(p, method="flow", times=t, init=init, runs=SEEDS, key=k, rtol=1e-9,
                                                  progress=False)
        gains = np.asarray(sim.fields["gains"])                    # (R, T, F)
        modes = np.asarray(sim.modes)
        for r in range(SEEDS):
            obs = np.array([crossing(t, gains[r, :, i], 0.5 * fp[i]) for i in range(D)])
            pred = preds[r]
            n += 1
            right += np.array_equal(np.argsort(obs, kind="stable"), np.argsort(pred, kind="stable"))
            e = np.abs(obs - pred) / obs
            terr += list(e)
            if two:
                m_th = logistic_modes(p.lam, p.sigma2, m0s[r], t)
                if family == "saxe":
                    ce = np.abs(modes[r] - m_th).max() / p.rho.max()
                else:                                   # the gain against sqrt(m) (balanced at small init)
                    ce = np.abs(gains[r] - np.sqrt(m_th)).max() / np.sqrt(p.rho).max()
                cerr.append(ce)
                lg = float(np.min(np.log(p.rho / m0s[r])))
                calib.append((float(np.max(e)) * lg, ce * lg))
    e, c = np.asarray(terr), np.asarray(cerr)
    return {"family": family, "depth": depth, "init": init, "init_scale": eps, "runs": n,
            "theory": ("stage theory (two matrices)" if two else "aligned-init theory (no stage theory yet)")
            + (" -- exact alternative: the end-to-end flow (zero-balanced)" if init == "orthogonal" else ""),
            "order": right / n, "median_time_error": float(np.median(e)), "p90_time_error": float(np.quantile(e, 0.9)),
            "p90_curve_error": float(np.quantile(c, 0.9)) if c.size else None,
            "calibration": [max(x[0] for x in calib), max(x[1] for x in calib)] if calib else None,
            "seconds": time.perf_counter() - t0}


def main():
    rows = []
    for i, c in enumerate(CELLS):
        rows.append(cell(i, *c))
        r = rows[-1]
        print(f"{r['family']:5s} L={r['depth']} {r['init']:10s} eps={r['init_scale']:g}: order {r['order']:.0%} "
              f"time error median {r['median_time_error']:.3f} p90 {r['p90_time_error']:.3f} curve p90 "
              f"{r['p90_curve_error']} calib {r['calibration']} ({r['seconds']:.0f} s)", flush=True)
    fmt = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    lines = ["# Theories from small random inits vs the exact flow (validity map)", "",
             f"d = {D} features (lam ~ U(0.3, 2), rho ~ U(0.2, 1), random rotated basis: commuting covariances), "
             f"{PROBLEMS} problems x {SEEDS} seeds per cell, exact flow at rtol 1e-9. Critical time: the gain "
             "||Wbar v_i|| at half its fixed point. Order: the whole order of the four critical times. Curves: "
             "max_t |flow - theory| / max rho (Saxe: the mode u^T Wbar v; MAE: the gain against sqrt of the product "
             "mode). Calibration: the cell's largest (time error, curve error) x ln(rho / m0); the stated errors "
             f"use {VALIDITY['time_constant']:g} and {VALIDITY['curve_constant']:g} / ln(rho / m0) "
             "(`small_init.VALIDITY`). Non-commuting covariances: the stage theory refuses them (no common basis).", "",
             "| family | depth | init | init scale | theory | runs | whole order | time error median | p90 | curve error p90 | calibration (time, curve) | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = "-" if r["calibration"] is None else f"{r['calibration'][0]:.2f}, {r['calibration'][1]:.2f}"
        lines.append(f"| {r['family']} | {r['depth']} | {r['init']} | {r['init_scale']:g} | {r['theory']} | {r['runs']} "
                     f"| {r['order']:.0%} | {fmt(r['median_time_error'])} | {fmt(r['p90_time_error'])} | "
                     f"{fmt(r['p90_curve_error'])} | {cal} | {r['seconds']:.0f} |")
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; dynamics "
              f"{dy.__version__}."]
    md, js = "\n".join(lines) + "\n", json.dumps(rows, indent=1)
    os.makedirs(OUT, exist_ok=True)
    atomic_write(os.path.join(OUT, "small_init_validity.md"), lambda fh: fh.write(md.encode()))
    atomic_write(os.path.join(OUT, "small_init_validity.json"), lambda fh: fh.write(js.encode()))
    print(md)


if __name__ == "__main__":
    main()
