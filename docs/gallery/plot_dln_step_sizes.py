"""
Where a diagonal linear network ends, at three step sizes
=========================================================

An over-parametrised sparse regression (n = 10 samples, d = 30 coefficients, 3 non-zero) has many
interpolators; a diagonal linear network beta = u * v from alpha = 0.1 picks one.  Gradient descent at
0.1x, 0.5x and 0.85x its stability limit ``dy.max_stable_lr`` picks a *different* one at each step
(Even, Pesme, Gunasekar & Flammarion 2023; theory/dln_steps.md).

Left: the endpoint's coefficients, in order of size. Bars: gradient descent run to convergence; crosses:
``dy.implicit_bias(problem, lr)`` (the hyperbolic-entropy interpolator with the effective init and shift
summed along the flow's path); grey circles (over the middle bars): the gradient flow's endpoint
(lr -> 0), the same for every step.  Right: the effective init alpha_inf / alpha per coordinate (dots: gradient descent's own, read
from u^2 - v^2; line: the prediction): the step shrinks it most where the gradient was largest.
The printed line gives, per step size, the largest gap (relative to max ``|beta|``) of the prediction and of
the flow's endpoint from gradient descent's endpoint; the check's tolerance is 5 %.
"""
import matplotlib.pyplot as plt
import numpy as np

import dynamics as dy
from _gallery import SMALL, finish

prob = dy.DLNProblem.random(10, 30, sparsity=3, init_scale=0.1, key=1)
limit = float(dy.max_stable_lr("dln", prob))
flow_end = dy.implicit_bias(prob).beta
order = np.argsort(-np.abs(flow_end))[:8]             # the coefficients that carry the solution
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
x = np.arange(order.size)
claims = []
for k, (factor, color) in enumerate(zip([0.1, 0.5, 0.85], ["C0", "C1", "C3"])):
    lr = factor * limit
    th = dy.implicit_bias(prob, lr)
    steps = int((1500 if SMALL else 3000) / lr)
    gd = dy.simulate_dln(prob, lr=lr, steps=steps, record_every=steps, progress=False)
    check = dy.crosscheck(gd, th)
    flow_gap = np.abs(gd.beta[-1] - flow_end).max() / np.abs(gd.beta[-1]).max()
    axes[0].bar(x + (k - 1) * 0.27, gd.beta[-1][order], width=0.27, color=color, alpha=0.6,
                label=f"GD at {factor}x the limit (lr = {lr:.3g})")
    axes[0].plot(x + (k - 1) * 0.27, th.beta[order], "x", color="k", ms=7,
                 label="implicit_bias(problem, lr)" if k == 0 else None)
    run_alpha = dy.effective_init_scale(gd)[-1] / prob.init_scale
    axes[1].plot(np.arange(prob.p), th.init_scale / prob.init_scale, color=color, lw=1.5,
                 label=f"{factor}x: predicted")
    axes[1].plot(np.arange(prob.p), run_alpha, "o", color=color, ms=3, label=f"{factor}x: GD's own")
    claims.append(f"{factor}x: prediction {check.error:.1e} ({check.outcome}), flow's endpoint {flow_gap:.1e}")
axes[0].plot(x, flow_end[order], "o", mfc="none", color="0.5", ms=9, label="flow's endpoint (lr -> 0)")
axes[0].axhline(0.0, color="0.7", lw=0.8)
axes[0].set_xticks(x, [f"beta_{i}" for i in order], fontsize=8)
axes[0].set_ylabel("endpoint coefficient")
axes[0].legend(fontsize=7)
axes[1].set_xlabel("coordinate i")
axes[1].set_ylabel("alpha_inf / alpha")
axes[1].set_ylim(0, 1.05)
axes[1].legend(fontsize=7, ncol=3)
finish(fig, "dln_step_sizes", f"stability limit {limit:.4g}; " + "; ".join(claims))
