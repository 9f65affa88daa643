"""
A narrow JEPA and a narrow MAE keep different features
======================================================

An encoder into R^2 (``embed_dim=2``) must choose 2 of 4 features. Here the features' covariances lam =
(3, 2.5, 0.5, 0.4) and regression coefficients rho = (0.3, 0.35, 0.9, 1) order them in opposite ways: MAE, a
regression through a rank-2 map, keeps the largest lam * rho (features 0 and 1: reduced-rank regression), JEPA
the largest rho (features 2 and 3; theory/jepa.md, "A narrow encoder"): JEPA learns the large-lam features
first and then lets the large-rho ones displace them, and a seed may lose a direction for good (its predictor's
eigenvalue there <= 0: a dimensional collapse, keeping a subset). Each panel: the exact flow from small
gaussian inits, one thin line per seed and feature (the encoder's gain on the feature over its fixed point),
the aligned theory of the predicted kept features dashed, their critical times dotted. The margin (every seed's
kept set, and the gap between the weakest kept and the strongest dropped feature at the end) is written below
the figure.
"""
import matplotlib.pyplot as plt
import numpy as np

import dynamics as dy
from _gallery import SMALL, finish

lam, rho = [3.0, 2.5, 0.5, 0.4], [0.3, 0.35, 0.9, 1.0]
seeds = 2 if SMALL else 8
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
colors = plt.cm.viridis(np.linspace(0.0, 0.85, 4))
notes = []
for ax, family, eps in zip(axes, ["mae", "jepa"], [1e-3, 1e-2]):
    prob = dy.SSLProblem.from_spectrum(lam, rho, 1, eps, embed_dim=2)
    kept = dy.kept_features(prob, family=family)
    tc = dy.critical_times(prob, family)
    t = np.geomspace(1e-2 * tc[kept].min(), (15 if SMALL else 60) * tc[kept].max(), 80 if SMALL else 240)
    sim = getattr(dy, f"simulate_{family}")(prob, method="flow", times=t, init="gaussian", runs=seeds, key=0,
                                            rtol=1e-6 if SMALL else 1e-8, progress=False)
    th = getattr(dy, f"solve_{family}")(prob, times=t)
    fp = dy.get_family(family).objective.fixed_point(np.asarray(rho), 1)
    frac = np.asarray(sim.modes) / fp                       # (seeds, T, 4): gain over fixed point
    for i, c in enumerate(colors):
        for r in range(seeds):
            ax.plot(t, frac[r, :, i], color=c, lw=0.8, label=f"feature {i} (lam {lam[i]:g}, rho {rho[i]:g})"
                    if r == 0 else None)
        if i in kept:
            ax.plot(t, th.modes[:, i] / fp[i], "--", color="k", lw=1.2, label="aligned theory" if i == kept[0] else None)
            ax.axvline(tc[i], color=c, ls=":", lw=1)
    ends = frac[:, -1]
    sets = [np.flatnonzero(e >= 0.5) for e in ends]
    same = [np.array_equal(k, kept) for k in sets]
    subset = sum(not s_ and np.all(np.isin(k, kept)) for s_, k in zip(same, sets))
    gap = float(np.min(ends[same][:, kept]) - np.max(np.delete(ends[same], kept, axis=1))) if any(same) else np.nan
    notes.append(f"{family.upper()} keeps {kept.tolist()} in {sum(same)}/{seeds} seeds (weakest kept minus strongest "
                 f"dropped at the end: {gap:.2f} of a fixed point)"
                 + (f", a subset of it in {subset} (a collapsed direction)" if subset else "")
                 + (f", another set in {seeds - sum(same) - subset}" if seeds - sum(same) - subset else ""))
    ax.set_xscale("log")
    ax.set_xlabel("t (gradient-flow time)")
    ax.set_ylabel("gain / fixed point")
    ax.set_title(f"{family.upper()}, encoder R^4 -> R^2: keeps {kept.tolist()} "
                 f"({'largest lam rho' if family == 'mae' else 'largest rho'})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
finish(fig, "narrow_jepa_mae", "; ".join(notes))
