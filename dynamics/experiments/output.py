"""One place for writing an experiment's outputs: JSON summary, figures, result files (all atomic)."""

from __future__ import annotations

import json
import os

import numpy as np

from ..core.io import atomic_write, jsonable

__all__ = ["write_outputs", "verdict_line"]


def write_outputs(out_dir, *, figures=None, summary=None, results=None, texts=None):
    """Write ``figures`` {stem: Figure} as PNG, ``summary`` as summary.json, ``results``
    {file name: Trajectory} as .npz and ``texts`` {file name: str}; returns the written paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, tr in (results or {}).items():
        paths.append(tr.save(os.path.join(out_dir, name)))
    for name, fig in (figures or {}).items():
        path = os.path.join(out_dir, f"{name}.png")
        paths.append(atomic_write(path, lambda fh, fig=fig: fig.savefig(fh, format="png", dpi=110)))
    for name, text in (texts or {}).items():
        paths.append(atomic_write(os.path.join(out_dir, name), lambda fh, text=text: fh.write(text.encode() + b"\n")))
    if summary is not None:
        paths.append(atomic_write(os.path.join(out_dir, "summary.json"),
                                  lambda fh: fh.write(json.dumps(jsonable(summary), indent=2).encode())))
    return paths


def verdict_line(name, rep) -> str:
    """One line per cross-check for the terminal and table.txt: the verdict (PASS / FAIL / INCONCLUSIVE),
    what was compared with what, the largest errors against their tolerances, and the advice if any."""
    from ..core.compare import result_label, verdict
    a, b = getattr(rep, "a", None), getattr(rep, "b", None)
    what = f" ({result_label(a)} vs {result_label(b)})" if a is not None and b is not None else ""
    line = (f"crosscheck {name}{what}: {verdict(rep.outcome)} (max error {rep.max_rel_error:.2e}, "
            f"tolerance {rep.rtol:g}")
    ce = getattr(rep, "critical_rel_error", None)
    if ce is not None and np.size(ce) and np.any(np.isfinite(ce)):
        line += f"; critical times {np.nanmax(ce):.2e}, tolerance {rep.ctol:g}"
    line += ")"
    reasons = getattr(rep, "reasons", ()) if rep.outcome != "passed" else ()
    if reasons:
        line += " -- why: " + "; ".join(reasons)
    if getattr(rep, "advice", ""):
        line += f" -- to do: {rep.advice}"
    return line
