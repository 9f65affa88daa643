"""The generic engine on a model with a known exact answer, schedules, optimizers, faults, sharding."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as dy
from dynamics import engine
from dynamics.core import chunks


def quadratic_model():
    """loss = 1/2 a x^2 per coordinate: gradient descent gives x_k = (1 - lr a)^k x_0 exactly."""
    def grad(p, aux, ctx, key):
        return 0.5 * jnp.sum(ctx["a"] * p["x"] ** 2), {"x": ctx["a"] * p["x"]}

    def observe(p, aux, ctx):
        return {"x": p["x"], "loss": 0.5 * jnp.sum(ctx["a"] * p["x"] ** 2)}

    return engine.Model(grad=grad, observe=observe)


def run_quadratic(lr, a, x0, record_steps, **kw):
    R = len(lr)
    return engine.simulate(quadratic_model(), {"x": jnp.asarray(x0)}, {},
                           {"a": jnp.asarray(a)}, jnp.asarray(lr), record_steps=record_steps,
                           key=jax.random.split(jax.random.key(0), R), **kw)


def test_exact_geometric_decay_with_log_schedule():
    rec = engine.record_schedule(1000, log=30)
    assert rec[0] == 0 and rec[-1] == 1000 and np.all(np.diff(rec) > 0)
    lr = np.array([0.01, 0.1])
    a = np.array([[1.0, 3.0], [2.0, 0.5]])
    x0 = np.ones((2, 2))
    out = run_quadratic(lr, a, x0, rec, n_chunks=4)
    expected = (1 - lr[:, None, None] * a[:, None, :]) ** rec[None, :, None] * x0[:, None, :]
    np.testing.assert_allclose(out.records["x"], expected, rtol=1e-12)
    np.testing.assert_array_equal(out.steps, rec)


def test_chunking_does_not_change_results():
    rec = engine.record_schedule(500, every=7)
    a = np.array([[1.0, 3.0]])
    outs = [run_quadratic(np.array([0.05]), a, np.ones((1, 2)), rec, n_chunks=n) for n in (1, 3, 40)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o.records["x"], outs[0].records["x"])


def test_divergence_in_a_later_chunk_names_the_exact_step():
    """x_k = (1 - lr a)^k x0 with lr a = 3 doubles |x| every step; the loss 1/2 a x^2 overflows at a
    step NumPy computes with the same float64 arithmetic. The engine dispatches the next chunk before
    reading the last one's flags, and must still name that step and keep exactly the records before it."""
    lr, a = 3.0, 1.0
    k = np.arange(2000)
    with np.errstate(over="ignore", invalid="ignore"):
        x = (1 - lr * a) ** k.astype(float)
        expected = int(k[~np.isfinite(0.5 * a * x ** 2)][0])
    rec = engine.record_schedule(1000, every=10)
    with pytest.raises(dy.DivergenceError, match=rf"step {expected}\b.*smaller learning rate") as info:
        run_quadratic(np.array([lr]), np.array([[a]]), np.ones((1, 1)), rec, n_chunks=20)
    assert info.value.step == expected and expected > 1000 // 20       # not in the first chunk
    part = info.value.partial
    np.testing.assert_array_equal(part.steps, rec[rec < expected])
    np.testing.assert_allclose(part.records["x"][0, :, 0], (1 - lr * a) ** part.steps.astype(float), rtol=1e-12)


def test_record_schedule_errors():
    with pytest.raises(ValueError, match="exactly one"):
        engine.record_schedule(10)
    with pytest.raises(ValueError, match="steps"):
        engine.record_schedule(0, every=1)
    with pytest.raises(ValueError, match="record_every"):
        engine.record_schedule(10, every=0)


@pytest.mark.parametrize("opt", ["adam", "momentum", "adamw"])
def test_optax_optimizers_reach_the_minimum(opt):
    rec = engine.record_schedule(3000, every=500)
    out = run_quadratic(np.array([0.05]), np.array([[1.0, 3.0]]), np.ones((1, 2)), rec, optimizer=opt)
    assert np.abs(out.records["x"][0, -1]).max() < 1e-2
    assert out.records["loss"][0, -1] < out.records["loss"][0, 0] * 1e-3


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        engine.make_optimizer("lbfgs-ish")


