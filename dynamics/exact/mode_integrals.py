"""Exact time integrals of the one-dimensional mode ODEs shared by JEPA, MAE and Saxe.

Every per-mode flow in this library reduces, after balancing and rescaling, to

    d psi / d tau = psi^k (1 - psi^n),        tau = t / pref,                   (1)

with ``psi`` the mode divided by its fixed point (psi -> 1) and integers ``k >= 0``, ``n >= 1``:

====================  =====  =======  ==================================
family                 k      n        scale (psi = x / scale)
====================  =====  =======  ==================================
JEPA, depth L          2L     1        v / rho
MAE, depth L           L      L + 1    v / rho^(1/(L+1))
Saxe regression, L     L - 1  L        a / rho^(1/L)
====================  =====  =======  ==================================

The time to go from psi0 to psi is tau = I(psi) - I(psi0) with the closed form (theory/jepa.md, sec. 3)

    I(psi) = sum_{1 <= m <= k, m = k (mod n)} J_m(psi) - (1/n) sum_{j=0}^{n-1} w_j^(k-1) ln(1 - w_j psi),

    J_1 = ln psi,  J_m = psi^(1-m) / (1-m) (m >= 2),   w_j = exp(2 pi i j / n).

It is evaluated in the coordinate z = ln(psi / |1 - psi|), which maps the learning branch
psi in (0, 1) and the shrinking branch psi in (1, inf) each onto the real line with z -> +inf at the
fixed point, so that neither the approach to psi = 1 nor tiny initial values lose precision:
psi = 1 / (1 + s e^(-z)) with s = +1 (learning) or s = -1 (shrinking).

The inverse (psi at a given time) is a vectorised safeguarded Newton iteration on z.  dI/dz =
psi^(1-k) / sum_{i<n} psi^i is monotone in psi, which gives a guaranteed bracket.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ln_psi_from_z", "z_from_psi", "elapsed", "elapsed_jax", "elapsed_between", "psi_at",
           "psi_at_jax"]


def ln_psi_from_z(z, sign):
    """ln psi for z = ln(psi/|1-psi|); ``sign`` = +1 on the learning branch, -1 on the shrinking one."""
    learning = -jnp.logaddexp(0.0, -z)
    # on the shrinking branch z > 0; guard the unused branch of the where against log(0)
    zs = jnp.where(sign < 0, jnp.maximum(z, 1e-300), 1.0)
    shrinking = -jnp.log(-jnp.expm1(-zs))
    return jnp.where(sign < 0, shrinking, learning)


def z_from_psi(psi):
    """z = ln(psi / |1 - psi|) and the branch sign; psi = 1 gives z = +inf."""
    psi = jnp.asarray(psi)
    sign = jnp.where(psi > 1.0, -1.0, 1.0)
    z = jnp.log(psi) - jnp.log(jnp.abs(1.0 - psi))
    return z, sign


def integral_parts(lnpsi, z, k: int, n: int):
    """(poly, log) parts of I at psi = exp(lnpsi); the j = 0 logarithm uses ln|1-psi| = ln psi - z."""
    psi = jnp.exp(lnpsi)
    log_part = -(lnpsi - z) / n
    for j in range(1, n):
        w = complex(math.cos(2 * math.pi * j / n), math.sin(2 * math.pi * j / n))
        log_part = log_part - jnp.real(w ** (k - 1) * jnp.log(1.0 - w * psi)) / n
    return log_part


def elapsed_between(lnpsi0, z0, lnpsi, z, k: int, n: int):
    """tau = I(psi) - I(psi0) in the rescaled time of equation (1), computed without cancellation.

    The power terms are written as psi0^(1-m) * (1 - (psi0/psi)^(m-1)) / (m-1) with expm1, so that
    a tiny psi0 (init 1e-8 at depth 10, say) costs no precision.
    """
    total = integral_parts(lnpsi, z, k, n) - integral_parts(lnpsi0, z0, k, n)
    ms = [m for m in range(1, k + 1) if (k - m) % n == 0]
    if 1 in ms:
        total = total + (lnpsi - lnpsi0)
    powers = [m for m in ms if m >= 2]
    if powers:
        # psi0^(1-m) (1 - r^(m-1)) / (m-1) with r = psi0/psi: one expm1 gives e = 1 - r exactly, and
        # 1 - r^j = e (1 + r + ... + r^(j-1)) has no cancellation; psi0^(1-m) = q^(m-1), q = 1/psi0.
        lnr = lnpsi0 - lnpsi
        e = -jnp.expm1(lnr)
        r = jnp.exp(lnr)
        q = jnp.exp(-lnpsi0)
        geo = jnp.ones_like(r)          # 1 + r + ... + r^(j-1)
        rj = jnp.ones_like(r)
        qj = jnp.ones_like(r)
        acc = 0.0
        for j in range(1, max(powers)):
            qj = qj * q
            if j + 1 in powers:
                acc = acc + qj * geo / j
            rj = rj * r
            geo = geo + rj
        total = total + e * acc
    return total


def elapsed(psi0, psi, k: int, n: int):
    """tau to travel from psi0 to psi along (1); +inf when psi is not reached (other branch, or past 1)."""
    return _bucketed(elapsed_jax, psi0, psi, k=k, n=n)


@functools.partial(jax.jit, static_argnames=("k", "n"))
def elapsed_jax(psi0, psi, k: int, n: int):
    """Jitted :func:`elapsed` (any shapes; recompiles per shape)."""
    psi0 = jnp.asarray(psi0, dtype=float)
    psi = jnp.asarray(psi, dtype=float)
    z0, s0 = z_from_psi(psi0)
    z, s = z_from_psi(psi)
    reachable = (s0 == s) & (z >= z0) & jnp.isfinite(z)
    tau = elapsed_between(ln_psi_from_z(jnp.where(jnp.isfinite(z0), z0, 0.0), s0), z0,
                          ln_psi_from_z(jnp.where(jnp.isfinite(z), z, 0.0), s), z, k, n)
    return jnp.where(reachable, tau, jnp.inf)


def _dI_dz(lnpsi, k: int, n: int):
    denom = sum(jnp.exp(i * lnpsi) for i in range(n))
    return jnp.exp((1 - k) * lnpsi) / denom


def _bucketed(fn, a, b, **static):
    """Call a jitted elementwise fn on flattened inputs padded to a power-of-two length, so that
    calls with different shapes share a handful of compiled programs."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    shape, size = a.shape, a.size
    m = max(64, 1 << int(np.ceil(np.log2(max(size, 1)))))
    pa = np.full(m, 0.5)
    pb = np.full(m, 0.5)
    pa[:size], pb[:size] = a.ravel(), b.ravel()
    out = fn(pa, pb, **static)
    if isinstance(out, tuple):
        return tuple(np.asarray(o)[:size].reshape(shape) for o in out)
    return np.asarray(out)[:size].reshape(shape)


