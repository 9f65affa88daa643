"""Validity of the finite-step endpoint of a diagonal linear network (theory/dln_steps.md sec. 3).

For over-parametrised sparse regressions (n = 10 < d = 30, 3-sparse) at two init scales, gradient descent
at fractions of the stability limit is run to convergence; its endpoint is compared with
``implicit_bias(problem, lr)`` (eq. 3 with alpha_inf and delta_inf from the flow's path), with the same
without delta_inf (alpha_inf only), and with the flow's endpoint (what the step changes).  Errors are
max |beta_gd - beta| / max |beta_gd|.  Tables go to benchmarks/results/dln_finite_step.{md,json}.

    python benchmarks/bench_dln_steps.py
"""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np

import dynamics as dy
from dynamics.core.io import atomic_write, versions

HERE = os.path.dirname(os.path.abspath(__file__))
FRACTIONS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85, 0.95)
CASES = (("alpha = 0.1, key 1", 0.1, 1), ("alpha = 0.1, key 2", 0.1, 2), ("alpha = 0.01, key 1", 0.01, 1))


def row(pb, fraction, limit, flow_beta):
    lr = fraction * limit
    try:
        th = dy.implicit_bias(pb, lr)
    except ValueError as e:
        return {"fraction": fraction, "lr": lr, "refused": str(e).split(":")[1].strip()}
    steps = int(4000 / lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gd = dy.simulate_dln(pb, lr=lr, steps=steps, record_every=steps, progress=False)
    b = np.asarray(gd.beta)[-1]
    scale = np.abs(b).max()
    no_shift = dy.hyperbolic_interpolator(pb.X, pb.y, th.init_scale)
    grad = np.abs(pb.grad(b)).max() / np.abs(pb.grad(np.zeros(pb.p))).max()
    return {"fraction": fraction, "lr": lr, "prediction": float(np.abs(b - th.beta).max() / scale),
            "alpha_only": float(np.abs(b - no_shift).max() / scale),
            "flow_endpoint": float(np.abs(b - flow_beta).max() / scale),
            "quadrature_error": th.quadrature_error, "gradient_left": float(grad),
            "min_alpha_inf_over_alpha": float(th.init_scale.min() / pb.init_scale)}


def main():
    t0 = time.perf_counter()
    out = {"versions": versions(), "cases": []}
    for name, alpha, key in CASES:
        pb = dy.DLNProblem.random(10, 30, sparsity=3, init_scale=alpha, key=key)
        limit = float(dy.max_stable_lr("dln", pb))
        flow_beta = dy.implicit_bias(pb).beta
        rows = [row(pb, f, limit, flow_beta) for f in FRACTIONS]
        out["cases"].append({"name": name, "limit": limit, "rows": rows})
        print(name, "limit", limit)
        for r in rows:
            print("  ", r)
    out["seconds"] = time.perf_counter() - t0
    res = os.path.join(HERE, "results")
    atomic_write(os.path.join(res, "dln_finite_step.json"), lambda fh: fh.write(json.dumps(out, indent=2).encode()))
    lines = ["# Diagonal linear network: gradient descent's endpoint at a finite step vs the prediction",
             "",
             "`python benchmarks/bench_dln_steps.py` (theory/dln_steps.md sec. 3). n = 10 < d = 30, 3-sparse "
             "(`DLNProblem.random(10, 30, sparsity=3, ...)`); gradient descent at a fraction of "
             "`max_stable_lr` run for t = 4000 (gradient left <= 1e-12 of its initial size). Errors: "
             "max |beta_gd - beta| / max |beta_gd| of the prediction (eq. 3 with alpha_inf and delta_inf "
             "from the flow's path), of the same without delta_inf, and of the flow's endpoint (the size of "
             "what the step changes). 'refused': lr |grad L| >= 1 on the flow's path (sec. 5).",
             ""]
    for case in out["cases"]:
        lines += [f"## {case['name']} (stability limit {case['limit']:.4g})", "",
                  "| lr / limit | lr | prediction | alpha_inf only | flow's endpoint | min alpha_inf / alpha |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in case["rows"]:
            if "refused" in r:
                lines.append(f"| {r['fraction']:.2f} | {r['lr']:.4g} | refused | | | |")
            else:
                lines.append(f"| {r['fraction']:.2f} | {r['lr']:.4g} | {r['prediction']:.2e} | "
                             f"{r['alpha_only']:.2e} | {r['flow_endpoint']:.2e} | "
                             f"{r['min_alpha_inf_over_alpha']:.3f} |")
        lines.append("")
    lines.append(f"Total {out['seconds']:.0f} s; {out['versions']}.")
    atomic_write(os.path.join(res, "dln_finite_step.md"), lambda fh: fh.write("\n".join(lines).encode()))


if __name__ == "__main__":
    main()
