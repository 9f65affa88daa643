"""Result objects: :class:`Trajectory` (simulation or theory, one run or a batch), save and load.

Files are ``.npz`` archives written atomically (temporary file, then ``os.replace``) with a JSON
header; :func:`load` never unpickles (``allow_pickle=False``) and refuses foreign or truncated files.
The problem of every family is saved with the result and comes back on load (the problem types are
looked up in the registry of ``core.family``, no pickle).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .family import StatefulProblem, families, problem_from_state, problem_state
from .distributed import barrier, process_index
from .io import atomic_write, jsonable
from .steppers import AbstractStepper, stepper_from_dict

__all__ = ["Trajectory", "load", "FORMAT", "records_to_fields", "stack_runs"]

FORMAT = "dynamics.result/1"
_MISSING = object()


def records_to_fields(records: dict, batched: bool) -> dict:
    """Engine records, each (R, T, ...), as trajectory fields: kept whole for a batch (pass
    ``runs=R`` to the Trajectory), run 0's (T, ...) for a single run."""
    return {k: (v if batched else v[0]) for k, v in records.items()}


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A recorded or predicted learning trajectory, of one run or of a batch of runs.

    t : (T,) time (gradient-flow time lr * step unless settings["units"] says otherwise), or (R, T)
        for a batch whose runs have different times (several learning rates).
    fields : name -> array, shape (T, ...) or (R, T, ...) for a batch. Accessible as attributes:
        ``traj.modes`` (encoder strength per feature), ``traj.loss``, ...
    kind : "simulation" or "theory".   model : the family ("jepa", "mae", "byol", ...).
    method : how it was computed ("gd", "dual", "exact", ...).
    primary : the field a cross-check compares (the family's primary field).
    fixed_point : (F,) asymptote of the primary field ((R, F) for a batch), or None.
    status : 0 finished, 1 interrupted, -1 diverged (partial);  message : what happened.
    runs : the batch size R when every field has a leading runs axis, None for one run.
    reintegration : for an adaptive-flow simulation in memory, how to integrate its runs again
        (:class:`~dynamics.core.locate.Reintegration`: its initial state and context are kept, so that
        :meth:`critical_times` is located by the solver); None otherwise (not saved).
    """

    t: np.ndarray
    fields: dict
    kind: str
    model: str
    problem: object = None
    settings: dict = field(default_factory=dict)
    fixed_point: np.ndarray | None = None
    status: int = 0
    message: str = "finished"
    runs: int | None = None
    method: str = ""
    primary: str | None = None
    reintegration: object = field(default=None, repr=False, compare=False)

    def __getattr__(self, name):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or field {name!r}; "
                             f"fields: {sorted(fields)}")

    def __repr__(self):
        shapes = ", ".join(f"{k}{tuple(np.shape(v))}" for k, v in self.fields.items())
        t = np.asarray(self.t, float)
        span = f"t in [{t.min():.4g}, {t.max():.4g}]" if t.size else "t empty"
        batch = f", runs={self.runs}" if self.runs is not None else ""
        method = f"/{self.method}" if self.method else ""
        status = {0: "finished", 1: "interrupted", -1: "diverged"}.get(self.status, str(self.status))
        return (f"Trajectory({self.kind} {self.model}{method}{batch}, {t.shape[-1] if t.ndim else 0} records, "
                f"{span}, primary={self.primary_field!r}, fields: {shapes}; {status})")

    __str__ = __repr__

    @property
    def success(self) -> bool:
        return self.status == 0

    @property
    def stepper(self) -> AbstractStepper | None:
        """The stepper a simulation ran (rebuilt from ``settings["stepper"]``, also after ``load``), or
        None for a theory (and for GD with a custom optimizer, which cannot be rebuilt)."""
        return stepper_from_dict(self.settings.get("stepper")) if self.kind == "simulation" else None

    @property
    def config(self):
        """The family's configuration a simulation ran (its ``Family.config`` type, rebuilt from the settings
        record, also after ``load``), or None for a theory and where a field was an array (an init given
        as a dict of arrays, a data set: the record keeps "custom", not the arrays)."""
        family = families().get(self.model) if self.kind == "simulation" else None
        if family is None:
            return None
        values = {}
        for name in family.config.names():
            v = self.settings.get(name, _MISSING)
            if v is _MISSING or (isinstance(v, str) and v == "custom"):
                return None
            values[name] = v
        try:
            return family.config(**values)
        except (TypeError, ValueError):
            return None

    @property
    def primary_field(self) -> str:
        """The field a cross-check compares: ``primary``, else "modes" when present."""
        if self.primary is not None:
            return self.primary
        return "modes" if "modes" in self.fields else next(iter(self.fields), None)

    @property
    def batched(self) -> bool:
        """Whether the fields carry a leading runs axis (``runs``; files written before ``runs`` was
        recorded: a 3-D ``modes`` field)."""
        if self.runs is not None:
            return True
        return "modes" in self.fields and self.fields["modes"].ndim == 3

    @property
    def n_runs(self) -> int:
        """R for a batch, 1 for a single run."""
        if not self.batched:
            return 1
        return self.runs if self.runs is not None else self.fields["modes"].shape[0]

    def times(self, i=None) -> np.ndarray:
        """The (T,) times of run i (of the only run when ``i`` is None)."""
        t = np.asarray(self.t)
        if t.ndim == 2:
            if i is None:
                raise ValueError("this batch has one time grid per run: pass the run index")
            return t[i]
        return t

    def run(self, i) -> "Trajectory":
        """Run i of a batch, as an unbatched trajectory."""
        if not self.batched:
            raise ValueError("run(i) needs a batched trajectory")
        n = self.n_runs
        if not 0 <= i < n:
            raise IndexError(f"run index {i} out of range for a batch of {n} runs")
        settings = dict(self.settings)
        family = families().get(self.model)
        per_run = {"lr", "key", "init_scale", "init_scales", *(family.config.numbers() if family else ())}
        for k, v in self.settings.items():   # per-run settings (lr, keys, the configuration's numbers) pick run i
            if isinstance(v, list) and len(v) == n and k in per_run:
                settings[k] = v[i]
        prob = self.problem[i] if isinstance(self.problem, (list, tuple)) else self.problem
        fp = self.fixed_point
        if fp is not None and np.ndim(fp) == 2:
            fp = fp[i]
        return Trajectory(t=self.times(i), fields={k: v[i] for k, v in self.fields.items()}, kind=self.kind,
                          model=self.model, problem=prob, settings=settings, fixed_point=fp,
                          status=self.status, message=self.message, runs=None, method=self.method,
                          primary=self.primary,
                          reintegration=None if self.reintegration is None else self.reintegration.run(i))

    def critical_times(self, fraction=0.5, *, locate="auto"):
        """First times at which the primary field reaches ``fraction * fixed_point``; (F,) or (R, F) for a
        batch (inf: not learned, or not within the run).

        locate : "solver" -- located by the adaptive solver to its own tolerance (the runs integrated
            again with record times inside each crossing's bracket until it is below 1e-7 relative,
            :mod:`dynamics.core.locate`; a flow simulation in memory only); "records" -- read off the
            recorded curves (log-linear interpolation between records, :func:`~dynamics.core.metrics.
            hitting_times`: error ~ h^2 for a record spacing h, e.g. 1.6e-3 relative on 101 records of a
            depth-5 JEPA); "auto" (default) -- the solver where it can, else the records.
        """
        from .metrics import hitting_times
        from .validation import check_choice, check_fraction
        check_choice("locate", locate, {"auto", "solver", "records"})
        fraction = check_fraction("fraction", fraction)
        if self.fixed_point is None:
            raise ValueError(f"this {self.model} trajectory has no fixed_point to measure critical times against")
        y = self.fields[self.primary_field]
        if locate == "solver" and self.reintegration is None:
            raise ValueError("locate='solver' needs an adaptive-flow simulation in memory (this is a "
                             f"{self.kind}{'/' + self.method if self.method else ''} result"
                             f"{', loaded from a file' if self.kind == 'simulation' else ''}): use locate='records', "
                             "or simulate with method='flow'")
        if locate == "records" or self.reintegration is None or np.ndim(y) != (3 if self.batched else 2):
            return hitting_times(self.t, y, self.fixed_point, fraction)
        from .locate import locate_crossings
        key = float(fraction)
        cache = self.__dict__.setdefault("_located", {})
        if key not in cache:
            R = self.n_runs
            t = np.broadcast_to(np.asarray(self.t, float), (R, np.shape(y)[-2]))
            yy = np.asarray(y, float).reshape(R, *np.shape(y)[-2:])
            fp = np.broadcast_to(np.asarray(self.fixed_point, float), (R, yy.shape[-1]))
            cache[key] = locate_crossings(self.reintegration.x, t, yy, fp, fraction, self.reintegration)
        out = cache[key]
        return out if self.batched else out[0]

    # --------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """A JSON-able summary (settings, status, critical times at 1/2 read off the records, final values of
        the primary field)."""
        out = {"kind": self.kind, "model": self.model, "method": self.method, "status": self.status,
               "message": self.message, "primary": self.primary_field, "runs": self.runs,
               "settings": jsonable(self.settings), "n_records": int(np.shape(self.t)[-1])}
        pf = self.primary_field
        if pf in self.fields and np.shape(self.t)[-1]:
            out[f"final_{pf}"] = jsonable(self.fields[pf][..., -1, :] if self.batched else self.fields[pf][-1])
        if self.fixed_point is not None and pf in self.fields:
            out["fixed_point"] = jsonable(self.fixed_point)
            out["critical_times_half"] = jsonable(self.critical_times(0.5, locate="records"))
        if self.problem is not None and not isinstance(self.problem, (list, tuple)):
            out["problem"] = type(self.problem).__name__
            summary = self.problem.summary() if isinstance(self.problem, StatefulProblem) else {}
            if summary:
                out["problem"] = jsonable(summary)
        return out

    def save(self, path):
        """Write an ``.npz`` archive atomically; ``dynamics.load`` reads it back exactly, problem included.
        With several JAX processes only process 0 writes (the others wait for it: every process gets
        the same path back)."""
        arrays = {"t": np.asarray(self.t)}
        for k, v in self.fields.items():
            arrays[f"field/{k}"] = np.asarray(v)
        if self.fixed_point is not None:
            arrays["fixed_point"] = np.asarray(self.fixed_point)
        probs = self.problem if isinstance(self.problem, (list, tuple)) else (
            [] if self.problem is None else [self.problem])
        pscalars = []
        for i, p in enumerate(probs):
            a, s = problem_state(p)
            arrays.update({f"problem{i}/{k}": np.asarray(v) for k, v in a.items()})
            pscalars.append(s)
        meta = {"format": FORMAT, "kind": self.kind, "model": self.model, "method": self.method,
                "primary": self.primary, "status": self.status, "message": self.message,
                "settings": jsonable(self.settings), "problems": jsonable(pscalars),
                "problem_is_list": isinstance(self.problem, (list, tuple)),
                "fields": list(self.fields), "runs": self.runs}
        arrays["__meta__"] = np.asarray(json.dumps(meta))
        # several JAX processes hold the same (gathered) result: process 0 writes it, the others wait
        # until it is written (dynamics.core.distributed); the path is returned on every process
        if process_index() == 0:
            written = atomic_write(path, lambda fh: np.savez(fh, **arrays))
        barrier(f"dynamics-save:{os.fspath(path)}")
        return written if process_index() == 0 else os.path.realpath(os.fspath(path))

    def plot(self, ax=None, **kw):
        """The primary field's curves (matplotlib; imported only here)."""
        from ..plot import plot_trajectory
        return plot_trajectory(self, ax=ax, **kw)


