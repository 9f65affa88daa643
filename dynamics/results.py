"""Result objects: :class:`Trajectory` (simulation or theory), :class:`CrossCheck`, save/load.

Files are ``.npz`` archives written atomically (temporary file, then ``os.replace``) with a JSON
header; :func:`load` never unpickles (``allow_pickle=False``) and refuses foreign or truncated files.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .problems import LinearProblem

__all__ = ["Trajectory", "CrossCheck", "crosscheck", "load", "FORMAT", "atomic_write", "versions",
           "records_to_fields"]

FORMAT = "dynamics.result/1"


def versions() -> dict:
    import jax

    from . import __version__
    return {"dynamics": __version__, "jax": jax.__version__, "numpy": np.__version__,
            "x64": bool(jax.config.jax_enable_x64)}


def _umask():
    try:                    # Linux: read it without changing it (other threads may be creating files)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # elsewhere reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it over ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask),
    not the private 0600 of the temporary file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else str(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x


def records_to_fields(records: dict, batched: bool) -> dict:
    """Engine records, each (R, T, ...), as trajectory fields: kept whole for a batch (pass
    ``runs=R`` to the Trajectory), run 0's (T, ...) for a single run."""
    return {k: (v if batched else v[0]) for k, v in records.items()}


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A recorded or predicted learning trajectory.

    t : (T,) time (gradient-flow time lr * step unless settings["units"] says "paper"), or (R, T)
        for a batch with several learning rates.
    fields : name -> array, shape (T, ...) or (R, T, ...) for a batch. Accessible as attributes:
        ``traj.modes`` (encoder strength per feature), ``traj.loss``, ...
    kind : "simulation" or "theory".   model : "jepa", "mae", "saxe", ...
    fixed_point : (d,) asymptote of ``modes`` (for critical times and plots), or None.
    status : 0 finished, 1 interrupted, -1 diverged (partial);  message : what happened.
    runs : the batch size R when every field has a leading runs axis, None for one run.
    """

    t: np.ndarray
    fields: dict
    kind: str
    model: str
    problem: LinearProblem | None = None
    settings: dict = field(default_factory=dict)
    fixed_point: np.ndarray | None = None
    status: int = 0
    message: str = "finished"
    runs: int | None = None

    def __getattr__(self, name):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or field {name!r}; "
                             f"fields: {sorted(fields)}")

    @property
    def success(self) -> bool:
        return self.status == 0

    @property
    def batched(self) -> bool:
        """Whether the fields carry a leading runs axis (``runs``; files written before ``runs`` was
        recorded: a 3-D ``modes`` field)."""
        if self.runs is not None:
            return True
        return "modes" in self.fields and self.fields["modes"].ndim == 3

    def run(self, i) -> "Trajectory":
        """Run i of a batch, as an unbatched trajectory."""
        if not self.batched:
            raise ValueError("run(i) needs a batched trajectory")
        n = self.runs if self.runs is not None else self.fields["modes"].shape[0]
        if not 0 <= i < n:
            raise IndexError(f"run index {i} out of range for a batch of {n} runs")
        t = self.t[i] if np.ndim(self.t) == 2 else self.t
        settings = dict(self.settings)
        if isinstance(settings.get("lr"), list):
            settings["lr"] = settings["lr"][i]
        prob = self.problem[i] if isinstance(self.problem, (list, tuple)) else self.problem
        return Trajectory(t=t, fields={k: v[i] for k, v in self.fields.items()}, kind=self.kind,
                          model=self.model, problem=prob, settings=settings,
                          fixed_point=None if self.fixed_point is None else
                          (self.fixed_point[i] if np.ndim(self.fixed_point) == 2 else self.fixed_point),
                          status=self.status, message=self.message, runs=None)

    def critical_times(self, fraction=0.5):
        """Hitting times of fraction * fixed_point, read off the recorded curves (see metrics)."""
        from .metrics import hitting_times
        if self.fixed_point is None:
            raise ValueError("this trajectory has no fixed_point to measure critical times against")
        return hitting_times(self.t, self.modes, self.fixed_point, fraction)

    # --------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """A JSON-able summary (settings, status, critical times at 1/2, final values)."""
        out = {"kind": self.kind, "model": self.model, "status": self.status, "message": self.message,
               "settings": _jsonable(self.settings), "n_records": int(np.shape(self.t)[-1])}
        if self.fixed_point is not None and "modes" in self.fields:
            out["fixed_point"] = _jsonable(self.fixed_point)
            out["critical_times_half"] = _jsonable(self.critical_times(0.5))
            out["final_modes"] = _jsonable(self.modes[..., -1, :])
        if self.problem is not None and not isinstance(self.problem, (list, tuple)):
            out["problem"] = _jsonable({"lam": self.problem.lam, "rho": self.problem.rho,
                                        "depth": self.problem.depth,
                                        "init_scale": self.problem.init_scale})
        return out

    def save(self, path):
        """Write an ``.npz`` archive atomically; ``dynamics.load`` reads it back exactly."""
        arrays = {"t": np.asarray(self.t)}
        for k, v in self.fields.items():
            arrays[f"field/{k}"] = np.asarray(v)
        if self.fixed_point is not None:
            arrays["fixed_point"] = np.asarray(self.fixed_point)
        probs = self.problem if isinstance(self.problem, (list, tuple)) else (
            [] if self.problem is None else [self.problem])
        pscalars = []
        for i, p in enumerate(probs):
            a, s = p.state()
            arrays.update({f"problem{i}/{k}": v for k, v in a.items()})
            pscalars.append(s)
        meta = {"format": FORMAT, "kind": self.kind, "model": self.model, "status": self.status,
                "message": self.message, "settings": _jsonable(self.settings),
                "problems": _jsonable(pscalars),
                "problem_is_list": isinstance(self.problem, (list, tuple)),
                "fields": list(self.fields), "runs": self.runs}
        arrays["__meta__"] = np.asarray(json.dumps(meta))
        return atomic_write(path, lambda fh: np.savez(fh, **arrays))

    def plot(self, ax=None, **kw):
        from .plot import plot_trajectory
        return plot_trajectory(self, ax=ax, **kw)


def load(path) -> Trajectory:
    """Read a file written by ``Trajectory.save``. Refuses truncated or foreign files clearly."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable dynamics result file (truncated or foreign "
                         f"archive): {exc}") from None
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
        probs.append(LinearProblem.from_state(a, s))
    problem = probs if meta["problem_is_list"] else (probs[0] if probs else None)
    return Trajectory(t=data["t"], fields={k: data[f"field/{k}"] for k in meta["fields"]},
                      kind=meta["kind"], model=meta["model"], problem=problem,
                      settings=meta["settings"], fixed_point=data.get("fixed_point"),
                      status=meta["status"], message=meta["message"], runs=meta.get("runs"))


