"""
Noisy features in the static and temporal generative models
===========================================================

Static two-view noise (x = z + xi, y = z + xi') and a temporal AR(1) model. A high-variance but noisy
feature against a low-variance clean one: MAE learns the noisy one first at every depth; deep JEPA
learns the clean one first.
"""
import matplotlib.pyplot as plt

import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_pair

small, _ = gallery_settings()
models = {
    "static": dy.SSLProblem.from_generative("static", [1.0, 0.6], [1.5, 0.0], 3, 0.01, rotate=True, key=0),
    "temporal": dy.SSLProblem.from_generative("temporal", [1.0, 0.7], [1.0, 0.0], 3, 0.01, gamma=[0.9, 0.9],
                                              rotate=True, key=0),
}
fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
for row, (name, prob) in enumerate(models.items()):
    for col, obj in enumerate(["jepa", "mae"]):
        t_end = 1.3 * dy.critical_times(prob, obj).max()
        lr = 0.1 if small else 0.05
        sim = (dy.simulate_jepa if obj == "jepa" else dy.simulate_mae)(prob, lr=lr, steps=int(t_end / lr), record_every=10)
        th = (dy.solve_jepa if obj == "jepa" else dy.solve_mae)(prob, times=sim.t)
        plot_pair(sim, th, axes[row, col], legend=(col == 0))
        axes[row, col].set_title(f"{name} model, {obj.upper()} (L = 3)")
gallery_save(fig, "noisy_features")