def interrupting_bar(at):
    """A stand-in progress bar whose ``at``-th update raises KeyboardInterrupt (Ctrl-C between chunks)."""
    calls = {"n": 0}

    class Bar:
        def update(self, n):
            calls["n"] += 1
            if calls["n"] == at:
                raise KeyboardInterrupt

        def close(self):
            return None

    return lambda *a, **k: Bar()


def test_interrupt_keeps_records(monkeypatch):
    """A KeyboardInterrupt between chunks returns what was recorded, with status 1."""
    monkeypatch.setattr(chunks, "progress_bar", interrupting_bar(2))
    rec = engine.record_schedule(1000, every=10)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        out = run_quadratic(np.array([0.01]), np.array([[1.0]]), np.ones((1, 1)), rec, n_chunks=10,
                            progress=True)
    assert out.status == 1 and "interrupted" in out.message
    assert 0 < out.steps.size < rec.size
    np.testing.assert_allclose(out.records["x"][0, :, 0], 0.99 ** out.steps, rtol=1e-12)
    # the chunk already dispatched when Ctrl-C came is kept too: the last record is where the final
    # parameters are, so nothing computed is lost and records and parameters agree
    np.testing.assert_allclose(out.final_params["x"][0, 0], 0.99 ** out.steps[-1], rtol=1e-12)
    assert f"after step {out.steps[-1]}" in out.message


def test_interrupt_through_public_simulator(monkeypatch):
    monkeypatch.setattr(chunks, "progress_bar", interrupting_bar(3))
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 2, 0.05)
    with pytest.warns(RuntimeWarning):
        traj = dy.simulate_jepa(prob, lr=0.01, steps=50_000, record_every=100, progress=True)
    assert traj.status == 1 and 0 < traj.t.size < 501
    assert np.all(np.isfinite(traj.modes))


def test_seed_k_alone_equals_seed_k_in_batch():
    """Run k of a batch is run k alone: same key, same init, same updates. Runs share the problem's
    matrices, which XLA multiplies as one GEMM whose blocking depends on the batch size, so the
    agreement is to rounding (1e-12), not bit for bit; run to run it is bit-identical."""
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5, 0.7], [1.0, 0.8, 0.9], 2, 0.05, rotate=True, key=0)
    batch = dy.simulate_jepa(prob, lr=0.02, steps=400, record_every=20, init="gaussian", key=[11, 12, 13])
    alone = dy.simulate_jepa(prob, lr=0.02, steps=400, record_every=20, init="gaussian", key=[12])
    assert alone.modes.shape[0] == 1                                 # key=[k]: a batch of one (one rule)
    np.testing.assert_allclose(batch.modes[1], alone.modes[0], rtol=1e-12, atol=1e-16)
    runs = dy.simulate_jepa(prob, lr=0.02, steps=400, record_every=20, init="gaussian", key=5, runs=3)
    first = dy.simulate_jepa(prob, lr=0.02, steps=400, record_every=20, init="gaussian", key=5)
    np.testing.assert_allclose(runs.modes[0], first.modes, rtol=1e-12, atol=1e-16)
    assert not np.allclose(runs.modes[0], runs.modes[1])          # different seeds differ
    again = dy.simulate_jepa(prob, lr=0.02, steps=400, record_every=20, init="gaussian", key=5, runs=3)
    np.testing.assert_array_equal(again.modes, runs.modes)        # bit-identical run to run


def test_lr_batch_has_per_run_time():
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 2, 0.05)
    traj = dy.simulate_mae(prob, lr=[0.01, 0.02], steps=300, record_every=30)
    assert traj.t.shape == (2, 11) and traj.modes.shape == (2, 11, 2)
    np.testing.assert_allclose(traj.t[1], 2 * traj.t[0])
    one = traj.run(1)
    assert one.t.shape == (11,) and one.settings["lr"] == 0.02


