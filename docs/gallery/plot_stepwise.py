"""
Stepwise SSL: the Barlow-Twins staircase
========================================

A linear Barlow-Twins toy learns the eigenmodes of the cross-correlation one at a time, each a
logistic at rate 8 gamma; small random inits (grey) follow the same order. Solid: simulation; dashed:
the logistic theory; dotted: its step (half) times.
"""
import dynamics as dy
import numpy as np
from _gallery import SMALL, finish

from dynamics.plot import plot_stepwise

prob = dy.StepwiseProblem.from_spectrum([1.0, 0.6, 0.35, 0.2], 1e-3, key=1)
T = 1.3 * dy.critical_times(prob).max()
lr = 4e-3 if SMALL else 1e-3
sim = dy.simulate_stepwise(prob, lr=lr, steps=int(T / lr), record_every=20)
rnd = dy.simulate_stepwise(prob, lr=lr, steps=int(T / lr), record_every=20, init="random", runs=3, key=0)
th = dy.solve_stepwise(prob, times=sim.t)
fig = plot_stepwise(sim, th, prob, rnd)
ts = dy.critical_times(prob)
gaps = np.diff(np.sort(ts)) / np.sort(ts)[1:]
finish(fig, "stepwise", f"step times {np.round(ts, 3).tolist()} (consecutive steps >= {gaps.min():.0%} apart); "
       f"max |simulation - theory| of the eigenvalues {np.abs(sim.eigenvalues - th.eigenvalues).max():.1e}")
