"""Trajectory save/load round trips, refusal of bad files, atomic writes, crosscheck reports."""

import os
import zipfile

import numpy as np
import pytest

import dynamics as dy


@pytest.fixture(scope="module")
def traj():
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 2, 0.05, rotate=True, key=0)
    # long enough to reach both critical times (43 and 93): a shorter run is inconclusive, not a PASS
    return dy.simulate_jepa(prob, lr=0.02, steps=6000, record_every=300, snapshots=True)


def test_roundtrip_is_exact(traj, tmp_path):
    path = traj.save(tmp_path / "run.npz")
    back = dy.load(path)
    np.testing.assert_array_equal(back.t, traj.t)
    for k in traj.fields:
        np.testing.assert_array_equal(back.fields[k], traj.fields[k])
    np.testing.assert_array_equal(back.fixed_point, traj.fixed_point)
    assert back.settings == traj.settings and back.kind == traj.kind and back.model == traj.model
    np.testing.assert_array_equal(back.problem.Sxx, traj.problem.Sxx)
    assert back.problem.depth == 2 and type(back.problem).__name__ == "SSLProblem"
    # a loaded result still cross-checks against the theory
    rep = dy.crosscheck(back, dy.solve_jepa(back.problem, times=back.t))
    assert rep.max_rel_error < 0.05
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]   # no temporary files left


def test_batched_roundtrip(tmp_path):
    probs = [dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, r], 2, 0.05) for r in (0.8, 0.9)]
    traj = dy.simulate_mae(probs, lr=0.02, steps=100, record_every=10)
    back = dy.load(traj.save(tmp_path / "b.npz"))
    assert isinstance(back.problem, list) and len(back.problem) == 2
    np.testing.assert_array_equal(back.modes, traj.modes)


def test_load_refuses_truncated_and_foreign_files(traj, tmp_path):
    good = traj.save(tmp_path / "good.npz")
    data = open(good, "rb").read()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or foreign"):
        dy.load(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    with pytest.raises(ValueError, match="not a dynamics result"):
        dy.load(foreign)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError):
        dy.load(text)
    with pytest.raises(FileNotFoundError):
        dy.load(tmp_path / "missing.npz")


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, __meta__=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(ValueError):
        dy.load(path)


def test_failed_write_keeps_old_file(traj, tmp_path, monkeypatch):
    path = traj.save(tmp_path / "run.npz")
    before = open(path, "rb").read()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        traj.save(path)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]
    assert zipfile.is_zipfile(path)


def test_to_dict_and_crosscheck_report(traj):
    d = traj.to_dict()
    assert d["kind"] == "simulation" and len(d["critical_times_half"]) == 2
    th = dy.solve_jepa(traj.problem, times=traj.t)
    rep = dy.crosscheck(traj, th, rtol=1e-9)
    assert not rep.passed and "FAIL" in rep.summary()           # too strict a tolerance fails
    rep = dy.crosscheck(traj, th, rtol=0.05, ctol=0.05)
    assert rep.passed and "PASS" in rep.summary()
    assert rep.to_dict()["passed"] is True


def test_crosscheck_refuses_mismatched_grids(traj):
    th = dy.solve_jepa(traj.problem, times=traj.t[:-1])
    with pytest.raises(ValueError, match="time grid"):
        dy.crosscheck(traj, th)


def test_plots_draw(traj, tmp_path):
    th = dy.solve_jepa(traj.problem, times=traj.t)
    fig = dy.crosscheck(traj, th).plot()
    ax = fig.axes[0]
    assert len(ax.lines) >= 4 and ax.get_xlabel() and ax.get_ylabel()
    fig.savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 10_000


def test_crosscheck_counts_features_past_the_threshold_at_init_as_agreeing():
    """A feature that starts above fraction * fixed point has critical time 0 in both: no error
    (found by hypothesis: 0/0 was reported as an infinite relative error)."""
    prob = dy.SSLProblem.from_spectrum([1.0, 1.0], [0.6, 1.0], 3, 0.15)   # psi0 = 0.885 > 0.5^(1/3)
    assert dy.critical_times(prob, "jepa")[0] == 0.0
    sim = dy.simulate_jepa(prob, lr=0.01, steps=3000, record_every=30)
    rep = dy.crosscheck(sim, dy.solve_jepa(prob, times=sim.t))
    assert rep.critical_a[0] == rep.critical_b[0] == 0.0 and rep.critical_rel_error[0] == 0.0
    assert rep.passed


def test_runs_axis_for_families_without_modes(tmp_path):
    """A batch is marked by ``runs``, not by a "modes" field: a stepwise-SSL batch (eigenvalue fields
    only) splits into its runs, which equal the runs simulated alone, and keeps ``runs`` through a file."""
    prob = dy.StepwiseProblem.from_spectrum([1.0, 0.6, 0.3], 1e-3, key=1)
    batch = dy.simulate_stepwise(prob, lr=0.05, steps=200, record_every=50, init="random", runs=3, key=4)
    assert batch.runs == 3 and batch.batched and "modes" not in batch.fields
    one = batch.run(2)
    assert one.runs is None and not one.batched and one.eigenvalues.shape == batch.eigenvalues.shape[1:]
    np.testing.assert_array_equal(one.eigenvalues, batch.eigenvalues[2])
    with pytest.raises(IndexError, match="out of range for a batch of 3"):
        batch.run(3)
    batch.save(tmp_path / "b.npz")
    assert dy.load(tmp_path / "b.npz").runs == 3
    single = dy.simulate_stepwise(prob, lr=0.05, steps=200, record_every=50, init="random", key=4)
    assert single.runs is None and not single.batched


def test_atomic_write_gives_the_umask_permissions_not_private_ones(tmp_path):
    # the temporary file behind an atomic write is 0600; the result must be as readable as open() makes it
    old = os.umask(0o022)
    try:
        path = dy.core.io.atomic_write(tmp_path / "a.txt", lambda fh: fh.write(b"x"))
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert open(path, "rb").read() == b"x"
