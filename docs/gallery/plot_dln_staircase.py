"""
Diagonal linear network: the saddle-to-saddle staircase
=======================================================

Loss against rescaled time t / log(1/alpha) for shrinking alpha (exact gradient flow in the dual
variable) converges to the stage algorithm's staircase (dashed). Panel (b): the coordinates at the
smallest alpha over the predicted plateaus; (c): the support grows one coordinate at a time.
"""
import dynamics as dy
from _gallery import SMALL, finish

from dynamics.core.compare import verdict
from dynamics.plot import plot_staircase

prob = dy.DLNProblem.random(200, 6, beta_star=[2, -1, 0.5, 0.25, 0, 0], noise=0.1, correlation=0.5,
                            init_scale=1e-8, key=0)
st = dy.stages(prob)
alphas = [1e-2, 1e-8] if SMALL else [1e-2, 1e-4, 1e-8, 1e-16, 1e-32]
sims = [(a, dy.simulate_dln(prob.with_init_scale(a), method="dual", tau_max=4.0)) for a in alphas]
fig = plot_staircase(sims, st)
chk = dy.crosscheck(sims[-1][1], st)       # the smallest alpha against the alpha -> 0 stages
worst = max(abs(e) for e in chk.jump_error if e == e) if any(e == e for e in chk.jump_error) else float("nan")
tau_max = float(sims[-1][1].tau[-1])
late = [k for k in range(st.n_stages) if st.times[k + 1] > tau_max]
beyond = (f"; stage(s) {', '.join(str(k + 1) for k in late)} at tau = "
          f"{', '.join(f'{st.times[k + 1]:.4g}' for k in late)} lie beyond tau_max = {tau_max:g} (loss changes "
          f"{', '.join(f'{st.losses[k] - st.losses[k + 1]:.1g}' for k in late)}), not drawn") if late else ""
finish(fig, "dln_staircase", f"{st.n_stages - len(late)} of {st.n_stages} stages drawn{beyond}; at alpha = "
       f"{alphas[-1]:.0e} the jumps drawn are within {worst:.3f} of the predicted t/log(1/alpha) "
       f"({verdict(chk.outcome)}: {'the later stages are not reached' if late else 'every stage reached'}; "
       "the gap shrinks like 1/log(1/alpha))")
