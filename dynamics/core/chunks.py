"""The one record-chunk loop of every integrator, and what a run returns.

A run is advanced in chunks of records: the fixed-step engine (``core.engine``: optimizer or RK4 steps)
and the adaptive flow (``core.flow``: diffrax between record times) each say how to *dispatch* one
chunk (a compiled call on the devices) and how to *collect* it (bring its records to the host, check
them for divergence, count them); everything around that is written once here:

* pipelining: up to ``depth`` chunks are dispatched before the oldest is collected, so the devices do
  not wait for the host's transfers and bookkeeping (the engine uses 2, the flow 1);
* the progress bar (steps/s or records/s, ETA), one per run or shared by a caller's groups of runs;
* Ctrl-C: the chunks already dispatched are collected (they finish within one chunk's time; a second
  Ctrl-C stops at once), and the run returns status 1 with every record made so far;
* a divergence (``collect`` says stop): the run returns status -1, or raises :class:`DivergenceError`
  naming where, with the records before it in ``.partial``.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["DivergenceError", "EngineOutput", "progress_bar", "run_chunks", "finish"]


class DivergenceError(FloatingPointError):
    """A run produced a non-finite loss. ``.partial`` holds what was recorded before (or None)."""

    def __init__(self, message, partial=None, step=None):
        super().__init__(message)
        self.partial = partial
        self.step = step


@dataclass
class EngineOutput:
    """What an integrator returns for a batch of R runs.

    steps : (T,) recorded step indices (the record indices for the flow).   records : name -> (R, T, ...).
    final_params, final_aux : the last state (None if it was being handed to a chunk at an interrupt).
    status : 0 finished, 1 interrupted, -1 diverged (returned only with on_divergence="stop").
    message : what happened.   wall_time, compile_time : seconds.   extra : the integrator's own
    (devices, runs; the flow's times and solver statistics).
    """

    steps: Any
    records: dict
    final_params: Any
    final_aux: Any
    status: int = 0
    message: str = "finished"
    wall_time: float = 0.0
    compile_time: float = 0.0
    extra: dict = field(default_factory=dict)


def progress_bar(total, desc, enabled, unit="step"):
    """A tqdm bar on stderr (None when not enabled)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
                file=sys.stderr, smoothing=0.1)


def run_chunks(dispatch: Callable, collect: Callable, *, depth: int, where: Callable, total: int, desc: str,
               unit: str, progress: bool, bar=None):
    """Drive a run's chunks: the one loop of every integrator (see the module docstring).

    dispatch() -> a handle of one dispatched chunk, or None when none is left.
    collect(queue) -> (units, stop): bring ``queue[0]``'s records to the host and pop it *together with*
        its bookkeeping (so that an interrupt loses nothing and counts nothing twice); ``units`` advance
        the progress bar; ``stop`` ends the run (a divergence: the chunks in flight are dropped).
    depth : chunks dispatched before the oldest is collected (1: each is collected at once).
    where() -> where the run is, for the interrupt message ("after step 1200", "at t = 3.5").
    total, desc, unit, progress : the progress bar (its own unless ``bar``, a caller's open bar, is given).
    Returns (status, message, wall_time, compile_time): status 0 finished, 1 interrupted; a divergence
    is the caller's to report (it knows where).
    """
    own_bar = bar is None
    bar = progress_bar(total, desc, progress, unit=unit) if own_bar else bar
    queue, status, message = [], 0, "finished"
    t_start = time.perf_counter()
    compile_time = None

    def take():
        units, stop = collect(queue)
        if bar is not None and units:
            bar.update(units)
        return stop

    try:
        while True:
            tic = time.perf_counter()
            handle = dispatch()
            if handle is None:
                break
            if compile_time is None:    # tracing + compiling (the run itself is asynchronous)
                compile_time = time.perf_counter() - tic
            queue.append(handle)
            if len(queue) >= depth and take():
                queue.clear()           # the chunks after a divergence start past it
                break
        while queue:
            take()
    except KeyboardInterrupt:
        try:    # the chunks already dispatched finish within one chunk's time: keep their records too
            while queue:
                take()
        except KeyboardInterrupt:   # a second Ctrl-C: stop now
            pass
        status, message = 1, f"interrupted by the user {where()}; records up to there kept"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    finally:
        if bar is not None and own_bar:
            bar.close()
    return status, message, time.perf_counter() - t_start, compile_time or 0.0


def finish(out: EngineOutput, on_divergence: str, make_partial=None, step=None) -> EngineOutput:
    """Return ``out``, or raise :class:`DivergenceError` for a diverged run when ``on_divergence`` is
    "raise" (its ``.partial``: ``make_partial(out)``, e.g. the Trajectory of the records before it)."""
    if out.status == -1 and on_divergence == "raise":
        partial = make_partial(out) if make_partial is not None else out
        raise DivergenceError(out.message, partial=partial, step=step)
    return out
