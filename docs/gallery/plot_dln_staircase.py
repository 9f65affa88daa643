"""
Diagonal linear network: the saddle-to-saddle staircase
=======================================================

Loss against rescaled time t / log(1/alpha) for shrinking alpha (exact gradient flow in the dual
variable) converges to the stage algorithm's staircase.
"""
import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_staircase

small, _ = gallery_settings()
prob = dy.DLNProblem.random(200, 6, beta_star=[2, -1, 0.5, 0.25, 0, 0], noise=0.1, correlation=0.5,
                            init_scale=1e-8, key=0)
st = dy.stages(prob)
alphas = [1e-2, 1e-8] if small else [1e-2, 1e-4, 1e-8, 1e-16, 1e-32]
sims = [(a, dy.simulate_dln(prob.with_init_scale(a), method="dual", tau_max=4.0)) for a in alphas]
fig = plot_staircase(sims, st)
gallery_save(fig, "dln_staircase")
