"""One process of the multi-process tests (tests/test_distributed.py); also the single-process reference.

    python distributed_worker.py OUT_DIR PROCESS_ID NUM_PROCESSES PORT [FAMILY ...] [--flow] [--theory]

With NUM_PROCESSES > 1 it joins the others through ``jax.distributed.initialize`` on localhost (CPU
collectives through gloo, one CPU device per process); with 1 it is the reference (run with
DYNAMICS_CPU_DEVICES = the other runs' process count, so that both lay the batch out over as many
devices).  For every family (or those named) it runs a sweep through the contract's front-end -- the
family's example at four learning rates by gradient descent, with ``--flow`` also 4 seeds of the exact
flow, with ``--theory`` the JEPA theory on a 5,000-feature grid -- and writes the primary fields, and a
saved result file (process 0 only writes it), to OUT_DIR.
"""

import os
import sys

out, pid, n, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
only = [a for a in sys.argv[5:] if not a.startswith("--")]

import jax  # noqa: E402

if n > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", 1)
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n, process_id=pid,
                               initialization_timeout=60)

if "--exit-process-0" in sys.argv and pid == 0:     # the failure test: process 0 dies after joining
    sys.exit(3)

import warnings  # noqa: E402

import numpy as np  # noqa: E402

import dynamics as dy  # noqa: E402
from dynamics.core import frontend  # noqa: E402

assert jax.process_count() == n and jax.device_count() == (n if n > 1 else jax.device_count())
warnings.simplefilter("ignore")
arrays = {}
for name in (only or sorted(dy.registered_families())):
    family = dy.get_family(name)
    ex = family.example()
    steps = min(ex.steps, 200)
    lrs = ex.lr * np.array([1.0, 0.9, 0.8, 0.7])
    sim = frontend.simulate(family, ex.problem, lr=lrs, steps=steps, record_every=max(1, steps // 8),
                            method=ex.method, optimizer=ex.optimizer, options=ex.options, key=3, progress=False)
    arrays[f"{name}/gd"] = np.asarray(sim.fields[family.primary])
    if "--flow" in sys.argv and dy.Flow in family.steppers:
        fl = frontend.simulate(family, ex.problem, lr=ex.lr, times=np.linspace(0.0, ex.lr * steps, 9), runs=4,
                               method="flow", options=ex.options, key=3, progress=False, rtol=1e-8)
        arrays[f"{name}/flow"] = np.asarray(fl.fields[family.primary])
if "--theory" in sys.argv:     # the theory on a large grid: split over the processes' devices
    big = dy.SSLProblem.from_spectrum(np.linspace(0.2, 1.0, 5000), np.linspace(0.5, 1.0, 5000), 2, 1e-2)
    th = dy.solve_jepa(big, times=np.linspace(0.0, 2000.0, 50))
    arrays["theory/modes"], arrays["theory/loss"] = th.modes, th.loss
path = sim.save(os.path.join(out, "saved.npz"))
assert os.path.exists(path)                      # written by process 0 before save returned
np.savez(os.path.join(out, f"fields-{n}-{pid}.npz"), **arrays)
print(f"process {pid} of {n}: {len(arrays)} sweeps", flush=True)