@dataclass(frozen=True)
class CrossCheck:
    """Agreement of two trajectories (typically simulation ``a`` against theory ``b``).

    rel_error : (T, d) |a - b| / |b| on the modes;  max_rel_error : its maximum (per feature: ``per_feature``)
    critical_a, critical_b : (d,) hitting times of ``fraction`` of the fixed point; critical_rel_error.
    passed : max_rel_error <= rtol and every finite critical-time error <= ctol, with inf matching inf.
    """

    t: np.ndarray
    a: Trajectory
    b: Trajectory
    rel_error: np.ndarray
    max_rel_error: float
    per_feature: np.ndarray
    fraction: float
    critical_a: np.ndarray
    critical_b: np.ndarray
    critical_rel_error: np.ndarray
    rtol: float
    ctol: float
    passed: bool

    def summary(self) -> str:
        lines = [f"crosscheck {self.a.kind}/{self.a.model} vs {self.b.kind}/{self.b.model}: "
                 f"{'PASS' if self.passed else 'FAIL'}",
                 f"  max relative error of modes {self.max_rel_error:.3e} (tolerance {self.rtol:g})",
                 f"  critical times at {self.fraction:g} of the fixed point (tolerance {self.ctol:g}):"]
        for i, (ca, cb, e) in enumerate(zip(self.critical_a, self.critical_b, self.critical_rel_error)):
            lines.append(f"    feature {i}: {ca:.6g} vs {cb:.6g}  rel. error {e:.3e}")
        return "\n".join(lines)

    __str__ = summary

    def to_dict(self) -> dict:
        return _jsonable({"passed": self.passed, "max_rel_error": self.max_rel_error,
                          "per_feature": self.per_feature, "fraction": self.fraction,
                          "critical_a": self.critical_a, "critical_b": self.critical_b,
                          "critical_rel_error": self.critical_rel_error,
                          "rtol": self.rtol, "ctol": self.ctol})

    def plot(self, ax=None):
        from .plot import plot_crosscheck
        return plot_crosscheck(self, ax=ax)


