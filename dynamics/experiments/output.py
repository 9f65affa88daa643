"""One place for writing an experiment's outputs: JSON summary, figures, result files (all atomic)."""

from __future__ import annotations

import json
import os

from ..core.io import atomic_write, jsonable

__all__ = ["write_outputs"]


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
