"""Measurements on trajectories: hitting (critical) times, singular spectra, ranks."""

from __future__ import annotations

import numpy as np

from .validation import check_fraction

__all__ = ["hitting_times", "crossing_time", "singular_values", "stable_rank", "numerical_rank"]


def hitting_times(t, modes, fixed_point, fraction=0.5):
    """First time each mode reaches ``fraction * fixed_point``, read off recorded curves.

    t : (T,) or (R, T);  modes : (T, d) or (R, T, d);  fixed_point : (d,) or (R, d).
    Between records the crossing is interpolated linearly in log(mode) (the growth before a jump is
    close to exponential, so this is exact for an exponential and second-order accurate otherwise).
    A mode whose fixed point is not above its initial value is never learned: inf. A mode that never
    reaches the threshold within the record: inf. A mode already above it at t[0]: t[0].
    """
    fraction = check_fraction("fraction", fraction)
    t = np.asarray(t, float)
    modes = np.asarray(modes, float)
    fp = np.asarray(fixed_point, float)
    if modes.ndim == 3:
        R = modes.shape[0]
        tt = t if t.ndim == 2 else np.broadcast_to(t, (R, t.size))
        ff = fp if fp.ndim == 2 else np.broadcast_to(fp, (R, fp.size))
        return np.stack([hitting_times(tt[i], modes[i], ff[i], fraction) for i in range(R)])
    if modes.ndim != 2 or t.shape != (modes.shape[0],):
        raise ValueError(f"modes must have shape (T, d) with T = len(t); got {modes.shape} and t {t.shape}")
    theta = fraction * fp
    out = np.full(modes.shape[1], np.inf)
    for i in range(modes.shape[1]):
        m = modes[:, i]
        if not fp[i] > m[0]:
            continue
        above = np.nonzero(m >= theta[i])[0]
        if above.size == 0:
            continue
        j = above[0]
        if j == 0:
            out[i] = t[0]
            continue
        out[i] = crossing_time(t[j - 1], t[j], m[j - 1], m[j], theta[i])
    return out


def crossing_time(t0, t1, y0, y1, theta):
    """Where the level theta is crossed between (t0, y0) and (t1, y1): log-linear where both values are
    positive (exact for exponential growth), linear otherwise."""
    if y0 > 0 and y1 > 0 and theta > 0:
        w = (np.log(theta) - np.log(y0)) / (np.log(y1) - np.log(y0))
    else:
        w = (theta - y0) / (y1 - y0)
    return t0 + w * (t1 - t0)


def singular_values(M):
    """Singular values of M (..., m, n), descending."""
    return np.linalg.svd(np.asarray(M, float), compute_uv=False)


def stable_rank(M):
    """||M||_F^2 / ||M||_2^2 (0 for M = 0)."""
    s = singular_values(M)
    top = s[..., 0] ** 2
    return np.where(top > 0, (s ** 2).sum(-1) / np.where(top > 0, top, 1.0), 0.0)


def numerical_rank(M, rtol=1e-6):
    """Number of singular values above rtol * the largest."""
    s = singular_values(M)
    return (s > rtol * s[..., :1]).sum(-1)
