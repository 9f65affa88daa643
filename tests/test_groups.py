"""Sweeps larger than the memory budget run in sequential groups of runs (dynamics.core.frontend), and
equal the one-shot batch (to rounding: a group goes through smaller GEMM shapes than the whole batch)."""

import numpy as np
import pytest

import dynamics as dy

P = dy.SSLProblem.from_spectrum(np.linspace(1, 0.3, 12), np.linspace(0.6, 1, 12), 3, 0.05, rotate=True, key=0)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * float(np.abs(b).max()))


@pytest.mark.parametrize("method", ["gd", "flow"])
def test_a_sweep_over_the_budget_runs_in_groups_and_equals_the_one_shot_run(monkeypatch, method):
    kw = (dict(lr=np.linspace(0.01, 0.02, 10), steps=500, record_every=50) if method == "gd"
          else dict(method="flow", times=np.linspace(0, 5, 11), runs=10))
    one = dy.simulate_jepa(P, init="gaussian", key=4, **kw)
    assert "groups" not in one.settings
    monkeypatch.setenv("DYNAMICS_MEMORY_BUDGET", "100k")      # ~4 of these runs at a time
    grp = dy.simulate_jepa(P, init="gaussian", key=4, **kw)
    assert grp.settings["groups"] == 3 and grp.settings["group_size"] == 4
    assert grp.modes.shape == one.modes.shape
    _close(grp.modes, one.modes)
    _close(grp.loss, one.loss)


def test_a_diverging_group_raises_with_every_run_kept_up_to_the_divergence(monkeypatch):
    monkeypatch.setenv("DYNAMICS_MEMORY_BUDGET", "100k")
    lrs = np.full(10, 0.01)
    lrs[6] = 50.0                                    # run 6 (second group) diverges
    with pytest.raises(dy.DivergenceError, match="group of runs 4-7.*diverged") as info:
        dy.simulate_jepa(P, lr=lrs, steps=200, record_every=20)
    part = info.value.partial
    assert part.modes.shape[0] == 10 and np.all(np.isfinite(part.modes))
    assert part.modes.shape[1] in range(1, 11)        # the records before the divergence, for every run


def test_a_single_run_that_cannot_fit_is_refused(monkeypatch):
    monkeypatch.setenv("DYNAMICS_MEMORY_BUDGET", "2k")
    with pytest.raises(dy.ResourceError, match="budget of 2 kB"):
        dy.simulate_jepa(P, lr=0.01, steps=10)
