"""
Noisy features in the static and temporal generative models
===========================================================

Static two-view noise (x = z + xi, y = z + xi') and a temporal AR(1) model. A high-variance but noisy
feature (0) against a lower-variance clean one (1): MAE learns the noisy one first at every depth;
a depth-3 JEPA learns the clean one first. Solid: dense gradient descent on rotated problems; dashed:
exact theory; dotted: its critical times; grey: half of the fixed point. The specs
``sims/noisy_features_static.toml`` and ``sims/noisy_features_temporal.toml`` run the same settings.
"""
import matplotlib.pyplot as plt

from _gallery import SMALL, finish

import dynamics as dy
from dynamics.plot import plot_pair

models = {
    "static": dy.SSLProblem.from_generative("static", [1.0, 0.75], [1.5, 0.0], 3, 0.01, rotate=True, key=0),
    "temporal": dy.SSLProblem.from_generative("temporal", [1.0, 0.75], [1.5, 0.0], 3, 0.01, gamma=[0.9, 0.9],
                                              rotate=True, key=0),
}
fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
margins = []
for row, (name, prob) in enumerate(models.items()):
    tj, tm = dy.critical_times(prob, "jepa"), dy.critical_times(prob, "mae")
    margins.append(f"{name}: JEPA clean first by {1 - tj[1] / tj[0]:.0%}, MAE noisy first by {1 - tm[0] / tm[1]:.0%}")
    for col, obj in enumerate(["jepa", "mae"]):
        t_end = 1.3 * (tj if obj == "jepa" else tm).max()
        lr = 0.1 if SMALL else 0.02
        steps = int(t_end / lr)
        sim = (dy.simulate_jepa if obj == "jepa" else dy.simulate_mae)(prob, lr=lr, steps=steps,
                                                                      record_every=max(1, steps // 400))
        th = (dy.solve_jepa if obj == "jepa" else dy.solve_mae)(prob, times=sim.t)
        plot_pair(sim, th, axes[row, col], legend=(col == 0))
        axes[row, col].set_title(f"{name} model, {obj.upper()} (L = 3)", fontsize=10)
finish(fig, "noisy_features", "; ".join(margins))