def crosscheck(a: Trajectory, b: Trajectory, *, fraction=0.5, rtol=1e-2, ctol=1e-2) -> CrossCheck:
    """Compare trajectory ``a`` with reference ``b`` (e.g. simulation vs theory) on b's time grid.

    If ``b`` is a :class:`~dynamics.hadamard.Stages` (rank-growth families), this returns
    ``crosscheck_stages(a, b)``: errors at the middle of each plateau and at the jumps.

    The mode curves are compared pointwise, rel_error = |a - b| / |b|, at every time of ``a``
    (``b`` must have been evaluated on the same times: ``solve_jepa(problem, times=sim.t)``).
    Critical times are the hitting times of ``fraction`` of each trajectory's fixed point, read off
    both recorded curves the same way (metrics.hitting_times).
    """
    from .hadamard import Stages, crosscheck_stages
    from .metrics import hitting_times
    from .validation import check_fraction
    if isinstance(b, Stages):
        return crosscheck_stages(a, b)
    fraction = check_fraction("fraction", fraction)
    import warnings
    for traj in (a, b):
        if traj.settings.get("dtype") == "float32" and rtol < 1e-5:
            warnings.warn(f"rtol={rtol:g} is beyond float32's accuracy (~1e-6 relative at best) for the "
                          f"{traj.kind} run; simulate with dtype=float64", RuntimeWarning, stacklevel=2)
    if a.batched or b.batched:
        raise ValueError("crosscheck compares single runs: pick one with traj.run(i)")
    ta, tb = np.asarray(a.t, float), np.asarray(b.t, float)
    if ta.shape != tb.shape or not np.allclose(ta, tb, rtol=1e-12, atol=0):
        raise ValueError(f"a and b must share their time grid (shapes {ta.shape}, {tb.shape}); "
                         "evaluate the theory at times=a.t")
    ma, mb = np.asarray(a.modes, float), np.asarray(b.modes, float)
    if ma.shape != mb.shape:
        raise ValueError(f"a.modes and b.modes differ in shape: {ma.shape} vs {mb.shape}")
    denom = np.maximum(np.abs(mb), np.finfo(float).tiny)
    rel = np.abs(ma - mb) / denom
    fp_a = a.fixed_point if a.fixed_point is not None else b.fixed_point
    fp_b = b.fixed_point if b.fixed_point is not None else a.fixed_point
    if fp_a is None:
        raise ValueError("neither trajectory has a fixed_point to measure critical times against")
    ca = hitting_times(ta, ma, fp_a, fraction)
    cb = hitting_times(tb, mb, fp_b, fraction)
    same = ca == cb                     # both inf (never learned) or both 0 (already past the threshold)
    with np.errstate(invalid="ignore", divide="ignore"):
        cerr = np.where(same, 0.0, np.abs(ca - cb) / np.abs(cb))
    cerr = np.where(np.isnan(cerr), np.inf, cerr)
    max_rel = float(rel.max()) if rel.size else 0.0
    passed = bool(np.isfinite(max_rel) and max_rel <= rtol and np.all(cerr <= ctol))
    return CrossCheck(t=ta, a=a, b=b, rel_error=rel, max_rel_error=max_rel,
                      per_feature=rel.max(axis=0), fraction=fraction, critical_a=ca, critical_b=cb,
                      critical_rel_error=cerr, rtol=float(rtol), ctol=float(ctol), passed=passed)
