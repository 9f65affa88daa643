"""
Prediction head: substitution, then acceleration
================================================

The identity-initialised head with trainable off-diagonals (Wen & Li 2022): without it both neurons
align with the strong feature; with it the off-diagonals rise first (substitution), then the second
neuron learns the weak feature (acceleration) and the head returns to the identity.
See benchmarks/results/head_sensitivity.md for the settings where this fails.
"""
import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_identity_head

small, _ = gallery_settings()
prob = dy.HeadProblem() if not small else dy.HeadProblem(d=32, patches=8, feature_patches=2, batch=128)
steps = 300 if small else 3500
runs = {name: dy.simulate_head(prob, head=h, steps=steps, record_every=50) for name, h in (("head", True), ("no head", False))}
fig = plot_identity_head(runs, {k: dy.head_phases(v) for k, v in runs.items()})
gallery_save(fig, "identity_head")