def _left_start(psi0, lnpsi0, z0, tau, k, n):
    """A starting point left of the root on the learning branch, close to it in both regimes, so that
    the monotone Newton iteration needs a few steps instead of ~1/k per unit of z.

    Early (psi << 1): the integrand lies between psi^-k and psi^-k / (1 - psi_g^n), so the root lies
    between the two "blow-up" solutions psi = psi0 (1 - (k-1) c tau psi0^(k-1))^(-1/(k-1)) with c = 1
    (psi_g, right of the root) and c = 1 - psi_g^n (left of it). Late (past psi = 1/2): dI/dz is
    decreasing, so z >= (tau - tau_half) / dI/dz(0) is a lower bound.
    """
    if k < 2:
        return z0
    half_z = jnp.zeros_like(z0)
    ln_half = jnp.full_like(z0, -np.log(2.0))
    tau_half = elapsed_between(lnpsi0, z0, ln_half, half_z, k, n)
    late = (psi0 < 0.5) & (tau > tau_half)
    z_late = (tau - tau_half) / _dI_dz(ln_half, k, n)
    ln_a = np.log(k - 1.0) + jnp.log(jnp.maximum(tau, 1e-300)) + (k - 1) * lnpsi0
    a = jnp.exp(jnp.minimum(ln_a, 0.0))
    ln_g = lnpsi0 - jnp.log1p(-jnp.minimum(a, 1.0 - 1e-16)) / (k - 1)
    a_low = a * (1.0 - jnp.exp(n * jnp.minimum(ln_g, 0.0)))
    ln_low = lnpsi0 - jnp.log1p(-jnp.minimum(a_low, 1.0 - 1e-16)) / (k - 1)
    ln_low = jnp.minimum(ln_low, -1e-12)
    z_early = ln_low - jnp.log(-jnp.expm1(ln_low))
    early_ok = (a < 1.0) & (ln_g < 0.0)
    return jnp.where(late, jnp.maximum(z_late, z0), jnp.where(early_ok, jnp.maximum(z_early, z0), z0))


def psi_at(psi0, tau, k: int, n: int, *, max_iter: int = 200):
    """Invert tau = I(psi) - I(psi0): psi after rescaled time tau >= 0 (broadcasts over both).

    Returns numpy arrays ``(psi, z, sign)``; see :func:`psi_at_jax` for the method.
    """
    return _bucketed(psi_at_jax, psi0, tau, k=k, n=n, max_iter=max_iter)


