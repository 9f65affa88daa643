"""
Dense attention under Adam: stable rank of the learned perturbation
===================================================================

Full W_K, W_Q, W_V, W_O trained with Adam from several init scales. The stable rank
||dM||_F^2 / ||dM||_2^2 of the learned perturbation grows gradually, more sharply at small init.
"""
import dynamics as dy
from dynamics.plot import gallery_save, gallery_settings, plot_dense_rank

small, _ = gallery_settings()
prob = dy.AttentionProblem.teacher_student(100, 6, 5, key=0)
sim = dy.simulate_dense_attention(prob, init_scales=[1e-4, 1e-2, 1.0], lr=1e-3, steps=500 if small else 4000,
                                  optimizer="adam", record_every=10)
fig = plot_dense_rank(sim, title="Adam, lr = 1e-3")
gallery_save(fig, "dense_attention_rank")
