"""Diagonal attention: stage theory vs exact small-init flow, rank growth; dense heads' stable rank."""

import numpy as np
import pytest

import dynamics as dy
from dynamics.families.attention import AttentionProblem, diagonal_forward


@pytest.fixture(scope="module")
def toy():
    pb = AttentionProblem.teacher_student(100, 6, 5, init_scale=1e-8, key=0)
    return pb, dy.stages(pb)


def test_first_stage_is_vo_and_kq_gradient_vanishes_at_zero(toy):
    pb, st = toy
    g0 = pb.grad(np.zeros(pb.p))
    q, o = pb.split(g0)
    assert np.abs(q).max() == 0.0 and np.abs(o).max() > 0.1        # no KQ signal while o = 0
    assert st.first_stage_is_vo
    (i,) = st.entered[1]
    assert i % (2 * pb.d) >= pb.d                                    # a VO coordinate


def test_rank_grows_by_at_most_one_per_stage(toy):
    pb, st = toy
    total = st.ranks.sum(axis=1)
    assert total[0] == 0 and st.n_stages >= 3
    assert np.all(np.diff(total) <= 1)
    assert np.all(np.diff(total) >= 0) or any(st.left)             # drops only by deactivation
    assert st.losses[-1] < 1e-10 * st.losses[0]                      # the teacher is recovered
    q, o = pb.split(st.points[-1])
    qs, os_ = np.array(pb.source["q_star"]), np.array(pb.source["o_star"])
    np.testing.assert_allclose(q, qs, atol=1e-6)
    np.testing.assert_allclose(o, os_, atol=1e-6)


def test_plateau_losses_and_points_match_gradient_flow(toy):
    """Exact gradient flow (dual integrator) at alpha = 1e-16 and 1e-32: plateau losses match at
    the middle of each plateau and the errors shrink as alpha decreases."""
    pb, st = toy
    res = {}
    for a in (1e-16, 1e-32):
        sim = dy.simulate_attention(pb.with_init_scale(a), method="dual", tau_max=1.15 * st.times[-1])
        res[a] = dy.crosscheck(sim, st)
    c16, c32 = res[1e-16], res[1e-32]
    ok = np.isfinite(c32.loss_error)
    # relative to the plateau loss (the last plateau is ~0: relative to 1 % of the initial loss)
    rel = c32.loss_error[ok] / np.maximum(st.losses[ok], 0.01 * st.losses[0])
    assert np.all(rel < 0.02), c32.summary()
    assert np.nanmax(c32.beta_error) < np.nanmax(c16.beta_error)
    assert np.nansum(np.abs(c32.jump_error)) < np.nansum(np.abs(c16.jump_error))
    assert np.all(np.abs(c32.jump_error) < 0.05)


def test_dual_agrees_with_gradient_descent_on_uv():
    pb = AttentionProblem.teacher_student(40, 4, 3, init_scale=1e-3, key=1)
    dual = dy.simulate_attention(pb, method="dual_rk4", tau_max=1.5, dtau=1e-3, record_every=10)
    gd = dy.simulate_attention(pb, method="gd", lr=2e-3, tau_max=1.5, record_every=20)
    b = np.stack([np.interp(gd.tau, dual.tau, dual.beta[:, i]) for i in range(pb.p)], axis=1)
    assert np.abs(gd.beta - b).max() < 2e-2 * np.abs(dual.beta).max()


def test_multi_head_multi_layer_forward_and_rank_bookkeeping():
    pb = AttentionProblem.teacher_student(10, 4, 3, heads=2, layers=2, init_scale=1e-3, key=3)
    assert pb.p == 2 * 3 * 2 * 2
    beta = np.zeros(pb.p)
    assert np.abs(np.asarray(diagonal_forward(beta, pb.Z, 2, 2))).max() == 0.0
    beta[3:6] = [1.0, 0.0, 2.0]      # layer 0, head 0, o = (1, 0, 2)
    kq, vo = pb.ranks(beta)
    assert (kq, vo) == (0, 2)
    # residual stream: a second layer sees the first layer's update
    out1 = np.asarray(diagonal_forward(beta, pb.Z, 2, 2))
    b2 = beta.copy()
    b2[12 + 3:12 + 6] = [0.5, 0.5, 0.5]   # layer 1, head 0, o
    assert not np.allclose(np.asarray(diagonal_forward(b2, pb.Z, 2, 2)), out1)


