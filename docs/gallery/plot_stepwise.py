"""
Stepwise SSL: the Barlow-Twins staircase
========================================

A linear Barlow-Twins toy learns the eigenmodes of the cross-correlation one at a time, each a
logistic at rate 8 gamma; small random inits (grey) follow the same order.
"""
import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_stepwise

small, _ = gallery_settings()
prob = dy.StepwiseProblem.from_spectrum([1.0, 0.6, 0.35, 0.2], 1e-3, key=1)
T = 1.3 * dy.step_times(prob).max()
lr = 4e-3 if small else 1e-3
sim = dy.simulate_stepwise(prob, lr=lr, steps=int(T / lr), record_every=20)
rnd = dy.simulate_stepwise(prob, lr=lr, steps=int(T / lr), record_every=20, init="random", runs=3, key=0)
fig = plot_stepwise(sim, dy.solve_stepwise(prob, times=sim.t), prob, rnd)
gallery_save(fig, "stepwise")