SHARD_SCRIPT = textwrap.dedent("""
    import json, os
    import numpy as np
    import jax
    import dynamics as dy
    assert jax.device_count() == int(os.environ["EXPECT_DEVICES"]), jax.device_count()
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5, 0.7], [1.0, 0.8, 0.9], 2, 0.05, rotate=True, key=0)
    kw = dict(lr=[0.01, 0.02, 0.03, 0.015, 0.025], steps=300, record_every=30, init="gaussian", key=3)
    sharded = dy.simulate_jepa(prob, **kw)
    one = dy.simulate_jepa(prob, lr=0.01, steps=30, record_every=30, init="gaussian", key=3)
    print(json.dumps({"modes": sharded.modes.tolist(), "devices": sharded.settings["devices"],
                      "single_run_devices": one.settings["devices"]}))
""")


def _sweep_in_subprocess(**env):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    out = subprocess.run([sys.executable, "-c", SHARD_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_sweep_matches_single_device():
    """A 5-run sweep over 4 (virtual CPU) devices, padded to 8, equals the sweep on one device; a
    single run is never padded onto several devices."""
    sharded = _sweep_in_subprocess(XLA_FLAGS="--xla_force_host_platform_device_count=4", EXPECT_DEVICES="4")
    single = _sweep_in_subprocess(DYNAMICS_CPU_DEVICES="1", EXPECT_DEVICES="1")
    assert sharded["devices"] == 4 and single["devices"] == 1
    assert sharded["single_run_devices"] == 1
    np.testing.assert_allclose(np.asarray(sharded["modes"]), np.asarray(single["modes"]), rtol=1e-12, atol=1e-15)


def test_results_record_versions_and_settings():
    prob = dy.SSLProblem.from_spectrum([1.0], [1.0], 1, 0.1)
    traj = dy.simulate_jepa(prob, lr=0.1, steps=10, record_every=5)
    s = traj.settings
    for key in ("dynamics", "jax", "dtype", "lr", "steps", "init", "optimizer", "key", "x64"):
        assert key in s
    assert s["dtype"] == "float64" and s["x64"] is True


def test_blow_up_on_the_last_step_raises():
    """The loss is checked before each update; a state that turns non-finite on the last step before a
    record (or the very last step) is caught at that record: it used to return status 0, loss inf."""
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5], [1.0, 0.8], 2, 0.05)
    with pytest.raises(dy.DivergenceError, match=r"step \d+.*smaller learning rate"):
        dy.simulate_jepa(prob, lr=100.0, steps=10, record_every=1)
    with pytest.raises(dy.DivergenceError):
        dy.simulate_jepa(prob, lr=1e308, steps=1)


def test_ctrl_c_is_answered_within_a_long_gap_between_records(monkeypatch):
    """One record after 3e8 steps used to be one dispatch (Ctrl-C waited for all of it); the gap is now
    split into chunks of about dispatch_s seconds, so the interrupt lands long before the record."""
    monkeypatch.setattr(chunks, "progress_bar", interrupting_bar(4))
    rec = np.array([0, 3 * 10 ** 8])
    with pytest.warns(RuntimeWarning, match="interrupted"):
        out = run_quadratic(np.array([1e-9]), np.array([[1.0]]), np.ones((1, 1)), rec, progress=True,
                            dispatch_s=0.05)
    assert out.status == 1 and out.steps.tolist() == [0]
    done = int(out.message.split("after step ")[1].split(";")[0])
    assert 0 < done < 3 * 10 ** 8
    np.testing.assert_allclose(out.final_params["x"][0, 0], (1 - 1e-9) ** done, rtol=1e-9)


def test_interrupt_while_the_state_is_donated_keeps_the_records(monkeypatch):
    """Ctrl-C arriving inside a dispatch (after the state was donated to it) used to raise 'Array has
    been deleted' and lose every record; now the records are kept and the message says why the final
    parameters are not."""
    real = engine._compiled_chunk

    def flaky(*a):
        run = real(*a)
        calls = {"n": 0}

        def wrapped(state, *args):
            calls["n"] += 1
            out = run(state, *args)          # donates ``state``
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return out
        return wrapped

    monkeypatch.setattr(engine, "_compiled_chunk", flaky)
    rec = engine.record_schedule(1000, every=10)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        out = run_quadratic(np.array([0.01]), np.array([[1.0]]), np.ones((1, 1)), rec, n_chunks=10)
    assert out.status == 1 and out.steps.size > 0
    np.testing.assert_allclose(out.records["x"][0, :, 0], 0.99 ** out.steps, rtol=1e-12)
    assert out.final_params is None and "not kept" in out.message


