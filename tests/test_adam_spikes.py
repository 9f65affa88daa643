"""Adam's late-stage spikes (theory/adam_spikes.md): the family's Adam against optax, the onset theory against
gradient descent over a grid of (lr, eps, beta2), the eps threshold, float32, the logistic regression that never
spikes, and the closed form of one direction against the general search.

Tolerances and why they hold:
* the family's Adam vs ``optax.adam``: the same operations in the same order, so rounding only (1e-13 relative
  over 300 steps; the bias corrections' powers may differ in the last bit);
* predicted vs observed spike: 10 % of the spike's step (the issue's criterion).  The onset is where the step
  turns unstable; the spike is seen when the residual, seeded at the weights' rounding, has grown back to
  sqrt(vhat) (20-120 steps later here, 1-9 % of the onset), and the prediction includes that growth and the
  wait of weights stuck on the rounding lattice: measured within 3.8 % in float64 and 9.9 % in float32 for
  eps <= eps*/10 (benchmarks/results/adam_spikes.md).  Cells with eps within a factor 10 of eps* are left out
  of the 10 % claim: the growth there can stall on the rounding lattice (up to 41 % late in float32,
  theory/adam_spikes.md sec. 3; they are in the committed table);
* the closed form t* = t0 + ln(v0 / (eps* - eps)^2) / ln(1 / beta2) vs the general search in one parameter: one
  step (the search returns an integer step).
"""

import itertools
import math

import numpy as np
import optax
import pytest

import dynamics as dy

SXX = np.diag([1.0, 0.5])
SYX = np.diag([1.0, 0.3])


@pytest.fixture(scope="module")
def prob():
    return dy.AdamSpikesProblem.regression(SXX, SYX, depth=2, init_scale=0.7)


@pytest.fixture(scope="module")
def grid(prob):
    """One batch over (lr, eps, beta2): 12 runs of 12,000 steps."""
    cells = list(itertools.product([0.01, 0.02], [1e-8, 1e-5], [0.99, 0.995, 0.999]))
    lr, eps, b2 = ([c[i] for c in cells] for i in range(3))
    sim = dy.simulate_adam(prob, lr=lr, steps=12_000, record_every=5, eps=eps, beta2=b2, key=0)
    return cells, sim


def test_adam_is_optax_adam(prob):
    """The family runs Adam itself (its numbers per run): step for step it is optax.adam."""
    import jax
    lr, b1, b2, eps = 0.01, 0.9, 0.99, 1e-6
    sim = dy.simulate_adam(prob, lr=lr, steps=300, record_every=300, beta1=b1, beta2=b2, eps=eps, key=3)
    # the run's own init, read off its first record
    first = np.asarray(sim.params)[0]
    sizes = [r * c for r, c in prob.shapes]
    layers = [jax.numpy.asarray(first[sum(sizes[:i]):sum(sizes[:i + 1])].reshape(s)) for i, s in enumerate(prob.shapes)]
    opt = optax.adam(lr, b1, b2, eps)
    state = opt.init(layers)
    grad = jax.jit(jax.grad(prob.loss))
    for _ in range(300):
        updates, state = opt.update(grad(layers), state, layers)
        layers = optax.apply_updates(layers, updates)
    ref = np.concatenate([np.asarray(w).ravel() for w in layers])
    np.testing.assert_allclose(np.asarray(sim.params)[-1], ref, rtol=1e-13, atol=1e-15)


def test_onset_within_ten_percent_over_a_grid(grid):
    cells, sim = grid
    errs = []
    for i, (lr, eps, b2) in enumerate(cells):
        rep = dy.predict_spikes(sim.run(i))
        assert rep.cycles, f"{cells[i]}: {rep.message}"
        c = rep.cycles[0]
        assert eps < rep.eps_star / 10 and math.isfinite(c.predicted) and math.isfinite(c.observed), (cells[i], c)
        assert c.observed >= c.predicted - 5, (cells[i], c)     # the spike follows the onset (records every 5)
        errs.append(c.relative_error)
    assert max(errs) <= 0.10, dict(zip(cells, np.round(errs, 3)))


