"""The identity-initialised head (Wen & Li 2022): collapse without it, substitution then acceleration
with it. One seeded configuration (theory/heads.md sec. 4), float32, ~10 s per run."""

import numpy as np
import pytest

import dynamics as dy
from dynamics.families.identity_head import HeadProblem


@pytest.fixture(scope="module")
def runs():
    pb = HeadProblem()
    return {h: dy.simulate_head(pb, head=h, steps=3000, record_every=100) for h in (False, True)}


def test_without_head_every_neuron_collapses_onto_the_strong_feature(runs):
    ov = np.abs(runs[False].overlaps)               # (T, neurons, features)
    assert np.all(ov[-1, :, 0] > 0.2)              # both neurons align with v1
    assert np.all(ov[-1, :, 1] < 0.12)             # the weak feature stays at its initial level
    ph = dy.head_phases(runs[False])
    assert not ph["weak_learned"] and np.isinf(ph["substitution"])


def test_with_head_substitution_comes_before_acceleration(runs):
    tr = runs[True]
    ph = dy.head_phases(tr)
    assert tr.settings["phases"] == ph                                    # returned with the run
    assert ph["weak_learned"]
    lr = tr.settings["lr"]                                                # phase times are in t = lr * step
    assert ph["strong"] <= ph["substitution"] + 100 * lr < ph["weak"]     # strong, then substitution
    assert ph["back"] >= ph["weak"] - 200 * lr                            # head returns after the switch
    assert 0.05 < ph["peak_offdiag"] < 0.5
    ov = np.abs(tr.overlaps)
    j = ph["weak_neuron"]
    assert ov[-1, j, 1] > 0.25 and ov[-1, j, 0] < ov[-1, 1 - j, 0]       # one neuron per feature
    assert np.abs(tr.head_offdiag[-1]).max() < 0.1 * ph["peak_offdiag"]   # back near the identity


def test_bad_input():
    with pytest.raises(ValueError, match="feature_patches must be <"):
        HeadProblem(patches=4, feature_patches=4)
    with pytest.raises(ValueError, match="overlaps"):
        HeadProblem(overlaps=((0.9, 0.9), (0.1, 0.1)))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        HeadProblem(alpha=(1.0, -1.0))
    with pytest.raises(TypeError, match="HeadProblem"):
        dy.simulate_head("toy")
