"""
Rank growth in a diagonal attention head
========================================

A head with diagonal W_K, W_Q, W_V, W_O learns a teacher one coordinate at a time: the first stage is
a value/output coordinate, and the rank of the learned perturbation rises by one per stage.
"""
import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_staircase

small, _ = gallery_settings()
prob = dy.AttentionProblem.teacher_student(60 if small else 100, 6, 5, init_scale=1e-8, key=0)
st = dy.stages(prob)
alphas = [1e-4, 1e-16] if small else [1e-2, 1e-4, 1e-8, 1e-16, 1e-32]
sims = [(a, dy.simulate_attention(prob.with_init_scale(a), method="dual", tau_max=1.15 * st.times[-1]))
        for a in alphas]
fig = plot_staircase(sims, st)
gallery_save(fig, "attention_rank")
