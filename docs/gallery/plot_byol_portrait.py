"""
Linear SimSiam: collapse basin, fixed points and alignment
==========================================================

Per-mode phase portrait of linear SimSiam with weight decay: modes starting below the unstable
fixed point p- collapse, the others converge to p+. Dense matrix simulation (solid) over the per-mode
theory (dashed); squares: the starting points; open circle p- (unstable), filled p+ (stable); in (b)
the dotted lines are p- and p+.
"""
import numpy as np

import dynamics as dy
from _gallery import SMALL, finish

from dynamics.plot import plot_byol_portrait

p0 = np.array([0.04, 0.07, 0.2, 0.5, 0.9])
prob = dy.BYOLProblem.isotropic(5, 0.5, alpha_p=1.0, eta=0.05, w0=np.sqrt([0.0016, 0.0049, 0.1, 0.05, 0.6]),
                                p0=p0, rotate=True, key=0)
sim = dy.simulate_byol(prob, lr=0.05 if SMALL else 0.02, steps=1600 if SMALL else 4000, record_every=10)
pm, pp = dy.byol_fixed_points(1.0, prob.eta, 0.5)
fig = plot_byol_portrait(sim, dy.solve_byol(prob, times=sim.t), prob, fixed_points=(pm, pp))
fate = ["learned" if s > 1e-3 else "collapsed" for s in sim.s[-1]]     # s = eigenvalue of W W^T
closest = np.min(np.abs(p0 - pm)) / pm
finish(fig, "byol_portrait", f"p- = {pm:.3f}, p+ = {pp:.3f}; modes from p0 = {p0.tolist()}: {fate} "
       f"(closest start {closest:.0%} of p- away from the separatrix)")
