"""
Depth makes JEPA greedy in rho
==============================

Exact critical time (half of the fixed point) against rho at fixed lambda, for several depths,
normalised by the time of the rho = 1 feature. JEPA's curves steepen with depth; MAE's stay flat.
Dots: critical times read off dense simulations.
"""
import matplotlib.pyplot as plt
import numpy as np

import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings

small, _ = gallery_settings()
rho = np.linspace(0.45, 1.0, 30)
eps = 3e-3
fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
for L, c in zip([1, 2, 3, 4], plt.get_cmap("viridis")(np.linspace(0, 0.9, 4))):
    prob = dy.SSLProblem.from_spectrum(np.ones_like(rho), rho, L, eps)
    for ax, obj in zip(axes, ["jepa", "mae"]):
        tc = dy.critical_times(prob, obj)
        ax.plot(rho, tc / tc[-1], color=c, label=f"L = {L}")
    if L in (2, 3) and not small:
        pts = dy.SSLProblem.from_spectrum([1.0, 1.0, 1.0], [0.5, 0.75, 1.0], L, eps, rotate=True, key=1)
        t_end = 1.3 * dy.critical_times(pts, "jepa").max()
        sim = dy.simulate_jepa(pts, lr=0.05, steps=int(t_end / 0.05), record_every=10)
        tcs = sim.critical_times()
        axes[0].plot(pts.rho, tcs / tcs[-1], "o", color=c, mec="k")
for ax, obj in zip(axes, ["JEPA", "MAE"]):
    ax.set_xlabel(r"regression coefficient $\rho$ ($\lambda$ = 1)")
    ax.set_ylabel(r"critical time / critical time at $\rho$ = 1")
    ax.set_title(obj)
    ax.legend()
gallery_save(fig, "depth_greedy")