@functools.partial(jax.jit, static_argnames=("k", "n", "max_iter"))
def psi_at_jax(psi0, tau, k: int, n: int, *, max_iter: int = 200):
    """Invert tau = I(psi) - I(psi0): psi after rescaled time tau >= 0 (broadcasts over both).

    Returns ``(psi, z, sign)``.  Safeguarded Newton on z within the bracket
    [z0, z0 + tau / min(dI/dz(z0), 1/n)], valid because dI/dz is monotone in psi on each branch.
    psi0 = 1 stays at 1 and psi0 <= 0 is rejected by the callers.
    """
    psi0, tau = jnp.broadcast_arrays(jnp.asarray(psi0, dtype=float), jnp.asarray(tau, dtype=float))
    at_fixed = psi0 == 1.0
    z0, sign = z_from_psi(jnp.where(at_fixed, 0.5, psi0))
    lnpsi0 = ln_psi_from_z(z0, sign)
    slope0 = _dI_dz(lnpsi0, k, n)
    lo = z0
    hi = z0 + tau / jnp.minimum(slope0, 1.0 / n)
    hi = jnp.where(jnp.isfinite(hi), hi, jnp.finfo(float).max)

    def residual(z):
        lnpsi = ln_psi_from_z(z, sign)
        return elapsed_between(lnpsi0, z0, lnpsi, z, k, n) - tau, _dI_dz(lnpsi, k, n)

    # start from the side where Newton is monotone: the learning branch is concave in z (start left
    # of the root), the shrinking branch convex (start at hi)
    z_start = jnp.where(sign > 0, _left_start(psi0, lnpsi0, z0, tau, k, n), hi)
    z_start = jnp.clip(z_start, lo, hi)

    def body(state):
        z, lo, hi, it, _ = state
        g, dg = residual(z)
        lo = jnp.where(g < 0, z, lo)
        hi = jnp.where(g >= 0, z, hi)
        cand = z - g / dg
        ok = (cand >= lo) & (cand <= hi) & jnp.isfinite(cand)   # inclusive: a converged step lands on lo
        new = jnp.where(ok, cand, 0.5 * (lo + hi))
        # converged when the step is at rounding level, or the residual is (the residual of tau
        # carries absolute rounding ~1e-16 tau, so a 1e-15 step criterion alone can stall)
        done = (jnp.abs(new - z) <= 1e-13 * jnp.maximum(1.0, jnp.abs(z))) | (jnp.abs(g) <= 4e-16 * jnp.maximum(1.0, tau))
        return new, lo, hi, it + 1, jnp.all(done | (tau == 0))

    def cond(state):
        return (state[3] < max_iter) & (~state[4])

    z, *_ = jax.lax.while_loop(cond, body, (z_start, lo, hi, 0, jnp.asarray(False)))
    z = jnp.where(tau == 0, z0, z)
    psi = jnp.exp(ln_psi_from_z(z, sign))
    psi = jnp.where(at_fixed, 1.0, psi)
    return psi, z, sign


@functools.partial(jax.jit, static_argnames=("k", "n", "max_iter"))
def psi_at_grid_jax(psi0, tau, k: int, n: int, *, max_iter: int = 100):
    """psi on a grid: psi0 (F,), tau (T, F) non-decreasing along T. A scan over the rows warm-starts
    every Newton solve from the previous row's root, a valid lower bound since z grows with tau, so
    each row needs ~2-3 iterations instead of a solve from scratch. Returns psi (T, F)."""
    at_fixed = psi0 == 1.0
    z0, sign = z_from_psi(jnp.where(at_fixed, 0.5, psi0))
    lnpsi0 = ln_psi_from_z(z0, sign)

    def row(carry, tau_row):
        z_prev, tau_prev = carry
        slope = _dI_dz(ln_psi_from_z(z_prev, sign), k, n)
        lo = z_prev
        hi = z_prev + (tau_row - tau_prev) / jnp.minimum(slope, 1.0 / n)
        hi = jnp.where(jnp.isfinite(hi), hi, jnp.finfo(float).max)

        def body(state):
            z, lo, hi, it, _ = state
            lnpsi = ln_psi_from_z(z, sign)
            g = elapsed_between(lnpsi0, z0, lnpsi, z, k, n) - tau_row
            dg = _dI_dz(lnpsi, k, n)
            lo = jnp.where(g < 0, z, lo)
            hi = jnp.where(g >= 0, z, hi)
            cand = z - g / dg
            ok = (cand >= lo) & (cand <= hi) & jnp.isfinite(cand)   # inclusive: a converged step lands on lo
            new = jnp.where(ok, cand, 0.5 * (lo + hi))
            done = (jnp.abs(new - z) <= 1e-13 * jnp.maximum(1.0, jnp.abs(z))) | \
                (jnp.abs(g) <= 4e-16 * jnp.maximum(1.0, tau_row)) | (tau_row == tau_prev)
            return new, lo, hi, it + 1, jnp.all(done)

        z, *_ = jax.lax.while_loop(lambda s: (s[3] < max_iter) & ~s[4], body,
                                   (z_prev, lo, hi, 0, jnp.asarray(False)))
        z = jnp.where(tau_row == tau_prev, z_prev, z)
        return (z, tau_row), z

    _, zs = jax.lax.scan(row, (z0, jnp.zeros_like(z0)), tau)
    psi = jnp.exp(ln_psi_from_z(zs, sign[None, :]))
    return jnp.where(at_fixed[None, :], 1.0, psi)