def test_the_cycles_recur_and_each_is_predicted(grid):
    """After a spike v has jumped back; from the next quiet record the same theory predicts the next onset."""
    cells, sim = grid
    i = cells.index((0.01, 1e-8, 0.999))
    rep = dy.predict_spikes(sim.run(i))
    done = [c for c in rep.cycles if math.isfinite(c.observed)]
    assert len(done) >= 5
    assert max(c.relative_error for c in done) <= 0.10, rep
    norms = np.asarray(sim.run(i).weight_norm)[:, -1]
    assert np.ptp(norms[np.asarray(rep.steps) > done[0].observed]) > 0     # the last layer's norm moves at each spike


def test_weights_stuck_on_the_rounding_lattice_wait_for_half_an_ulp(prob):
    """A run whose weights froze at the minimum (every update below half an ulp) turns unstable at its onset and
    nothing grows: the spike waits until the residual's update reaches half a unit in the last place (float64,
    lr 0.02, eps 1e-8, beta2 0.999, run 26 of this batch: onset 5,326, spike 6,825).  The prediction with the wait
    is within 1 %; the onset alone would be > 10 % early."""
    cells = list(itertools.product([0.005, 0.01, 0.02], [1e-8, 1e-5, 1e-4, 3e-4], [0.99, 0.995, 0.999]))
    sim = dy.simulate_adam(prob, lr=[c[0] for c in cells], steps=7500, record_every=5, eps=[c[1] for c in cells],
                           beta2=[c[2] for c in cells], key=0)
    c = dy.predict_spikes(sim.run(cells.index((0.02, 1e-8, 0.999)))).cycles[0]
    assert c.stuck_until is not None and c.stuck_until > 1.2 * c.onset, c
    assert c.relative_error <= 0.01 and abs(c.onset / c.observed - 1) > 0.10, c


def test_no_spike_above_eps_star(prob):
    """eps >= eps* = lr h (1 - beta1) / (2 (1 + beta1)): the step stays stable however far v decays."""
    lr = 0.01
    sim = dy.simulate_adam(prob, lr=lr, steps=8000, record_every=5, eps=[2e-3, 1e-4], beta2=0.99, key=0)
    above, below = dy.predict_spikes(sim.run(0)), dy.predict_spikes(sim.run(1))
    assert 2e-3 > 1.5 * above.eps_star and 1e-4 < 0.5 * below.eps_star
    assert above.cycles[0].predicted == math.inf and above.cycles[0].observed == math.inf
    assert np.max(above.stability_ratio[np.asarray(above.steps) > above.cycles[0].quiet]) < 1.0
    assert math.isfinite(below.cycles[0].observed)
    assert dy.eps_threshold(lr, above.cycles[0].sharpness) == pytest.approx(above.eps_star, rel=1e-12)


def test_float32_spikes_too(prob):
    """In float32 the residual is seeded at the weights' float32 rounding: the onset is the same mechanism."""
    sim = dy.simulate_adam(prob, lr=0.01, steps=3000, record_every=5, eps=1e-8, beta2=0.99, key=0, dtype="float32")
    rep = dy.predict_spikes(sim)
    c = rep.cycles[0]
    assert rep.settings["dtype"] == "float32" and math.isfinite(c.observed)
    assert c.relative_error <= 0.10, rep


def test_closed_form_of_one_direction_equals_the_search():
    """One parameter: the issue's formula t* = t0 + ln(v0 / (eps* - eps)^2) / ln(1 / beta2) (NumPy, written out
    here) against the library's closed form and its general monotone search (bias correction negligible)."""
    from dynamics.families.adam_spikes import _onset
    lr, h, b1, b2, eps, v0, t0 = 0.02, 3.0, 0.9, 0.995, 1e-5, 4e-3, 20_000
    eps_star = lr * h * (1 - b1) / (2 * (1 + b1))
    formula = t0 + np.log(v0 / (eps_star - eps) ** 2) / np.log(1 / b2)
    assert dy.spike_onset(v0, h, lr, eps, b1, b2, t0=t0) == pytest.approx(formula, rel=1e-14)
    searched = _onset(np.array([[h]]), np.array([v0 / (1 - b2 ** (t0 + 1))]), t0, lr, eps, b1, b2)
    assert abs(searched - formula) <= 1.0
    assert dy.spike_onset(v0, h, lr, 2 * eps_star, b1, b2) == math.inf
    assert dy.adam_threshold(0.9) == pytest.approx(38.0)


