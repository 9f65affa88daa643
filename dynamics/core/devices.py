"""One JAX CPU device per core, so that a sweep's runs are split across the cores.

XLA:CPU runs the small batched matrix products of one device's program on about one core: a 64-run
sweep of d = 32 networks ran at 31k run-steps/s on one device of a 2-core machine and at 59k when
its runs were sharded over two CPU devices (benchmarks/results/performance.md).  The engine shards
the runs over every visible device (``engine.simulate``), so exposing one CPU device per core gives
that speed-up without code changes.

``import dynamics`` therefore sets ``jax_num_cpu_devices`` to the number of cores available to the
process, unless

* the environment variable ``DYNAMICS_CPU_DEVICES`` says otherwise (``1`` turns this off),
* the program already chose (``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``, or
  ``jax_num_cpu_devices`` set), or
* JAX has already started its backends (then nothing can change; the program keeps what it has).

It only concerns the CPU platform: on a GPU host the GPUs remain the default devices.
"""

from __future__ import annotations

import os

import jax

__all__ = ["configure_cpu_devices", "available_cores"]

ENV = "DYNAMICS_CPU_DEVICES"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def configure_cpu_devices() -> int | None:
    """Expose one CPU device per core (see the module docstring); returns the count set, or None."""
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ValueError(f"{ENV} must be a positive integer (1 turns per-core devices off), got {raw!r}") from None
        if n < 1:
            raise ValueError(f"{ENV} must be a positive integer (1 turns per-core devices off), got {raw!r}")
    else:
        n = available_cores()
    if n <= 1 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    current = getattr(jax.config, "jax_num_cpu_devices", None)
    if current is None or current != -1:   # a JAX without the option, or the program chose a count
        return None
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:   # backends already initialised by the program: keep its devices
        return None
    return n
