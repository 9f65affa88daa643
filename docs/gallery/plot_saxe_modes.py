"""
Saxe's sigmoidal modes
======================

Deep linear regression from a small balanced init: each mode is a sigmoid whose timing is set by its
input-output covariance; deeper networks give sharper transitions.
"""
import matplotlib.pyplot as plt

import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_pair

small, _ = gallery_settings()
fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
for ax, L in zip(axes, [1, 2, 3]):
    prob = dy.RegressionProblem.from_spectrum([1.0, 0.6, 0.3], [1.5, 1.0, 0.8], L, 0.01, rotate=True, key=2)
    t_end = 1.5 * dy.critical_times_saxe(prob).max()
    lr = 0.02 if small else 0.005
    sim = dy.simulate_saxe(prob, lr=lr, steps=int(t_end / lr), record_every=10)
    plot_pair(sim, dy.solve_saxe(prob, times=sim.t), ax, legend=(L == 1))
    ax.set_title(f"depth L = {L}")
gallery_save(fig, "saxe_modes")
