"""Sweeps on several processes through JAX's multi-controller runtime (dynamics.core.distributed).

Two and four processes on localhost (gloo CPU collectives, one CPU device each) run the same sweep of
every registered family (gradient descent; the exact flow and the JEPA theory on a 5,000-feature grid,
split over the processes, for four); every process must get the whole result, bit for bit the
single-process run of the same batch on as many devices (the theory's loss to rounding).  The
processes are killed on failure or after a timeout, so the test never hangs.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
TIMEOUT = 240


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out, n, families=(), devices=None, extra=()):
    port = str(_free_port())
    env = dict(os.environ, DYNAMICS_CPU_DEVICES=str(devices or 1), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return [subprocess.Popen([sys.executable, WORKER, str(out), str(i), str(n), port, *families, *extra], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(n)]


def _wait(procs, timeout=TIMEOUT):
    """Wait for every process; kill them all on a failure or after ``timeout`` seconds (never hang)."""
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{len(procs)} processes did not finish within {timeout} s") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i} of {len(procs)} failed:\n" + (logs[i] if i < len(logs) else "")[-3000:]


def _run(out, n, families=(), devices=None, timeout=TIMEOUT, extra=()):
    _wait(_start(out, n, families, devices, extra), timeout)


@pytest.mark.parametrize("n,families,extra", [(2, (), ()), (4, ("jepa",), ("--flow", "--theory"))],
                         ids=["2-every-family-gd", "4-flow-and-theory"])
def test_sweeps_on_several_processes_equal_one_process(tmp_path, n, families, extra):
    """Two processes: every registered family by gradient descent; four: JEPA by gradient descent and by
    the exact flow, and its theory on a large grid (the suite's time on 2 cores: compilation in every
    process dominates)."""
    multi, single = tmp_path / "multi", tmp_path / "single"
    multi.mkdir()
    single.mkdir()
    procs = _start(multi, n, families, extra=extra) + _start(single, 1, families, devices=n, extra=extra)
    _wait(procs)
    ref = np.load(single / "fields-1-0.npz")
    import dynamics as dy
    assert len(ref.files) >= (len(families) or len(dy.registered_families()))
    for pid in range(n):
        got = np.load(multi / f"fields-{n}-{pid}.npz")
        assert sorted(got.files) == sorted(ref.files)
        for k in ref.files:
            if k.startswith("theory/"):         # split over the processes: the loss sums in another order
                np.testing.assert_allclose(got[k], ref[k], rtol=1e-13, err_msg=f"{k} on process {pid} of {n}")
                continue
            assert got[k].shape == ref[k].shape and got[k].shape[0] == 4, k       # the whole batch, everywhere
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{k} on process {pid} of {n}")
    saved = dy.load(multi / "saved.npz")                 # written once, by process 0
    assert saved.n_runs == 4


def test_a_failing_process_does_not_hang_the_others(tmp_path):
    """Process 0 dies right after joining; process 1 then waits in its first collective.  The harness
    must report it (a failure or a time-out, here within 12 s) and leave no process behind."""
    with pytest.raises((AssertionError, TimeoutError), match="failed|did not finish"):
        _run(tmp_path, 2, families=("jepa",), extra=("--exit-process-0",), timeout=12)
    out = subprocess.run(["pgrep", "-f", WORKER], capture_output=True, text=True)
    assert out.stdout.strip() == "", "a worker process was left running"
