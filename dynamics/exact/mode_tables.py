"""A tabulated inverse of the mode clock: ln psi as a function of the absolute clock I, for the fast
evaluation of exact per-mode solutions on large grids (10^4 features x 10^3 times in a few tens of ms).

On the learning branch (0 < psi < 1) the flow d psi / d tau = psi^k (1 - psi^n) of ``mode_integrals``
has the conserved "clock"

    I(psi(tau)) = I(psi0) + tau,                                                      (1)

with I the closed-form antiderivative of ``mode_integrals`` (theory/jepa.md, sec. 3).  I is strictly
increasing from -inf (psi -> 0) to +inf (psi -> 1), so psi = G(I(psi0) + tau) with one universal
function G per (k, n), independent of the feature.  This module tabulates ln G once per (k, n) and
evaluates it with no root finding:

* the real line of clock values c is cut into segments: one centre segment |c| <= 2^-6, then 16
  segments per binade [2^e, 2^(e+1)) of |c| on each side, up to |c| = 2^1024 on the negative side
  (every finite clock value) and up to the clock value of z = ln(psi/(1-psi)) = 40 on the positive side,
  beyond which psi = 1 to float64 precision (1 - psi < e^-40);
* the segment of c is read off the bits of |c| (exponent and top 4 mantissa bits), so locating it is
  integer arithmetic, and the segments are relatively narrow everywhere (width <= |c| / 16), which
  keeps the power-law tail psi ~ ((k-1)|c|)^(-1/(k-1)) (k >= 2) and the exponential tail
  ln psi ~ c (k = 1) equally smooth in the local coordinate;
* on each segment ln psi is a Chebyshev series of degree ``DEGREE`` interpolating exact values at the
  Chebyshev nodes, evaluated with Clenshaw's recurrence (stable: error ~ rounding of |ln psi|).

The node values are exact: z solves I(z) = c by bisection on the float64 bit pattern of z (64 halvings
reach the root to the last bit, whatever the magnitude of z).  ``tests/test_mode_tables.py`` checks the
table against the safeguarded Newton inverse of ``mode_integrals.psi_at`` (an independent method) to a
relative error of 1e-12 in psi over every regime.  Tabulating ln psi (not psi) keeps the relative error
of psi uniform, from psi ~ 1e-300 up to 1.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..core.cache import cached_arrays
from . import mode_integrals
from .mode_integrals import integral_parts

__all__ = ["clock", "ClockTable", "clock_table", "ln_psi_of_clock"]

DEGREE = 9                          # Chebyshev degree per segment
_SUB_BITS = 4                       # 2^4 segments per binade
_SHIFT = 52 - _SUB_BITS             # bits of |c| below the segment key
_E_MIN = -6                         # centre segment: |c| <= 2^_E_MIN
_E_MAX_NEG = 1024                   # negative side: every finite clock value
_Z_SATURATE = 40.0                  # psi = 1 beyond the clock value of z = 40


def _lnpsi(z):
    """ln psi on the learning branch, z = ln(psi / (1 - psi))."""
    return -jnp.logaddexp(0.0, -z)


def clock(z, k: int, n: int):
    """The absolute clock I(psi) of (1) at z = ln(psi/(1-psi)), learning branch (closed form of
    ``mode_integrals``: power terms J_m, m = k (mod n), plus the roots-of-unity logarithms)."""
    lnpsi = _lnpsi(z)
    total = integral_parts(lnpsi, z, k, n)
    for m in range(1, k + 1):
        if (k - m) % n:
            continue
        total = total + (lnpsi if m == 1 else -jnp.exp((1 - m) * lnpsi) / (m - 1))
    return total


def _key(a):
    """Segment key of |c| = a >= 0: its float64 bits above the top _SUB_BITS mantissa bits."""
    return jax.lax.shift_right_logical(jax.lax.bitcast_convert_type(a, jnp.int64), jnp.int64(_SHIFT))


def _from_key(key):
    return jax.lax.bitcast_convert_type(jax.lax.shift_left(key, jnp.int64(_SHIFT)), jnp.float64)


def _ordered(z):
    """A monotone map of float64 onto int64 (for bisection on the bit pattern)."""
    b = jax.lax.bitcast_convert_type(z, jnp.int64)
    return jnp.where(b < 0, jnp.int64(-(2 ** 63)) - b, b)


def _unordered(i):
    b = jnp.where(i < 0, jnp.int64(-(2 ** 63)) - i, i)
    return jax.lax.bitcast_convert_type(b, jnp.float64)


@functools.partial(jax.jit, static_argnames=("k", "n"))
def _solve_nodes(c, k: int, n: int):
    """z with I(z) = c, to the last bit: bisection on ordered float64 bits over [-max, 1e6]."""
    lo = jnp.full(c.shape, _ordered(jnp.float64(-np.finfo(np.float64).max)))
    hi = jnp.full(c.shape, _ordered(jnp.float64(1e6)))

    def body(_, state):
        lo, hi = state
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)     # no overflow
        below = clock(_unordered(mid), k, n) < c
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 66, body, (lo, hi))
    # the two neighbours straddle the root; take the one with the smaller residual
    zl, zh = _unordered(lo), _unordered(hi)
    rl, rh = jnp.abs(clock(zl, k, n) - c), jnp.abs(clock(zh, k, n) - c)
    return jnp.where(rl <= rh, zl, zh)


_SOURCES = (__file__, mode_integrals.__file__)   # an on-disk table is used only if these are unchanged


def _build(k: int, n: int) -> dict:
    """The table's arrays: Chebyshev coefficients per segment (nodes solved to the last bit) and its
    layout (``n_neg``, ``n_pos``, ``c_top``, ``key0``)."""
    c_sat = float(clock(jnp.float64(_Z_SATURATE), k, n))
    e_pos = max(_E_MIN + 1, math.ceil(math.log2(max(c_sat, 2.0 ** _E_MIN))))
    per = 2 ** _SUB_BITS
    n_neg = (_E_MAX_NEG - _E_MIN) * per
    n_pos = (e_pos - _E_MIN) * per
    key0 = np.int64(np.array(2.0 ** _E_MIN).view(np.int64) >> _SHIFT)
    keys_neg = key0 + np.arange(n_neg, dtype=np.int64)
    keys_pos = key0 + np.arange(n_pos, dtype=np.int64)
    lo = np.concatenate([[0.0], (keys_neg << _SHIFT).view(np.float64), (keys_pos << _SHIFT).view(np.float64)])
    hi = np.concatenate([[2.0 ** _E_MIN], ((keys_neg + 1) << _SHIFT).view(np.float64),
                         ((keys_pos + 1) << _SHIFT).view(np.float64)])
    hi[1 + n_neg - 1] = np.finfo(np.float64).max   # the last binade ends at the largest float
    sign = np.concatenate([[1.0], -np.ones(n_neg), np.ones(n_pos)])
    nodes = np.cos(np.pi * (np.arange(DEGREE + 1) + 0.5) / (DEGREE + 1))     # Chebyshev points
    half = 0.5 * (hi - lo)
    mid = lo + half
    # the centre row spans [-2^E_MIN, 2^E_MIN]: local x = c / 2^E_MIN
    a = mid[:, None] + half[:, None] * nodes[None, :]
    a[0] = 2.0 ** _E_MIN * nodes
    c = sign[:, None] * a
    z = np.asarray(_solve_nodes(jnp.asarray(c.ravel()), k=k, n=n)).reshape(c.shape)
    vals = np.asarray(_lnpsi(jnp.asarray(z)))
    # interpolating Chebyshev coefficients: c_j = (2 - [j = 0]) / N sum_i f(x_i) T_j(x_i)
    N = DEGREE + 1
    T = np.cos(np.outer(np.arange(N), np.pi * (np.arange(N) + 0.5) / N))   # T_j(x_i)
    coef = vals @ T.T * (2.0 / N)
    coef[:, 0] *= 0.5
    return {"coef": coef, "n_neg": np.int64(n_neg), "n_pos": np.int64(n_pos), "c_top": np.float64(2.0 ** e_pos),
            "key0": np.int64(key0)}


class ClockTable:
    """Chebyshev coefficients of ln psi(c) per segment; rows: centre, negative binades, positive ones.

    ``coef`` has shape (rows, DEGREE + 1); ``n_neg`` and ``n_pos`` count the segments on each side and
    ``c_top`` is the clock value from which psi = 1.  Built once per (k, n) and process, and kept on
    disk when the cache is on (``core.cache.cached_arrays``: keyed by this module's and
    ``mode_integrals``' source, verified on load).
    """

    def __init__(self, k: int, n: int):
        if k < 1 or n < 1:
            raise ValueError(f"clock tables need k >= 1 and n >= 1, got k={k}, n={n}")
        self.k, self.n = k, n
        t = cached_arrays("clock", {"k": k, "n": n}, lambda: _build(k, n), sources=_SOURCES)
        self.coef = t["coef"]
        self.n_neg, self.n_pos = int(t["n_neg"]), int(t["n_pos"])
        self.c_top, self.key0 = float(t["c_top"]), int(t["key0"])

    def __call__(self, c):
        """ln psi at clock values ``c`` (any shape, jax or numpy float64)."""
        return ln_psi_of_clock(jnp.asarray(c, dtype=jnp.float64), jnp.asarray(self.coef),
                               key0=self.key0, n_neg=self.n_neg, c_top=self.c_top)


@functools.lru_cache(maxsize=32)
def clock_table(k: int, n: int) -> ClockTable:
    """The (cached) table of ln psi(c) for the flow with exponents (k, n)."""
    return ClockTable(k, n)


def ln_psi_of_clock(c, coef, *, key0: int, n_neg: int, c_top: float):
    """Evaluate the table (traceable; no control flow): ln psi at clock values c."""
    a = jnp.abs(c)
    centre = a <= 2.0 ** _E_MIN
    key = _key(a)
    lo = _from_key(key)
    width = _from_key(key + 1) - lo
    x_bin = (a - lo) * (2.0 / width) - 1.0
    row_bin = 1 + (key - key0) + jnp.where(c < 0, 0, n_neg)
    row = jnp.where(centre, 0, jnp.clip(row_bin, 0, coef.shape[0] - 1))
    x = jnp.where(centre, c * 2.0 ** (-_E_MIN), x_bin)
    # one gather per coefficient column (XLA fuses these into the elementwise loop; a row gather of
    # shape (..., DEGREE + 1) is materialised and measured ~1.5x slower)
    cols = [jnp.take(coef[:, j], row, mode="clip") for j in range(DEGREE + 1)]
    b1 = jnp.zeros_like(x)
    b2 = jnp.zeros_like(x)
    two_x = 2.0 * x
    for j in range(DEGREE, 0, -1):                   # Clenshaw
        b1, b2 = cols[j] + two_x * b1 - b2, b1
    val = cols[0] + x * b1 - b2
    return jnp.where(c >= c_top, 0.0, val)