def test_ties_in_the_teacher_are_reported():
    """Two identical token features and a symmetric teacher: both VO coordinates tie at stage 1."""
    pb = AttentionProblem.teacher_student(40, 4, 3, q_star=np.zeros((1, 1, 3)),
                                          o_star=np.array([[[1.0, 1.0, 0.0]]]), init_scale=1e-6, key=0)
    Z = pb.Z.copy()
    Z[..., 1] = Z[..., 0]
    Y = np.asarray(diagonal_forward(np.array([0, 0, 0, 1.0, 1.0, 0]), Z, 1, 1))
    tied = AttentionProblem(Z=Z, Y=Y, init_scale=1e-6, key=0)
    with pytest.warns(RuntimeWarning, match="tie"):
        st = dy.stages(tied, max_stages=2)
    assert st.ties[0]["coordinates"] == [3, 4]


def test_dense_attention_rank_grows_gradually_at_small_init():
    """Dense heads, SGD: from a small init the learned perturbation Delta W_V W_O^T is rank one for a
    while after learning starts (stable rank < 1.1), then grows; from the default scale it is
    spread over several directions at once. The final Delta W_K W_Q^T is lower-rank at small init."""
    pb = AttentionProblem.teacher_student(100, 6, 5, key=0)
    sim = dy.simulate_dense_attention(pb, init_scales=[1e-4, 1.0], lr=0.01, steps=2000,
                                      optimizer="sgd", record_every=25)
    loss, sr_vo, sr_kq = sim.loss, sim.stable_rank_vo[:, :, 0, 0], sim.stable_rank_kq[:, :, 0, 0]
    assert loss[0, -1] < 1e-3 * loss[0, 0] and loss[1, -1] < 1e-3 * loss[1, 0]
    small_learning = np.nonzero((loss[0] < 0.99 * loss[0, 0]) & (loss[0] > 0.5 * loss[0, 0]))[0]
    assert small_learning.size and np.all(sr_vo[0, small_learning] < 1.1)
    assert sr_vo[0, -1] > 1.2                                        # ... and the rank grew later
    assert sr_vo[1, 1:5].max() > 1.3                                 # default scale: several at once
    assert sr_kq[0, -1] < sr_kq[1, -1]
    assert sim.sv_kq.shape == (2, sim.t.size, 1, 1, 5)


def test_dense_attention_adam_and_bad_input():
    pb = AttentionProblem.teacher_student(30, 4, 3, key=0)
    sim = dy.simulate_dense_attention(pb, init_scales=[0.1], lr=3e-3, steps=300, optimizer="adam")
    assert sim.loss[0, -1] < 0.1 * sim.loss[0, 0]
    with pytest.raises(ValueError, match="init_scales must be > 0"):
        dy.simulate_dense_attention(pb, init_scales=[0.0], lr=0.1, steps=10)
    with pytest.raises(ValueError, match="Y must have the shape of Z"):
        AttentionProblem(Z=np.ones((3, 4, 2)), Y=np.ones((3, 4, 3)))
    with pytest.raises(ValueError, match="Z must be finite"):
        AttentionProblem(Z=np.full((3, 4, 2), np.nan), Y=np.ones((3, 4, 2)))
    with pytest.raises(ValueError, match="heads must be an integer >= 1"):
        AttentionProblem.teacher_student(10, 3, 2, heads=0)
    with pytest.raises(ValueError, match="init_scale"):
        AttentionProblem.teacher_student(10, 3, 2, init_scale=2.0)


def test_finite_alpha_is_inconclusive_with_its_reason_not_a_failure():
    """Issue 26, case 2, its exact problem: at alpha = 1e-10 the exact dual flow is 1/log(1/alpha) = 0.043 (in
    tau) from the alpha -> 0 stages, beyond 0.25 x rtol: a difference there is INCONCLUSIVE, naming the finite
    alpha and the alpha to use (it used to FAIL for gd, dual and flow alike); at alpha = 1e-100 the same
    comparison PASSES, so the verdict still detects what it should."""
    import warnings
    p = dy.AttentionProblem.teacher_student(n_samples=100, n_tokens=6, d=5, init_scale=1e-10, key=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = dy.stages(p)
        chk = dy.crosscheck(dy.simulate_attention(p, method="dual", progress=False), st)
        assert chk.outcome == "inconclusive" and "finite alpha" in chk.summary() and "alpha <=" in chk.advice
        p2 = p.with_init_scale(1e-100)
        # the stages do not depend on alpha (they are its -> 0 limit): the same ones serve
        assert dy.crosscheck(dy.simulate_attention(p2, method="dual", progress=False), st).passed
