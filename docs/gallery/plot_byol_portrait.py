"""
Linear SimSiam: collapse basin, fixed points and alignment
==========================================================

Per-mode phase portrait of linear SimSiam with weight decay: modes starting below the unstable
fixed point p- collapse, the others converge to p+. Dense matrix simulation (solid) over the theory.
"""
import numpy as np

import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_byol_portrait

small, _ = gallery_settings()
p0 = np.array([0.04, 0.07, 0.2, 0.5, 0.9])
prob = dy.BYOLProblem.isotropic(5, 0.5, alpha_p=1.0, eta=0.05, w0=np.sqrt([0.0016, 0.0049, 0.1, 0.05, 0.6]),
                                p0=p0, rotate=True, key=0)
sim = dy.simulate_byol(prob, lr=0.05 if small else 0.02, steps=1600 if small else 4000, record_every=10)
fig = plot_byol_portrait(sim, dy.solve_byol(prob, times=sim.t), prob,
                         fixed_points=dy.byol_fixed_points(1.0, prob.eta, 0.5))
gallery_save(fig, "byol_portrait")
