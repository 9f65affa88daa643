"""Adam's late-stage spikes (theory/adam_spikes.md): the measured validity of the spike prediction, and the
simulator's speed against a hand-written optax.adam loop.

Validity: one deep linear regression (the spec's: Sxx = diag(1, 0.5), Syx = diag(1, 0.3), depth 2, init 0.7),
Adam over lr x eps x beta2, in float64 and float32; per run the first cycle of ``dy.predict_spikes``: eps* at the
quiet minimum, the onset, the predicted spike (onset + growth from the seed) and the observed one.  Summary by
eps / eps* (the approximation's known weak spot: near eps* the growth starts from the rounding lattice) and
dtype: the fraction of runs within 10 % and the median and largest errors.

Speed: the family's Adam (per-run beta1, beta2, eps in the engine, moments recorded) against ``optax.adam`` in
a ``jax.lax.scan`` written by hand, the same batch of runs (``jax.vmap``), warm (each run once before timing),
both in the same process; the ratio is the family's time over the baseline's.

    python benchmarks/bench_adam_spikes.py            # the full grid (~1-2 min on 2 cores)
    python benchmarks/bench_adam_spikes.py --quick    # fewer cells
Tables: benchmarks/results/adam_spikes.{md,json}.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dynamics as dy
from dynamics.core.io import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
PROBLEM = dy.AdamSpikesProblem.regression(np.diag([1.0, 0.5]), np.diag([1.0, 0.3]), depth=2, init_scale=0.7)


def validity(quick):
    lrs = [0.01, 0.02] if quick else [0.005, 0.01, 0.02]
    epss = [1e-8, 1e-4] if quick else [1e-8, 1e-5, 1e-4, 3e-4]
    b2s = [0.99, 0.999] if quick else [0.99, 0.995, 0.999]
    cells = list(itertools.product(lrs, epss, b2s))
    rows = []
    for dtype in ("float64", "float32"):
        sim = dy.simulate_adam(PROBLEM, lr=[c[0] for c in cells], steps=15_000, record_every=5,
                               eps=[c[1] for c in cells], beta2=[c[2] for c in cells], key=0, dtype=dtype)
        for i, (lr, eps, b2) in enumerate(cells):
            rep = dy.predict_spikes(sim.run(i))
            c = rep.cycles[0] if rep.cycles else None
            rows.append({"dtype": dtype, "lr": lr, "eps": eps, "beta2": b2,
                         "eps_over_eps_star": None if c is None else eps / c.eps_star,
                         "onset": None if c is None else c.onset, "predicted": None if c is None else c.predicted,
                         "observed": None if c is None else c.observed,
                         "error": None if c is None else c.relative_error,
                         "beyond_run": None if c is None else c.beyond_run,
                         "cycles": len(rep.cycles), "message": rep.message})
    return rows


def summary(rows):
    bins = [("eps <= eps*/10", lambda r: r <= 0.1), ("eps*/10 < eps < eps*", lambda r: 0.1 < r < 1.0),
            ("eps >= eps*", lambda r: r >= 1.0)]
    out = []
    for dtype in ("float64", "float32"):
        for name, test in bins:
            sel = [r for r in rows if r["dtype"] == dtype and r["eps_over_eps_star"] is not None
                   and test(r["eps_over_eps_star"])]
            if not sel:
                continue
            # compared: both a predicted and an observed spike within the run (an error of inf: only one of them)
            errs = [r["error"] for r in sel if r["error"] is not None and math.isfinite(r["error"])
                    and math.isfinite(r["observed"])]
            none_pred = sum(1 for r in sel if r["predicted"] == math.inf)
            none_obs = sum(1 for r in sel if r["observed"] == math.inf)
            out.append({"dtype": dtype, "bin": name, "runs": len(sel), "compared": len(errs),
                        "within_10pct": sum(e <= 0.10 for e in errs), "median": float(np.median(errs)) if errs else None,
                        "max": max(errs) if errs else None, "no_spike_predicted": none_pred, "no_spike_seen": none_obs,
                        "beyond_run": sum(1 for r in sel if r["beyond_run"])})
    return out


def speed(runs=12, steps=20_000):
    lr = 0.01
    kw = dict(lr=[lr] * runs, steps=steps, record_every=steps // 100, beta2=0.999, eps=1e-8,
              key=list(range(runs)), progress=False)
    dy.simulate_adam(PROBLEM, **kw)
    t0 = time.perf_counter()
    dy.simulate_adam(PROBLEM, **kw)
    fam = time.perf_counter() - t0

    opt = optax.adam(lr, 0.9, 0.999, 1e-8)
    loss = jax.grad(PROBLEM.loss)

    def one(layers):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(loss(p), s, p)
            return (optax.apply_updates(p, u), s), None

        def chunk(carry, _):
            carry, _ = jax.lax.scan(body, carry, None, length=steps // 100)
            return carry, carry[0][-1]        # one record per chunk, as the family's record_every
        return jax.lax.scan(chunk, (layers, opt.init(layers)), None, length=100)[1]

    keys = jax.random.split(jax.random.key(0), runs)
    init = [jnp.stack([jax.random.normal(k, s) * 0.7 / math.sqrt(s[1]) for k in keys]) for s in PROBLEM.shapes]
    f = jax.jit(jax.vmap(one))
    jax.block_until_ready(f(init))
    t0 = time.perf_counter()
    jax.block_until_ready(f(init))
    base = time.perf_counter() - t0
    return {"runs": runs, "steps": steps, "family_s": fam, "optax_scan_s": base, "ratio": fam / base,
            "family_steps_per_s": runs * steps / fam}


def main(quick):
    t0 = time.perf_counter()
    rows = validity(quick)
    summ = summary(rows)
    sp = speed()
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__},
           "quick": quick, "rows": rows, "summary": summ, "speed": sp, "seconds": time.perf_counter() - t0}
    os.makedirs(OUT, exist_ok=True)
    text = json.dumps(res, indent=1, default=float)
    atomic_write(os.path.join(OUT, "adam_spikes.json"), lambda fh: fh.write(text.encode()))
    f = lambda x, p=".3g": "-" if x is None else format(x, p)  # noqa: E731
    L = ["# Adam's spikes: validity of the prediction, and speed (benchmarks/bench_adam_spikes.py)", "",
         f"Machine: {res['machine']['cpus']} CPUs, {res['machine']['platform']}; jax {res['machine']['jax']}.", "",
         "## Validity of the spike prediction", "",
         "The spec's deep linear regression, 15,000 Adam steps (beta1 = 0.9), first cycle of `dy.predict_spikes`; "
         "error = |predicted - observed| / observed (the predicted spike: onset + growth from the seed).", "",
         "| dtype | eps / eps* | runs | compared | within 10 % | median error | largest | no spike predicted | "
         "no spike seen | onset beyond the run |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summ:
        L.append(f"| {s['dtype']} | {s['bin']} | {s['runs']} | {s['compared']} | {s['within_10pct']} | "
                 f"{f(s['median'], '.2%')} | {f(s['max'], '.2%')} | {s['no_spike_predicted']} | {s['no_spike_seen']} | "
                 f"{s['beyond_run']} |")
    L += ["", "Every run:", "", "| dtype | lr | eps | beta2 | eps / eps* | onset | predicted | observed | error |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['dtype']} | {r['lr']:g} | {r['eps']:g} | {r['beta2']:g} | {f(r['eps_over_eps_star'])} | "
                 f"{f(r['onset'], '.6g')} | {f(r['predicted'], '.6g')} | {f(r['observed'], '.6g')} | "
                 f"{f(r['error'], '.2%')} |")
    L += ["", "## Speed", "",
          f"{sp['runs']} runs x {sp['steps']:,} steps, warm: the family's Adam {sp['family_s']:.3g} s "
          f"({sp['family_steps_per_s']:,.0f} run-steps/s), a hand-written vmapped `optax.adam` scan "
          f"{sp['optax_scan_s']:.3g} s: ratio {sp['ratio']:.2f} (the family also computes and records the loss, "
          "gradient norm, weight norms and moments, and checks divergence every step).", ""]
    atomic_write(os.path.join(OUT, "adam_spikes.md"), lambda fh: fh.write("\n".join(L).encode()))
    print("\n".join(L[:20]))
    print(f"... ({res['seconds']:.0f} s)")


if __name__ == "__main__":
    main("--quick" in sys.argv)
