"""Resource guards: estimate what a call will allocate before allocating it, and refuse above a budget.

A call that would need more memory than the machine has used to start and then crash the process
(an abort, no Python exception) or thrash for minutes.  Every allocation that grows with the
arguments (a batch's parameters, its records, a d x d rotation) is estimated first and checked
against :func:`memory_budget`: half the physical memory by default, or ``DYNAMICS_MEMORY_BUDGET``
(bytes, or with a suffix: "16G", "500M").
"""

from __future__ import annotations

import os

__all__ = ["ResourceError", "memory_budget", "device_budget", "check_memory", "nbytes_of", "step_budget",
           "check_steps"]


class ResourceError(ValueError):
    """A call would need more memory than the budget allows (raised before anything is allocated)."""


def _parse_bytes(text):
    text = str(text).strip().upper().rstrip("B")
    scale = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
    if text and text[-1] in scale:
        return int(float(text[:-1]) * scale[text[-1]])
    return int(float(text))


def memory_budget() -> int:
    """Bytes a single call may allocate: ``DYNAMICS_MEMORY_BUDGET`` or half the physical memory."""
    env = os.environ.get("DYNAMICS_MEMORY_BUDGET")
    if env:
        try:
            return _parse_bytes(env)
        except ValueError:
            raise ValueError(f"DYNAMICS_MEMORY_BUDGET must be a number of bytes (e.g. 16G), got {env!r}") from None
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    except (ValueError, OSError, AttributeError):     # pragma: no cover - non-POSIX
        return 8 * 2 ** 30


def device_budget() -> int:
    """Bytes a batch in flight may occupy on the devices: ``DYNAMICS_MEMORY_BUDGET`` if set, else half
    of the local accelerators' memory (as XLA reports it), and never more than :func:`memory_budget`
    (on a CPU the devices share the host's memory).  Above it a batch runs in sequential groups."""
    host = memory_budget()
    if os.environ.get("DYNAMICS_MEMORY_BUDGET"):
        return host
    try:
        import jax
        limits = [d.memory_stats().get("bytes_limit") for d in jax.local_devices() if d.platform != "cpu"]
    except Exception:       # pragma: no cover - a backend without memory statistics
        limits = []
    limits = [x for x in limits if x]
    return min(host, sum(limits) // 2) if limits else host


def step_budget() -> int:
    """Run-steps (steps x runs) a single simulation may take: ``DYNAMICS_STEP_BUDGET`` or 10^10 (about a
    day of one CPU core at the library's measured 10^5 run-steps per second)."""
    env = os.environ.get("DYNAMICS_STEP_BUDGET")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ValueError(f"DYNAMICS_STEP_BUDGET must be a number of run-steps (e.g. 1e11), got {env!r}") from None
    return 10 ** 10


def check_steps(steps, runs=1, *, budget=None):
    """Raise :class:`ResourceError` when ``steps`` x ``runs`` exceeds the step budget (before anything runs)."""
    budget = step_budget() if budget is None else int(budget)
    if steps * runs > budget:
        shown = f"{steps:,}" if steps < 10 ** 15 else f"{float(steps):.3g}"     # never a 300-digit count
        raise ResourceError(f"steps = {shown} x {runs:,} run(s) = {float(steps) * runs:.3g} run-steps, more than the step "
                            f"budget of {budget:.3g} (set DYNAMICS_STEP_BUDGET to raise it); a larger lr covers the "
                            "same time in fewer steps, or method='flow' integrates it adaptively")
    return steps


def _fmt(n):
    for unit, size in (("TB", 2 ** 40), ("GB", 2 ** 30), ("MB", 2 ** 20), ("kB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def check_memory(what, nbytes, *, hint="", budget=None):
    """Raise :class:`ResourceError` when ``nbytes`` exceeds the budget, saying what and how to shrink it."""
    budget = memory_budget() if budget is None else int(budget)
    if nbytes > budget:
        raise ResourceError(f"{what} would need {_fmt(nbytes)}, more than the memory budget of {_fmt(budget)}"
                            + (f"; {hint}" if hint else "")
                            + " (the budget is half the physical memory; set DYNAMICS_MEMORY_BUDGET to change it)")
    return nbytes


def nbytes_of(tree, itemsize=None) -> int:
    """Bytes of the array leaves of a pytree (shapes and dtypes only; ``itemsize`` overrides the dtype)."""
    import jax
    import numpy as np
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        shape = getattr(leaf, "shape", ())
        size = int(np.prod(shape)) if shape else 1
        total += size * (itemsize or np.dtype(getattr(leaf, "dtype", np.float64)).itemsize)
    return total
