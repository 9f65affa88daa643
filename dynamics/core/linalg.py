"""Small linear-algebra helpers shared by the families: random rotations, diagonals in a basis."""

from __future__ import annotations

import jax
import numpy as np

from .keys import as_key
from .resources import check_memory
from .validation import check_int

__all__ = ["random_rotation", "diag_in_basis"]


def diag_in_basis(U, M):
    """diag(U^T M U) with one matrix product (O(d^3) through BLAS, not a triple einsum)."""
    return np.sum(U * (M @ U), axis=0)


def random_rotation(d: int, *, key) -> np.ndarray:
    """A Haar-random orthogonal d x d matrix (QR of a Gaussian with the sign convention fixed)."""
    d = check_int("d", d, minimum=1)
    check_memory(f"a random {d:,} x {d:,} rotation", 4 * 8 * d * d, hint="a smaller dimension")
    g = np.asarray(jax.random.normal(as_key(key), (d, d), dtype=np.float64))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))[None, :]
