"""The validity map of the generalised-mode approximation (theory/generalized.md sec. 4).

Random JEPA problems (d = 4, lam spread over (0.3, 1), rho over (0.4, 1), no two rho closer than 0.0375) whose Syx is rotated by an angle away
from Sxx's eigenbasis (``validity.noncommuting_problem``; angle 0 = commuting, in a random basis); for
each, the exact gradient flow (rtol 1e-8) against the generalised-mode prediction
(``critical_times(..., approx="generalized")``), read on the encoder's gain on each generalised direction
(``validity.measure``).  Cells: depth L, init scale eps, angle (hence the normalised commutator c), init
"aligned" (W_a = V = eps^(1/L) I) or "orthogonal" (random orthogonal layers of the same scale: a
non-aligned small init).

The library's thresholds (``dynamics.families.linear.generalized.VALIDITY``) are derived here:
  threshold  the largest c (cell median, aligned init) such that in every cell at or below it -- every
             depth and init scale -- the first feature learned was the predicted one in every problem
             and the 95th percentile of the first critical time's relative error is <= 5 %;
  threshold_order  the same for the whole learning order: every feature learned in the predicted order
             in >= 90 % of the problems of every cell at or below it;
  slope[L]   the 95th percentile, over aligned-init problems with 0 < c <= threshold at depth L, of
             (first critical time's relative error) / c: the error estimate is slope * c.
Tables: benchmarks/results/generalized_validity.{md,json}; figure generalized_validity.png.

    python benchmarks/bench_generalized.py            # the full map (~10-15 min on 2 cores)
    python benchmarks/bench_generalized.py --quick    # a coarse map (~2 min)
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import numpy as np

import dynamics as dy  # noqa: F401  (float64)
from dynamics.core.io import atomic_write
from dynamics.families.linear.validity import measure, noncommuting_problem

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
ANGLES = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
CELLS = ((1, 1e-2), (2, 1e-2), (2, 1e-3), (3, 1e-2), (3, 1e-3))
INITS = ("aligned", "orthogonal")
MAX_ERROR_OK = 0.05
ORDER_OK = 0.9


def run_map(angles=ANGLES, cells=CELLS, inits=INITS, n=12, d=4, echo=print):
    rows = []
    for L, eps in cells:
        for angle in angles:
            probs = [noncommuting_problem(d, angle, L, eps, key=1000 * L + 17 * k + int(1e4 * angle))
                     for k in range(n)]
            for init in inits:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m = measure(probs, init=init, key=7)
                row = {"depth": L, "init_scale": eps, "angle": angle, "init": init, "n": n,
                       "commutator_median": float(np.median(m["commutator"])),
                       "commutator_max": float(np.max(m["commutator"])),
                       "first_match": float(np.mean(m["first_match"])),
                       "first_error_p50": float(np.median(m["first_error"])),
                       "first_error_p95": float(np.percentile(m["first_error"], 95)),
                       "order_match": float(np.mean(m["order_match"])),
                       "max_error_p50": float(np.median(m["max_error"])),
                       "max_error_p95": float(np.percentile(m["max_error"], 95)),
                       "ratios": [float(e / c) for e, c in zip(m["first_error"], m["commutator"]) if c > 0],
                       "commutators": m["commutator"].tolist(), "first_errors": m["first_error"].tolist(),
                       "wall_s": time.perf_counter() - t0}
                rows.append(row)
                echo(f"L={L} eps={eps:g} angle={angle:g} {init:>10}: c~{row['commutator_median']:.2e} "
                     f"first {row['first_match']:.2f} err p95 {row['first_error_p95']:.2e}; order "
                     f"{row['order_match']:.2f} max err p50 {row['max_error_p50']:.2e} ({row['wall_s']:.1f} s)")
    return rows


def _largest_ok(al, ok):
    """The largest commutator of the angle bins up to which every aligned cell satisfies ``ok``."""
    out = 0.0
    for angle in sorted({r["angle"] for r in al}):
        if not all(ok(r) for r in al if r["angle"] <= angle):
            break
        out = max(r["commutator_max"] for r in al if r["angle"] == angle)
    return out


def derive(rows):
    """The thresholds from the map (see the module docstring)."""
    al = [r for r in rows if r["init"] == "aligned"]
    threshold = _largest_ok(al, lambda r: r["first_match"] == 1.0 and r["first_error_p95"] <= MAX_ERROR_OK)
    threshold_order = _largest_ok(al, lambda r: r["order_match"] >= ORDER_OK)
    slope = {}
    for L in sorted({r["depth"] for r in al}):
        ratios = [e / c for r in al if r["depth"] == L for e, c in zip(r["first_errors"], r["commutators"])
                  if 0 < c <= threshold]
        slope[L] = float(np.percentile(ratios, 95)) if ratios else float("nan")
    return {"threshold": float(f"{threshold:.2g}"), "threshold_order": float(f"{threshold_order:.2g}"),
            "slope": {L: float(f"{s:.2g}") for L, s in slope.items()},
            "rule": f"threshold: the largest c (angle bin) such that in every aligned cell at or below it the "
                    f"first feature learned was the predicted one in every problem and the p95 of its critical "
                    f"time's relative error is <= {MAX_ERROR_OK:g}; threshold_order: the same with every feature "
                    f"learned in the predicted order in >= {ORDER_OK:.0%} of the problems; slope[L]: the p95 of "
                    "(first critical time's relative error) / c over aligned problems with 0 < c <= threshold"}


def write(rows, derived):
    os.makedirs(OUT, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k not in ("ratios", "commutators", "first_errors")} for r in rows]
    payload = {"rows": rows, "derived": derived}
    atomic_write(os.path.join(OUT, "generalized_validity.json"),
                 lambda fh: fh.write(json.dumps(payload, indent=1).encode()))
    lines = ["# Validity map of the generalised-mode approximation",
             "",
             "Generated by `benchmarks/bench_generalized.py` (see its docstring and theory/generalized.md sec. 4).",
             "JEPA, d = 4, 12 random problems per cell; exact flow (rtol 1e-8) vs the generalised-mode",
             "prediction, read on the encoder's gain on each generalised direction. c: normalised commutator",
             "(cell median). first: fraction of problems whose first learned feature is the predicted one;",
             "first err: relative error of that critical time (p50 / p95); order: fraction with every feature",
             "learned in the predicted order; max err: largest relative critical-time error over the features.",
             "",
             "| L | eps | angle | init | c | first | first err p50 | first err p95 | order | max err p50 | max err p95 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in slim:
        lines.append(f"| {r['depth']} | {r['init_scale']:g} | {r['angle']:g} | {r['init']} | {r['commutator_median']:.2e} "
                     f"| {r['first_match']:.2f} | {r['first_error_p50']:.2e} | {r['first_error_p95']:.2e} "
                     f"| {r['order_match']:.2f} | {r['max_error_p50']:.2e} | {r['max_error_p95']:.2e} |")
    lines += ["", f"Derived (the library's `VALIDITY`): threshold c* = {derived['threshold']:g} (first feature), "
              f"threshold_order = {derived['threshold_order']:g} (the whole order); error estimate of the first "
              f"critical time = slope[L] * c with slope = {derived['slope']}.", "", f"Rule: {derived['rule']}."]
    text = "\n".join(lines) + "\n"
    atomic_write(os.path.join(OUT, "generalized_validity.md"), lambda fh: fh.write(text.encode()))
    return text


def figure(rows, derived, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for init, ax in zip(INITS, axes):
        for L, eps in sorted({(r["depth"], r["init_scale"]) for r in rows}):
            rr = [r for r in rows if r["init"] == init and r["depth"] == L and r["init_scale"] == eps]
            c = np.array([max(r["commutator_median"], 1e-6) for r in rr])
            ax.plot(c, [max(r["first_error_p95"], 1e-6) for r in rr], "o-", label=f"L={L}, eps={eps:g} first")
            ax.plot(c, [min(max(r["max_error_p50"], 1e-6), 10) for r in rr], "x:", color=ax.lines[-1].get_color(),
                    label=f"L={L}, eps={eps:g} all (p50)")
        ax.axvline(max(derived["threshold"], 1e-6), color="k", lw=0.8, ls="--")
        ax.axhline(MAX_ERROR_OK, color="grey", lw=0.6)
        ax.set(xscale="log", yscale="log", xlabel="normalised commutator c (c = 0 drawn at 1e-6)",
               ylabel="relative critical-time error", title=f"{init} init")
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle("Generalised-mode approximation vs exact flow. o-: p95 error of the first critical time; "
                 "x: median of the largest error over features (capped at 10 = never learned);\n"
                 f"dashed: the library's threshold c* = {derived['threshold']:g}; grey: {MAX_ERROR_OK:g}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv):
    if "--derive" in argv:          # re-derive the thresholds from the stored rows
        with open(os.path.join(OUT, "generalized_validity.json")) as fh:
            rows = json.load(fh)["rows"]
        derived = derive(rows)
        print(write(rows, derived))
        figure(rows, derived, os.path.join(OUT, "generalized_validity.png"))
        return
    quick = "--quick" in argv
    kw = dict(angles=(0.0, 0.003, 0.03, 0.3), cells=((1, 1e-2), (2, 1e-2), (3, 1e-3)), n=6) if quick else {}
    rows = run_map(**kw)
    derived = derive(rows)
    print(write(rows, derived))
    figure(rows, derived, os.path.join(OUT, "generalized_validity.png"))


if __name__ == "__main__":
    main(sys.argv[1:])
