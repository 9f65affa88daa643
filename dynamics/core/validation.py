"""Input checks shared by every public function: each error names the argument and what was expected."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_array", "check_positive", "check_int", "check_fraction", "check_choice",
    "check_symmetric_pd",
]


def check_array(name, value, *, ndim=None, shape=None, finite=True, dtype=float):
    """Convert ``value`` to an array and check its rank, shape and finiteness (booleans refused: a
    True where a number belongs is a mistake, not a 1.0)."""
    if isinstance(value, (bool, np.bool_)) or np.asarray(value).dtype == np.bool_:
        raise TypeError(f"{name} must be a numeric array, got a boolean {value!r}")
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}: {exc}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {arr}")
    return arr


def check_instance(name, value, types, what=None):
    """``value`` must be an instance of ``types`` (a class or a tuple of classes): a TypeError naming the
    argument, what was expected and what was received otherwise."""
    if not isinstance(value, types):
        names = what or " or ".join(("an " if t.__name__[0] in "AEIOU" else "a ") + t.__name__
                                    for t in (types if isinstance(types, tuple) else (types,)))
        raise TypeError(f"{name} must be {names}, got {type(value).__name__}: {value!r:.80}")
    return value


def check_per_mode(name, value, n, *, positive=False, strict=False):
    """A scalar (broadcast) or n values, one per mode: finite (and >= 0 / > 0 when ``positive``)."""
    arr = check_array(name, value)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or hold one value per mode (n = {n}), got shape {arr.shape}")
    if positive and (np.any(arr <= 0) if strict else np.any(arr < 0)):
        raise ValueError(f"{name} must be {'>' if strict else '>='} 0, got {arr}")
    return arr.copy()


def check_positive(name, value, *, strict=True, upper=None, upper_strict=True):
    """A finite real scalar > 0 (or >= 0 with strict=False), optionally below ``upper``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got the boolean {value!r}")
    if not isinstance(value, numbers.Real):
        try:
            value = float(np.asarray(value).item())
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number, got {value!r}") from None
    value = float(value)
    hi = "inf" if upper is None else f"{upper:g}"
    rng = f"{'(' if strict else '['}0, {hi}{')' if upper is None or upper_strict else ']'}"
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, in {rng}; got {value}")
    if (strict and value <= 0) or (not strict and value < 0):
        raise ValueError(f"{name} must be in {rng}; got {value}")
    if upper is not None and ((upper_strict and value >= upper) or value > upper):
        raise ValueError(f"{name} must be in {rng}; got {value}")
    return value


#: the largest integer argument accepted (step counts, sizes): beyond it int64 step indices overflow
MAX_INT = 2 ** 62


def check_int(name, value, *, minimum=None, maximum=MAX_INT):
    """An integer (bool rejected) >= minimum and <= maximum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            raise TypeError(f"{name} must be an integer, got the float {value!r}; pass int({value!r})")
        raise TypeError(f"{name} must be an integer{'' if minimum is None else f' >= {minimum}'}, "
                        f"got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum:,}, got {value:,}")
    return value


def check_fraction(name, value):
    """A scalar strictly inside (0, 1)."""
    return check_positive(name, value, upper=1.0)


def check_choice(name, value, choices):
    """One of ``choices`` (an unhashable value, e.g. a list, is a TypeError naming the argument)."""
    try:
        ok = value in choices
    except TypeError:
        raise TypeError(f"{name} must be one of {sorted(map(str, choices))}, got a {type(value).__name__}: "
                        f"{value!r}") from None
    if not ok:
        raise ValueError(f"{name} must be one of {sorted(map(str, choices))}, got {value!r}")
    return value


def check_broadcast(**arrays):
    """The common shape of arrays that are combined elementwise (a ValueError naming them and their shapes
    where they do not broadcast)."""
    try:
        return np.broadcast_shapes(*(np.shape(a) for a in arrays.values()))
    except ValueError:
        raise ValueError(" and ".join(f"{k} (shape {np.shape(a)})" for k, a in arrays.items())
                         + " do not broadcast together: give scalars or arrays of one shape") from None


def check_bool(name, value):
    """True or False (numpy's booleans and the integers 0 and 1 too), as a Python bool."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r:.60}")


def check_symmetric_pd(name, mat, *, tol=1e-10, semi=False):
    """Check that ``mat`` is a finite symmetric positive (semi-)definite square matrix."""
    mat = check_array(name, mat, ndim=2)
    if mat.shape[0] != mat.shape[1]:
        raise ValueError(f"{name} must be square, got shape {mat.shape}")
    scale = max(1.0, float(np.max(np.abs(mat))))
    asym = float(np.max(np.abs(mat - mat.T))) if mat.size else 0.0
    if asym > tol * scale:
        raise ValueError(f"{name} must be symmetric; max |{name} - {name}^T| = {asym:.3g}")
    eig = np.linalg.eigvalsh(0.5 * (mat + mat.T))
    lo = float(eig.min()) if eig.size else 1.0
    if semi and lo < -tol * scale:
        raise ValueError(f"{name} must be positive semi-definite; smallest eigenvalue {lo:.3g}")
    if not semi and lo <= tol * scale:
        raise ValueError(f"{name} must be positive definite; smallest eigenvalue {lo:.3g}")
    return mat
