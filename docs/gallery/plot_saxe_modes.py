"""
Saxe's sigmoidal modes
======================

Deep linear regression from a small balanced init: each mode is a sigmoid whose timing is set by its
input-output covariance; deeper networks give sharper transitions. Solid: dense gradient descent on a
rotated problem; dashed: the closed form (theory/saxe.md); dotted: its critical times (half of the fixed
point, grey line).
"""
import matplotlib.pyplot as plt

import dynamics as dy
from _gallery import SMALL, finish

from dynamics.plot import plot_pair

errors = []
fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
for ax, L in zip(axes, [1, 2, 3]):
    prob = dy.RegressionProblem.from_spectrum([1.0, 0.6, 0.3], [1.5, 1.0, 0.8], L, 0.01, rotate=True, key=2)
    t_end = 1.5 * dy.critical_times(prob).max()
    lr = 0.02 if SMALL else 0.005
    sim = dy.simulate_saxe(prob, lr=lr, steps=int(t_end / lr), record_every=10)
    th = dy.solve_saxe(prob, times=sim.t)
    rep = dy.crosscheck(sim, th)
    errors.append(f"L={L} {rep.outcome} (max error {rep.max_rel_error:.1e}, tolerance {rep.rtol:g})")
    plot_pair(sim, th, ax, legend=(L == 1))
    ax.set_title(f"depth L = {L}", fontsize=10)
finish(fig, "saxe_modes", "gradient descent vs closed form: " + ", ".join(errors))
