"""
Depth makes JEPA greedy in rho
==============================

Exact critical time (half of the fixed point) against rho at fixed lambda = 1, for several depths,
normalised by the time of the rho = 1 feature (init 3e-3). JEPA's curves steepen with depth; MAE's stay
flat. Dots: critical times read off dense simulations (rotated problems, L = 2 and 3).
"""
import matplotlib.pyplot as plt
import numpy as np

from _gallery import SMALL, finish

import dynamics as dy

rho = np.linspace(0.45, 1.0, 30)
eps = 3e-3
fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
ratio = {}
for L, c in zip([1, 2, 3, 4], plt.get_cmap("viridis")(np.linspace(0, 0.9, 4))):
    prob = dy.SSLProblem.from_spectrum(np.ones_like(rho), rho, L, eps)
    for ax, obj in zip(axes, ["jepa", "mae"]):
        tc = dy.critical_times(prob, obj)
        ratio[(obj, L)] = tc[0] / tc[-1]
        ax.plot(rho, tc / tc[-1], color=c, label=f"L = {L}")
    if L in (2, 3) and not SMALL:
        pts = dy.SSLProblem.from_spectrum([1.0, 1.0, 1.0], [0.5, 0.75, 1.0], L, eps, rotate=True, key=1)
        t_end = 1.3 * dy.critical_times(pts, "jepa").max()
        sim = dy.simulate_jepa(pts, lr=0.05, steps=int(t_end / 0.05), record_every=10)
        tcs = sim.critical_times()
        axes[0].plot(pts.rho, tcs / tcs[-1], "o", color=c, mec="k")
for ax, obj in zip(axes, ["JEPA (dots: dense simulations)", "MAE"]):
    ax.set_xlabel(r"regression coefficient $\rho$ ($\lambda$ = 1)")
    ax.set_ylabel(r"critical time / critical time at $\rho$ = 1")
    ax.set_title(obj, fontsize=10)
    ax.legend(fontsize=8)
finish(fig, "depth_greedy", "t(rho = 0.45) / t(rho = 1): JEPA " +
       ", ".join(f"L={L} {ratio[('jepa', L)]:.2f}" for L in (1, 2, 3, 4)) + "; MAE " +
       ", ".join(f"L={L} {ratio[('mae', L)]:.2f}" for L in (1, 2, 3, 4)))