@pytest.mark.parametrize("key", [0, 7, "key", "rbg", [1, 2, 3], "mixed", "blocks", "seq_blocks"])
def test_run_keys_derived_at_once_equal_one_by_one(key):
    """derive_run_keys (compiled programs over blocks of KEY_BLOCK runs) gives every run exactly the keys
    the module's one-by-one derivation defines: run key, init key, step key, for int seeds, keys, another
    PRNG implementation, sequences of seeds, and batches spanning several blocks (the last one padded);
    a different fold would change every seeded result."""
    from dynamics.core.keys import KEY_BLOCK, derive_run_keys, init_key, key_data, run_keys, step_key
    R = 2 * KEY_BLOCK + 3 if key == "blocks" else 4
    key = {"key": jax.random.key(3), "rbg": jax.random.key(4, impl="rbg"), "blocks": 11,
           "mixed": [jax.random.key(5), 9], "seq_blocks": list(range(100, 100 + KEY_BLOCK + 1)),
           }.get(key, key) if isinstance(key, str) else key
    R = len(key) if isinstance(key, list) else R
    rk, ks = derive_run_keys(key, R), run_keys(key, R)
    assert rk.run_data() == key_data(ks)
    for i, k in enumerate(ks):
        assert np.array_equal(jax.random.key_data(rk.init_key(i)), jax.random.key_data(init_key(k)))
        assert np.array_equal(jax.random.key_data(rk.step_keys()[i]), jax.random.key_data(step_key(k)))
        assert np.array_equal(jax.random.key_data(rk.step_key(i)), jax.random.key_data(step_key(k)))
    assert len({tuple(np.ravel(x)) for x in rk.init}) == R                      # distinct per run
    with pytest.raises(ValueError, match="key: got 2 seeds"):
        derive_run_keys([1, 2], 3)


def test_gaussian_init_drawn_as_one_program_equals_op_by_op():
    """The "gaussian" init's draws, compiled as one program per run and dispatched for a whole batch
    before any is read, are the draws op by op, bit for bit."""
    from dynamics.families.linear.network import _gaussian_draws, gaussian_draws
    for L, d, seed in ((1, 3, 0), (3, 32, 1), (5, 7, 2)):
        key = jax.random.key(seed)
        keys = jax.random.split(key, L + 2)
        W, V = _gaussian_draws(key, L, d)
        assert np.array_equal(W, jax.random.normal(keys[0], (L, d, d), dtype=np.float64))
        assert np.array_equal(V, jax.random.normal(keys[L], (d, d), dtype=np.float64))
        batch = jax.random.split(key, 5)
        Ws, Vs = gaussian_draws(batch, L, d)
        assert Ws.shape == (5, L, d, d) and Vs.shape == (5, d, d)
        for i in (0, 2, 4):
            W, V = _gaussian_draws(batch[i], L, d)
            assert np.array_equal(Ws[i], W) and np.array_equal(Vs[i], V)


def test_linear_batch_init_drawn_at_once_equals_per_run():
    """A batch of "gaussian" inits is drawn at once (LinearFamily.initial_states); each
    run's state equals the one initial_state draws for that run alone, bit for bit (and an aligned
    batch, which takes the per-run default, too)."""
    from dynamics.core.keys import derive_run_keys
    fam = dy.get_family("jepa")
    prob = dy.SSLProblem.from_spectrum([1.0, 0.5, 0.7], [1.0, 0.8, 0.9], 3, 0.05, rotate=True, key=0)
    keys = derive_run_keys(4, 5)
    for init in ("gaussian", "aligned_gauge"):
        opts = [dy.LinearConfig(init=init).check(fam, [prob], dy.GD(lr=0.01, steps=1))] * 5
        batch = fam.initial_states([prob] * 5, keys.init_keys(), "params", opts)
        for i in range(5):
            one = fam.initial_state(prob, keys.init_key(i), "params", opts[i])
            for k in ("W", "V"):
                np.testing.assert_array_equal(batch[i][0][k], one[0][k])
        assert not np.array_equal(batch[0][0]["W"], batch[1][0]["W"])
