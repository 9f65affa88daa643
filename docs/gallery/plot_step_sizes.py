"""
One network at three step sizes
===============================

Depth-2 linear regression (Saxe), three features, in a rotated basis, trained by gradient descent at
0.1x, 0.9x and 1.1x its stability limit ``dy.max_stable_lr`` (2 / the top eigenvalue of the full
network's Hessian at the fixed point, theory/discrete.md sec. 3). Solid: the dense network's modes;
dashed: the gradient-flow theory (lr -> 0); dotted: gradient descent's exact per-mode discrete map
(``solve_saxe(..., lr=lr)``, sec. 1). Grey line: each feature's fixed point. The printed line gives, per
step size, the largest relative gap between gradient descent and the map, and against the flow theory.

At 0.1x the flow theory is already close (first order in lr); at 0.9x it is visibly early, while the
discrete map still matches the network to rounding. At 1.1x the map, whose own limit (the aligned
directions only, sec. 2) is higher, converges, but the network leaves the path along a direction that
mixes two features: rounding seeds it and it grows by ``|1 - lr mu|`` per step. The simulator warned before
running.
"""
import warnings

import matplotlib.pyplot as plt
import numpy as np

import dynamics as dy
from _gallery import SMALL, finish

prob = dy.RegressionProblem.from_spectrum([1.0, 0.6, 0.3], [1.0, 0.8, 1.5], 2, 1e-3, rotate=True, key=0)
limit = dy.max_stable_lr("saxe", prob)
t_path = float(np.max(limit.path_t[np.isfinite(limit.path_t)]))
fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True, sharey=True)
claims = []
for ax, factor in zip(axes, [0.1, 0.9, 1.1]):
    lr = factor * float(limit)
    steps = int(t_path / lr) + (600 if SMALL else 2000)     # the path, then time at the fixed point
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gd = dy.simulate_saxe(prob, lr=lr, steps=steps, record_every=max(1, steps // 400), progress=False,
                              on_divergence="stop")
    warned = any("above the stability limit" in str(w.message) for w in caught)
    flow = dy.solve_saxe(prob, times=gd.t)
    exact = dy.solve_saxe(prob, times=gd.t, lr=lr)
    with np.errstate(invalid="ignore"):
        vs_map = np.nanmax(np.abs(gd.modes - exact.modes) / np.abs(exact.modes))
        vs_flow = np.nanmax(np.abs(gd.modes - flow.modes)) / np.max(np.abs(flow.modes))
    for i, c in enumerate(["C0", "C1", "C2"]):
        ax.plot(gd.t, gd.modes[:, i], c, lw=2, label="gradient descent" if i == 0 else None)
        ax.plot(flow.t, flow.modes[:, i], c, ls="--", lw=1, label="flow theory" if i == 0 else None)
        ax.plot(exact.t, exact.modes[:, i], c, ls=":", lw=2, label="discrete map" if i == 0 else None)
        ax.axhline(exact.fixed_point[i], color="0.7", lw=0.8)
    ax.set_title(f"lr = {lr:.3g} ({factor}x the limit {float(limit):.3g})" + (" - warned" if warned else ""),
                 fontsize=10)
    ax.set_xlabel("t = lr * step (log scale past 1)")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_ylim(-0.2, 2.0)
    claims.append(f"{factor}x: gd vs map {vs_map:.1e}, gd vs flow {vs_flow:.1e}")
axes[0].set_ylabel("mode (end-to-end map in the feature basis)")
axes[0].legend(fontsize=8)
finish(fig, "step_sizes", f"stability limit {float(limit):.4g}; " + "; ".join(claims))
