"""
Saxe's hierarchy: broad distinctions before fine ones
=====================================================

The canonical task of Saxe, McClelland & Ganguli (PNAS 2019): 8 items (one-hot inputs) with 15 binary
features from a balanced tree -- 1 shared by every item, 2 splitting them in halves, 4 in quarters, 8 naming
each item. The network maps R^8 -> R^15 through a hidden layer of 8 units, no padding (a rectangular Syx of
shape 15 x 8; theory/saxe.md, "Any shape"). Syx's singular values fall with the tree's depth, so the root
distinction is learned first, then the halves, then the quarters, then the items. Solid: gradient descent from
the small aligned init; dashed: the exact per-mode theory; dotted: each level's critical time. The second panel
runs the same network from a small gaussian init: the same order, later (the random init's projections on the
modes are smaller than the aligned init's). The margin is written below the figure.
"""
import matplotlib.pyplot as plt
import numpy as np

import dynamics as dy
from _gallery import SMALL, finish

from dynamics.plot import plot_pair

# the tree: feature rows (root, 2 halves, 4 quarters, 8 leaves) x item columns
Y = np.vstack([np.ones((1, 8))] + [np.kron(np.eye(2 ** k), np.ones((1, 8 // 2 ** k))) for k in (1, 2, 3)])
Sxx = np.eye(8) / 8                                      # one-hot items, each seen 1/8 of the time
Syx = Y @ np.eye(8) / 8                                  # E[y x^T], 15 x 8
prob = dy.RegressionProblem.from_covariances(Sxx, Syx, 2, 1e-3)
s = prob.lam
levels = np.round(s, 8)
lr = 0.05 if SMALL else 0.01
tc = dy.critical_times(prob, "saxe")
steps = int(1.3 * tc.max() / lr)
sim = dy.simulate_saxe(prob, lr=lr, steps=steps, record_every=max(1, steps // 200))
th = dy.solve_saxe(prob, times=sim.t)
rep = dy.crosscheck(sim, th)
rnd = dy.simulate_saxe(prob, lr=lr, steps=2 * steps, record_every=max(1, steps // 100), init="gaussian", key=1)

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
plot_pair(sim, th, axes[0], legend=False)
axes[0].set_title(f"8 items -> 15 features, hidden width 8: theory over gradient descent "
                  f"({dy.core.compare.verdict(rep.outcome)})", fontsize=10)
order = np.argsort(tc)
names = {0: "root", 1: "halves", 2: "quarters", 3: "items"}
uniq = sorted(set(levels), reverse=True)
colors = plt.cm.viridis(np.linspace(0, 0.85, len(uniq)))
for i in range(prob.d):
    lv = uniq.index(levels[i])
    axes[1].plot(rnd.t, np.asarray(rnd.modes)[:, i] / prob.rho[i], color=colors[lv], lw=1.2,
                 label=f"{names.get(lv, lv)} (s = {s[i]:.3f})" if i == list(levels).index(levels[i]) else None)
axes[1].set_xlabel("t (gradient-flow time)")
axes[1].set_ylabel("mode / fixed point")
axes[1].set_title("the same network from a small gaussian init", fontsize=10)
axes[1].legend(fontsize=7)
# the order: every level's modes reach half their fixed point after the broader level's (gaussian run)
half = [np.min(np.flatnonzero(np.asarray(rnd.modes)[:, i] >= 0.5 * prob.rho[i]), initial=10 ** 9) for i in range(prob.d)]
t_half = [min(half[i] for i in range(prob.d) if levels[i] == lv) for lv in uniq]
in_order = all(a < b for a, b in zip(t_half, t_half[1:]))
finish(fig, "saxe_hierarchy", f"rectangular 15 x 8 Syx, singular values {np.unique(levels)[::-1].round(3).tolist()}: "
       f"theory vs gradient descent {dy.core.compare.verdict(rep.outcome)} (max error {rep.max_rel_error:.1e}, "
       f"tolerance {rep.rtol:g}); critical times by level {sorted(set(np.round(tc, 2).tolist()))}; from a gaussian init "
       f"the levels are learned {'in the same order' if in_order else 'OUT OF ORDER'}")