def test_separable_logistic_regression_never_spikes():
    """Curvature and gradient vanish together (both ~ the loss), so the stability ratio settles near
    (1 - beta2)/2 x |x| / threshold << 1 (eps = 0): no onset is predicted (there is no minimum whose curvature
    could be frozen) and the ratio measured along 60,000 steps stays far below 1."""
    X = np.array([[1.0, 0.3], [0.8, -0.5], [-1.0, -0.2], [-0.7, 0.6]])
    y = np.array([1.0, 1.0, -1.0, -1.0])
    prob = dy.AdamSpikesProblem.logistic(X, y, init_scale=0.1)
    sim = dy.simulate_adam(prob, lr=0.1, steps=60_000, record_every=200, eps=0.0, beta2=0.999, key=0)
    rep = dy.predict_spikes(sim)
    assert not rep.cycles and "has no minimum" in rep.message
    late = rep.stability_ratio[len(rep.steps) // 2:]
    assert np.max(late) < 1e-3 and np.all(np.diff(np.asarray(sim.loss)[len(rep.steps) // 2:]) < 0)
    # the plateau: |x| (1 - beta2) / 2 / threshold within a factor 2 (|x| of the support inputs ~ 1)
    assert 0.5 < late[-1] / ((1 - 0.999) / 2 / 38) < 2.0


def test_bad_input_is_refused(prob):
    with pytest.raises(ValueError, match="beta2 must be in"):
        dy.simulate_adam(prob, lr=0.01, steps=10, beta2=1.0)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        dy.simulate_adam(prob, lr=0.01, steps=10, eps=-1.0)
    with pytest.raises(ValueError, match="optimizer='adam' would apply a second optimizer"):
        dy.simulate_adam(prob, lr=0.01, steps=10, optimizer="adam")
    with pytest.raises(ValueError, match="Sxx must be positive definite"):
        dy.AdamSpikesProblem.regression(np.diag([1.0, 0.0]), SYX)
    with pytest.raises(ValueError, match="labels must hold one of -1, \\+1"):
        dy.AdamSpikesProblem.logistic(np.eye(2), [0.0, 1.0])
    flow = dy.simulate_adam(prob, method="flow", times=[0.0, 1.0])
    with pytest.raises(ValueError, match="the continuous-time flow has none"):
        dy.predict_spikes(flow)
    two = dy.simulate_adam(prob, lr=0.01, steps=10, runs=2)
    with pytest.raises(ValueError, match="pass sim.run"):
        dy.predict_spikes(two)
    with pytest.raises(ValueError, match="drop must be a fraction"):
        dy.predict_spikes(two.run(0), drop=2.0)


def test_the_spec_holds_its_margin():
    """sims/adam_spikes.toml: every first spike of its (lr, eps, beta2) grid within 10 % of its prediction, each
    cycle of the long run too, no spike at eps = 10 eps*, none in the separable logistic regression."""
    import os
    from dynamics.experiments import load_spec
    from dynamics.experiments.adam_spikes import EXPERIMENTS
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = load_spec(os.path.join(root, "sims", "adam_spikes.toml"))
    lines = []
    out = EXPERIMENTS[0].run(spec, progress=False, echo=lines.append)
    s = out["summary"]
    assert s["worst_grid_error"] <= s["criterion"] == 0.10 and any("PASS" in line for line in lines), lines
    cycles = [c for c in s["long_run"]["cycles"] if math.isfinite(c["observed"])]
    assert len(cycles) >= 10 and max(c["relative_error"] for c in cycles) <= 0.10
    assert s["no_spike_above_eps_star"] and s["logistic_final_ratio"] < 1e-3
    import matplotlib.pyplot as plt
    plt.close("all")