def stack_runs(trajs, *, problem=None) -> Trajectory:
    """One batched trajectory from single-run trajectories of the same family and fields."""
    first = trajs[0]
    ts = [np.asarray(tr.t, float) for tr in trajs]
    same = all(t.shape == ts[0].shape and np.array_equal(t, ts[0]) for t in ts)
    fps = [tr.fixed_point for tr in trajs]
    fp = None if any(f is None for f in fps) else np.stack([np.asarray(f, float) for f in fps])
    settings = dict(first.settings)
    for k, v in first.settings.items():      # a number that differs between runs (e.g. lr): one per run
        vals = [tr.settings.get(k) for tr in trajs]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and any(x != v for x in vals):
            settings[k] = vals
    return Trajectory(t=ts[0] if same else np.stack(ts),
                      fields={k: np.stack([np.asarray(tr.fields[k]) for tr in trajs]) for k in first.fields},
                      kind=first.kind, model=first.model, problem=first.problem if problem is None else problem,
                      settings=settings, fixed_point=fp, status=min(tr.status for tr in trajs),
                      message=first.message, runs=len(trajs), method=first.method, primary=first.primary)


def load(path) -> Trajectory:
    """Read a file written by ``Trajectory.save``. Refuses truncated or foreign files clearly."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a file name (str or os.PathLike), got {type(path).__name__}: {path!r:.60}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path {path!r}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a plain .npy array, not an .npz archive")
        with z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, MemoryError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable dynamics result file (truncated or foreign "
                         f"archive): {type(exc).__name__}: {exc}") from None
    try:
        return _from_archive(path, data)
    except (KeyError, TypeError, AttributeError, MemoryError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a complete dynamics result file ({type(exc).__name__}: {exc})") from None


def _check_records(path, data, meta):
    """The records' meaning: t finite and non-decreasing per run, every field with t's records (and a
    batch's runs) on its leading axes.  A ValueError naming the file and the field."""
    t = np.asarray(data["t"])
    if t.ndim not in (1, 2) or not np.issubdtype(t.dtype, np.number):
        raise ValueError(f"{path}: t must be a 1-D grid (or one per run, 2-D), got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{path}: t holds non-finite times ({int(np.sum(~np.isfinite(t)))} of {t.size})")
    if t.size and np.any(np.diff(t, axis=-1) < 0):
        raise ValueError(f"{path}: t must be non-decreasing (the record times in order)")
    runs = meta.get("runs")
    T = t.shape[-1]
    for k in meta["fields"]:
        f = np.asarray(data[f"field/{k}"])
        lead = (runs, T) if runs is not None else (T,)
        if f.shape[:len(lead)] != lead:
            raise ValueError(f"{path}: field {k!r} has shape {f.shape}, but the records are {lead} "
                             f"({'runs x ' if runs is not None else ''}times): the file is inconsistent")


def _from_archive(path, data):
    if "__meta__" not in data:
        raise ValueError(f"{path} is not a dynamics result file (no __meta__ header)")
    try:
        meta = json.loads(str(data["__meta__"]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt header: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported format {meta.get('format')!r}; expected {FORMAT!r}")
    probs = []
    for i, s in enumerate(meta["problems"]):
        a = {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(f"problem{i}/")}
        try:
            probs.append(problem_from_state(a, s))
        except ValueError as exc:
            raise ValueError(f"{path}: problem {i} is not valid: {exc}") from None
    problem = probs if meta["problem_is_list"] else (probs[0] if probs else None)
    _check_records(path, data, meta)
    return Trajectory(t=data["t"], fields={k: data[f"field/{k}"] for k in meta["fields"]},
                      kind=meta["kind"], model=meta["model"], problem=problem,
                      settings=meta["settings"], fixed_point=data.get("fixed_point"),
                      status=meta["status"], message=meta["message"], runs=meta.get("runs"),
                      method=meta.get("method", ""), primary=meta.get("primary"))
