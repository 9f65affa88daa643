"""Data statistics for the deep linear families: paired covariances, rotations, generative models.

A problem holds population second moments of paired vectors (x, y) in R^d,

    Sxx = E[x x^T],   Syx = E[y x^T],   Syy = E[y y^T],

a network depth L and an initialisation scale eps.  When Sxx and Syx are simultaneously
diagonalisable, ``basis`` U holds their common eigenvectors (columns) and

    U^T Sxx U = diag(sigma2),   U^T Syx U = diag(lam),   rho = lam / sigma2

(theory/jepa.md, sec. 1).  lam_i is feature i's covariance, rho_i its regression coefficient.

``SSLProblem`` (JEPA / MAE) and ``RegressionProblem`` (Saxe et al.: y is the regression target) share
these fields and builders; they differ only in which solvers accept them.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import jax
import numpy as np

from ...core.family import StatefulProblem, register_problem
from ...core.keys import as_key
from ...core.linalg import diag_in_basis, random_rotation
from ...core.validation import (check_array, check_bool, check_choice, check_int, check_positive,
                                check_symmetric_pd)
from .commuting import generalized_eig, noncommuting_message

__all__ = ["LinearProblem", "SSLProblem", "RegressionProblem", "random_rotation", "as_key", "diag_in_basis"]


class _Dense:
    """A dataclass field for a dense (d, d) matrix that a spectrum problem forms only when asked.

    Given at construction it is stored; given as None it is built on first access by the owner's
    ``_make_<name>()`` (from the spectrum and the basis) and cached.  So a problem of 10^4 features
    built from its spectrum holds O(d) numbers until a dense simulation reads ``Sxx``.
    """

    def __set_name__(self, owner, name):
        self.public, self.slot = name, "_dense_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return None                 # the dataclass default
        value = obj.__dict__.get(self.slot)
        if value is None:
            value = getattr(obj, "_make_" + self.public)()
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj, value):      # dataclass __init__ (object.__setattr__) lands here
        obj.__dict__[self.slot] = None if value is None else np.asarray(value)

    @staticmethod
    def formed(obj, name) -> bool:
        return obj.__dict__.get("_dense_" + name) is not None


@register_problem
@dataclass(frozen=True, eq=False, kw_only=True)
class LinearProblem(StatefulProblem):
    """Paired covariances, depth and init scale (see module docstring). Build with the classmethods.

    ``Sxx``, ``Syx``, ``Syy`` and ``basis`` are formed from the spectrum (sigma2, lam, syy) on first
    access when not given (a spectrum problem in its own basis is the identity basis).  ``right_basis``
    (V) is the input side's basis where it differs from the output side's (a regression's non-symmetric
    Syx = U diag(lam) V^T, its singular vectors; theory/saxe.md, "Any Syx"): features are then the pairs
    (u_i, v_i) and a mode is u_i^T Wbar v_i; otherwise it is ``basis`` itself."""

    #: whether a non-symmetric Syx may be taken through its singular vectors (a regression: its loss sees
    #: Syx only through Wbar Syx^T, so U and V may differ; the SSL objectives need one basis)
    singular_basis: ClassVar[bool] = False

    Sxx: np.ndarray = _Dense()
    Syx: np.ndarray = _Dense()
    Syy: np.ndarray = _Dense()
    depth: int
    init_scale: float
    basis: np.ndarray = _Dense()
    right_basis: np.ndarray = _Dense()
    sigma2: np.ndarray
    lam: np.ndarray
    diagonalisable: bool = True
    source: dict = field(default_factory=dict)
    syy: np.ndarray | None = None       # diag(U^T Syy U), kept so the theory's loss needs no O(d^3) product
    samples: tuple | None = None        # (x, y) of from_samples: the data its covariances were estimated from
    # the network's shape (theory/saxe.md, "Any shape"): None everywhere is the square network of width d
    widths: tuple | None = None         # hidden widths, depth - 1 ints
    embed_dim: int | None = None        # an SSL encoder's output dimension k (R^d -> R^k)
    kept: tuple | None = None           # the features the aligned init gives a path (a bottleneck); None: predicted

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_spectrum(cls, lam, rho, depth, init_scale, *, basis=None, rotate=False, key=None,
                      syy=None, widths=None, embed_dim=None, kept=None):
        """Features with covariances ``lam`` (> 0) and regression coefficients ``rho`` (> 0).

        sigma2 = lam / rho.  ``rotate=True`` draws a random basis from ``key`` (a non-diagonal but
        equivalent problem); ``basis`` gives one explicitly.  ``syy`` (the target view's variances in
        the feature basis) defaults to max(sigma2, lam * rho), the smallest choice that keeps the
        joint covariance of (x, y) positive semi-definite (it only shifts the loss by a constant).
        """
        lam = check_array("lam", lam, ndim=1)
        rho = check_array("rho", rho, ndim=1)
        if lam.shape != rho.shape:
            raise ValueError(f"lam and rho must have the same shape, got {lam.shape} and {rho.shape}")
        if lam.size == 0:
            raise ValueError("lam must have at least one feature")
        if np.any(lam <= 0):
            raise ValueError(f"lam must be > 0 for every feature, got {lam}")
        if np.any(rho <= 0):
            raise ValueError(f"rho must be > 0 for every feature, got {rho}")
        d = lam.size
        sigma2 = lam / rho
        syy = np.maximum(sigma2, lam * rho) if syy is None else check_array("syy", syy, shape=(d,))
        U = cls._pick_basis(d, basis, rotate, key)
        prob = cls._build(U, sigma2, lam, syy, depth, init_scale,
                          source={"builder": "from_spectrum", "rotated": bool(rotate or basis is not None)})
        return prob._shaped(widths, embed_dim, kept)

    @classmethod
    def from_covariances(cls, Sxx, Syx, depth, init_scale, *, Syy=None, tol=1e-8, strict=True, widths=None,
                         embed_dim=None, kept=None):
        """From covariance matrices; checks Sxx symmetric positive definite and Syx symmetric and
        commuting with Sxx (simultaneous diagonalisability), each within ``tol`` (relative).

        A regression (``RegressionProblem``) takes any Syx of shape (d_out, d_in), square or not, through its
        singular vectors Syx = U diag(s) V^T where Sxx commutes with Syx^T Syx (theory/saxe.md, "Any Syx"):
        its features are the min(d_in, d_out) pairs (u_i, v_i); Syy (d_out, d_out) defaults to
        Syx Sxx^-1 Syx^T for a rectangular Syx (a target the network can fit exactly).  ``widths`` (hidden
        widths), ``embed_dim`` (an SSL encoder's output dimension) and ``kept``: the network's shape
        (:meth:`with_shape`).

        With ``strict=False`` a non-diagonalisable pair is accepted: the exact solvers refuse it (naming
        its normalised commutator) and the generalised-mode approximation (``approx="generalized"``)
        accepts it.  Its ``basis`` is then the generalised modes (theory/generalized.md: unit directions
        u_i of Syx_s a = rho Sxx a, sorted by decreasing rho), with ``sigma2``, ``lam`` their Rayleigh
        quotients, so that simulations record ``modes`` along the directions the approximation predicts.
        """
        Sxx = check_symmetric_pd("Sxx", Sxx, tol=tol)
        d = Sxx.shape[0]
        Syx = check_array("Syx", Syx, ndim=2)
        if Syx.shape[1] != d or (Syx.shape[0] != d and not cls.singular_basis):
            want = f"(d_out, {d}): d_in = {d} columns, Sxx's size" if cls.singular_basis else f"{(d, d)}, that of Sxx"
            raise ValueError(f"Syx must have shape {want}; got {Syx.shape}")
        if Syx.shape[0] == 0:
            raise ValueError(f"Syx must have at least one row (an output), got shape {Syx.shape}")
        d_out = Syx.shape[0]
        if Syy is None:
            Syy = Sxx if d_out == d else Syx @ np.linalg.solve(Sxx, Syx.T)
            Syy = 0.5 * (Syy + Syy.T)
        Syy = check_symmetric_pd("Syy", Syy, tol=tol, semi=True)
        if Syy.shape != (d_out, d_out):
            raise ValueError(f"Syy must have shape {(d_out, d_out)} (Syx has {d_out} rows), got {Syy.shape}")
        scale = max(1.0, float(np.abs(Sxx).max()), float(np.abs(Syx).max()))
        asym = float(np.abs(Syx - Syx.T).max()) if d_out == d else np.inf
        if cls.singular_basis and asym > tol * scale:
            svd = cls._singular_basis(Sxx, Syx, tol * scale)
            if svd is not None:         # Sxx commutes with Syx^T Syx: the singular vectors are the features
                U, V, s = svd
                if np.any(s <= 0):
                    warnings.warn(f"Syx has zero singular values ({int(np.sum(s <= 0))} of {s.size}): those features "
                                  "are not learned (their modes decay); the solvers refuse them", stacklevel=2)
                prob = cls._build(U, np.einsum("ij,ik,kj->j", V, Sxx, V), s, None, depth, init_scale,
                                  source={"builder": "from_covariances", "singular_vectors": True}, check_lam=False)
                prob = dataclasses.replace(prob, Sxx=Sxx, Syx=Syx, Syy=Syy, right_basis=V, syy=diag_in_basis(U, Syy))
                return prob._shaped(widths, embed_dim, kept)
            if d_out != d:
                G = Syx.T @ Syx
                raise ValueError(
                    f"Syx ({d_out} x {d}) needs Sxx to commute with Syx^T Syx for the theory's singular-vector basis "
                    f"(max |Sxx Syx^T Syx - Syx^T Syx Sxx| = {float(np.abs(Sxx @ G - G @ Sxx).max()):.3g}); a "
                    "rectangular Syx has no generalised-mode basis: whiten the input (Sxx = I) or rotate it so that "
                    "they commute")
        comm = float(np.abs(Sxx @ Syx - Syx @ Sxx).max())
        problems = []
        if asym > tol * scale:
            problems.append(f"Syx is not symmetric (max |Syx - Syx^T| = {asym:.3g})")
        if comm > tol * scale ** 2:
            problems.append(f"Sxx and Syx do not commute (max |Sxx Syx - Syx Sxx| = {comm:.3g})")
        diag = not problems
        if diag:
            U = cls._common_basis(Sxx, 0.5 * (Syx + Syx.T), tol * scale)
        else:
            if check_bool("strict", strict):
                raise ValueError(
                    "Sxx and Syx are not simultaneously diagonalisable: " + "; ".join(problems)
                    + ". The theory needs a common eigenbasis; pass strict=False to build a problem "
                    "for simulation only.")
            U = generalized_eig(Sxx, Syx)[0]
        sigma2 = diag_in_basis(U, Sxx)
        lam = diag_in_basis(U, Syx)
        if diag and np.any(lam <= 0):
            warnings.warn(f"Syx has non-positive eigenvalues {lam[lam <= 0]}: those features are "
                          "not learned (their modes decay); the solvers refuse them", stacklevel=2)
        prob = cls._build(U, sigma2, lam, None, depth, init_scale,
                          source={"builder": "from_covariances"}, check_lam=False)
        prob = dataclasses.replace(prob, Sxx=Sxx, Syx=Syx, Syy=Syy, diagonalisable=diag, syy=diag_in_basis(U, Syy))
        return prob._shaped(widths, embed_dim, kept)

    @classmethod
    def from_samples(cls, x, y, depth, init_scale, *, center=True, tol=1e-8):
        """From paired samples: x, y of shape (n, d), row i one pair (context view, target view).

        The covariances are the sample second moments Sxx = x^T x / n, Syx = y^T x / n, Syy = y^T y / n
        (after subtracting each view's mean when ``center``), exactly the moments that simulating with
        ``data=(x, y)`` uses; the (centred) samples are kept in ``problem.samples``, so that
        ``simulate_jepa(problem, batch_size=B)`` draws its minibatches from the same data.  Sample
        covariances never commute: the problem is built as ``from_covariances(..., strict=False)`` would
        (basis = its generalised modes; the theory needs ``approx="generalized"``, theory/generalized.md).
        Needs n > d pairs (n >> d for a good estimate).
        """
        x = check_array("x", x, ndim=2)
        y = check_array("y", y, ndim=2)
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape (n pairs, d features), got {x.shape} and {y.shape}")
        n, d = x.shape
        if d == 0:
            raise ValueError("x must have at least one feature (column), got shape " + str(x.shape))
        if n <= d:
            raise ValueError(f"too few samples: x has n = {n} pairs for d = {d} features; the sample covariance "
                             f"Sxx is singular unless n > d (use n >> d, e.g. n >= {10 * d}, for a good estimate)")
        center = check_bool("center", center)
        if center:
            x, y = x - x.mean(axis=0), y - y.mean(axis=0)
        Sxx, Syx, Syy = x.T @ x / n, y.T @ x / n, y.T @ y / n
        Sxx, Syy = 0.5 * (Sxx + Sxx.T), 0.5 * (Syy + Syy.T)
        try:
            check_symmetric_pd("Sxx", Sxx, tol=tol)
        except ValueError as exc:
            raise ValueError(f"x: its sample covariance is not positive definite ({exc}); the samples span "
                             "fewer than d directions (collinear or constant features): drop or merge them") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)      # re-issued below with the right stack level
            prob = cls.from_covariances(Sxx, Syx, depth, init_scale, Syy=Syy, tol=tol, strict=False)
        prob = dataclasses.replace(prob, samples=(x, y),
                                   source={"builder": "from_samples", "n": int(n), "centered": center})
        prob._warn_init()
        return prob

    @classmethod
    def from_generative(cls, model, signal, noise, depth, init_scale, *, gamma=None, rotate=False,
                        basis=None, key=None):
        """Linear generative models of paired views (theory/jepa.md, sec. 6).

        ``model="static"``: x = z + xi, y = z + xi', z ~ N(0, diag(signal)), xi, xi' ~ N(0, diag(noise))
        independent: sigma2 = signal + noise, lam = signal, rho = signal / (signal + noise).
        ``model="temporal"``: stationary AR(1) latent z_{t+1} = gamma z_t + sqrt(1 - gamma^2) s zeta,
        observed with noise, x = x_t, y = x_{t+1}: lam = gamma * signal, rho = gamma signal / (signal + noise).
        """
        check_choice("model", model, {"static", "temporal"})
        signal = check_array("signal", signal, ndim=1)
        if signal.size < 1:
            raise ValueError("signal must hold at least one feature's variance, got an empty array")
        noise = check_array("noise", noise, ndim=1)
        if noise.shape != signal.shape:
            raise ValueError(f"signal and noise must hold one value per feature: signal has {signal.size}, "
                             f"noise {noise.size}")
        if np.any(signal <= 0):
            raise ValueError(f"signal must be > 0 for every feature, got {signal}")
        if np.any(noise < 0):
            raise ValueError(f"noise must be >= 0 for every feature, got {noise}")
        if model == "temporal":
            if gamma is None:
                raise ValueError("gamma is required for model='temporal' (AR(1) coefficients in (0, 1))")
            gamma = check_array("gamma", gamma, shape=signal.shape)
            if np.any(gamma <= 0) or np.any(gamma >= 1):
                raise ValueError(f"gamma must be in (0, 1) for every feature, got {gamma}")
        elif gamma is not None:
            raise ValueError("gamma is only used with model='temporal'")
        sigma2 = signal + noise
        lam = signal if model == "static" else gamma * signal
        U = cls._pick_basis(signal.size, basis, rotate, key)
        src = {"builder": "from_generative", "model": model, "signal": signal.tolist(),
               "noise": noise.tolist(), "gamma": None if gamma is None else gamma.tolist(),
               "rotated": bool(rotate or basis is not None)}
        return cls._build(U, sigma2, lam, sigma2, depth, init_scale, source=src)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _pick_basis(d, basis, rotate, key):
        """The given basis (checked), a random one (``rotate``), or None: the features' own basis,
        the identity, formed only if asked for."""
        rotate = check_bool("rotate", rotate)
        if basis is not None and rotate:
            raise ValueError("rotate=True and basis: give a basis, or rotate=True (a random one from key), not both")
        if key is not None and not rotate:
            raise ValueError(f"key={key!r} without rotate=True: the key draws the random basis of rotate=True and "
                             "nothing else here; drop it, or pass rotate=True")
        if basis is not None:
            U = check_array("basis", basis, shape=(d, d))
            err = float(np.abs(U.T @ U - np.eye(d)).max())
            if err > 1e-8:
                raise ValueError(f"basis must be orthogonal (max |U^T U - I| = {err:.3g})")
            return U
        if rotate:
            if key is None:
                raise ValueError("rotate=True needs key (the random basis is drawn from it): pass key=<int seed> "
                                 "or a jax.random.key")
            return random_rotation(d, key=key)
        return None

    @classmethod
    def _singular_basis(cls, Sxx, Syx, atol):
        """(U, V, s) with Syx = U diag(s) V^T, U (d_out, r) and V (d_in, r) with orthonormal columns, r =
        min(d_in, d_out), s >= 0 sorted decreasing, and V^T Sxx V diagonal -- Syx's singular vectors chosen
        within degenerate singular values so that they are Sxx's eigenvectors too -- or None where Sxx does not
        commute with Syx^T Syx (then no such pair of bases exists)."""
        G = Syx.T @ Syx
        if float(np.abs(Sxx @ G - G @ Sxx).max()) > atol * max(1.0, float(np.abs(G).max())):
            return None
        d_out, d_in = Syx.shape
        r = min(d_in, d_out)
        V = cls._common_basis(Sxx, G, atol)
        s = np.linalg.norm(Syx @ V, axis=0)
        order = np.argsort(-s, kind="stable")[:r]
        V, s = V[:, order], s[order]
        U = np.zeros((d_out, r))
        pos = s > atol
        U[:, pos] = (Syx @ V[:, pos]) / s[pos]
        if not np.all(pos):         # complete U with orthonormal directions of the rest
            Q = np.linalg.qr(np.concatenate([U[:, pos], np.eye(d_out)], axis=1))[0]
            U[:, ~pos] = Q[:, pos.sum():r]
            s = np.where(pos, s, 0.0)
        return U, V, s

    @staticmethod
    def _common_basis(Sxx, Syx, atol):
        d = Sxx.shape[0]
        for c in (0.7390851332151607, 2.718281828459045, 0.1234567):
            U = np.linalg.eigh(Sxx + c * Syx)[1]
            off = [U.T @ M @ U for M in (Sxx, Syx)]
            if all(np.abs(o - np.diag(np.diag(o))).max() <= max(atol, 1e-9) * d for o in off):
                return U
        raise ValueError("could not find a common eigenbasis of Sxx and Syx (degenerate spectrum); "
                         "pass a basis with from_spectrum instead")

    @classmethod
    def _build(cls, U, sigma2, lam, syy, depth, init_scale, *, source, check_lam=True):
        depth = check_int("depth", depth, minimum=1)
        init_scale = check_positive("init_scale", init_scale)
        sigma2, lam = np.asarray(sigma2, float), np.asarray(lam, float)
        built = source.get("builder") == "from_spectrum"
        bad = np.nonzero(~np.isfinite(sigma2) | (sigma2 <= 0))[0]
        if bad.size:
            what = "sigma2 = lam / rho" if built else "Sxx's eigenvalues sigma2"
            raise ValueError(f"{what} must be finite and > 0 in float64 (a variance), got {sigma2[bad][:5]} for "
                             f"feature(s) {bad[:5].tolist()}: rescale lam and rho (or the data) so that their "
                             "ratio stays within 1e-300 .. 1e300")
        rho = lam / sigma2
        bad = np.nonzero(~np.isfinite(lam) | ~np.isfinite(rho) | ((lam != 0) & (rho == 0)))[0]
        if bad.size:
            raise ValueError(f"lam and rho = lam / sigma2 must be finite and representable in float64, got lam = "
                             f"{lam[bad][:5]}, rho = {rho[bad][:5]} for feature(s) {bad[:5].tolist()}: rescale the "
                             "problem")
        if syy is not None:
            syy = np.asarray(syy, float)
            bad = np.nonzero(~np.isfinite(syy) | (syy < 0))[0]
            if bad.size:
                raise ValueError(f"syy (the target view's variances in the feature basis) must be finite and >= 0, "
                                 f"got {syy[bad][:5]} for feature(s) {bad[:5].tolist()}")
        # the dense matrices are formed on first access (``_Dense``); U = None: the identity basis
        prob = cls(depth=depth, init_scale=init_scale, basis=U, sigma2=np.asarray(sigma2, float),
                   lam=np.asarray(lam, float), source=source,
                   syy=np.asarray(sigma2 if syy is None else syy, float))
        prob._warn_init()
        return prob

    def _in_basis(self, diag):
        if not _Dense.formed(self, "basis"):
            return np.diag(diag)
        U = self.basis
        return (U * diag) @ U.T

    def _make_basis(self):
        return np.eye(self.sigma2.size)

    def _make_Sxx(self):
        return self._in_basis(self.sigma2)

    def _make_Syx(self):
        if _Dense.formed(self, "right_basis"):
            return (self.basis * self.lam) @ self.right_basis.T
        return self._in_basis(self.lam)

    def _make_right_basis(self):
        return self.basis

    @property
    def has_right_basis(self) -> bool:
        """Whether the input side has its own basis V (``right_basis``; a non-symmetric regression Syx)."""
        return _Dense.formed(self, "right_basis") and not np.array_equal(self.right_basis, self.basis)

    def _make_Syy(self):
        return self._in_basis(self.syy_diag)

    def _warn_init(self):
        """Warn when init_scale >= rho^L for some feature (JEPA cannot learn it from there)."""
        rho = self.rho
        with np.errstate(over="ignore", under="ignore"):
            bad = np.nonzero(self.init_scale >= np.where(rho > 0, rho, np.inf) ** self.depth)[0]
        if bad.size:
            warnings.warn(
                f"init_scale={self.init_scale:g} >= rho^L for feature(s) {bad.tolist()} (rho^L = "
                f"{(rho[bad] ** self.depth).tolist()}): JEPA shrinks them instead of learning them; "
                "use init_scale < min(rho)^L to learn every feature", stacklevel=3)

    # ------------------------------------------------------------------ properties and variants
    @property
    def d(self) -> int:
        return self.sigma2.size

    @property
    def rho(self) -> np.ndarray:
        return self.lam / self.sigma2

    # ------------------------------------------------------------------ the network's shape
    @property
    def d_in(self) -> int:
        """The input dimension (x in R^d_in): d but for a regression's rectangular Syx."""
        return self.right_basis.shape[0] if _Dense.formed(self, "right_basis") else self.d

    @property
    def d_out(self) -> int:
        """The target's dimension (y in R^d_out): d but for a regression's rectangular Syx."""
        return self.basis.shape[0] if _Dense.formed(self, "basis") else self.d

    @property
    def plain(self) -> bool:
        """Whether the network is the square one (every layer d x d, no widths, embed_dim or kept given)."""
        return (self.widths is None and self.embed_dim is None and self.kept is None
                and self.d_in == self.d and self.d_out == self.d)

    def layer_shapes(self) -> list:
        """[(rows, columns)] of the encoder's layers W_1 .. W_L: W_1 is (h_1, d_in), W_L (k, h_{L-1}) with k the
        encoder's output (embed_dim for an SSL encoder, d_out for a regression)."""
        out = self.embed_dim if self.embed_dim is not None else self.d_out
        hidden = list(self.widths) if self.widths is not None else [min(self.d_in, out)] * (self.depth - 1)
        dims = [self.d_in] + hidden + [out]
        return [(dims[a + 1], dims[a]) for a in range(self.depth)]

    @property
    def n(self) -> int:
        """The size of the square slots the simulator stores every layer in (theory/saxe.md, "Any shape"):
        the largest of d_in, d_out and every width; layer a is its (rows, columns) block, zero elsewhere."""
        return max([self.d_in, self.d_out] + [max(s) for s in self.layer_shapes()])

    @property
    def capacity(self) -> int:
        """How many features the network can carry at once: its narrowest layer's width (and d_in, d_out)."""
        out = self.embed_dim if self.embed_dim is not None else self.d_out
        hidden = list(self.widths) if self.widths is not None else [min(self.d_in, out)]
        return min([self.d, self.d_in, out] + hidden)

    def with_shape(self, *, widths=None, embed_dim=None, kept=None):
        """The same data through a network of another shape (theory/saxe.md, "Any shape"): each call gives the
        whole shape (what it leaves out is the default; ``with_shape()`` is the square network).

        widths : hidden widths h_1 .. h_{L-1} (a list of depth - 1 ints, or one int for all); default
            min(d_in, k) with k the encoder's output.
        embed_dim : an SSL encoder's output dimension k (R^d -> R^k; JEPA's predictor is then k x k, MAE's
            decoder d x k); a regression's output is its target's (use widths for a bottleneck).
        kept : where the network is narrower than the number of features, which features the aligned init
            gives a path (feature indices, at most ``capacity`` of them); default: the family's prediction
            from a small random init (``dy.kept_features``).
        """
        return self._shaped(widths, embed_dim, kept, replace=True)

    def _shaped(self, widths, embed_dim, kept, *, replace=False):
        if widths is None and embed_dim is None and kept is None and not replace:
            return self
        L = self.depth
        if widths is not None:
            if isinstance(widths, (int, np.integer)) and not isinstance(widths, bool):
                widths = [int(widths)] * (L - 1)
            if not isinstance(widths, (list, tuple)) or len(widths) != L - 1:
                raise ValueError(f"widths must be a list of depth - 1 = {L - 1} hidden widths (or one int for all), "
                                 f"got {widths!r}")
            widths = tuple(check_int(f"widths[{a}]", w, minimum=1) for a, w in enumerate(widths))
        if embed_dim is not None:
            if self.singular_basis:
                raise ValueError(f"embed_dim is an SSL encoder's output dimension; a regression's output is its target's "
                                 f"({self.d_out}): give widths=[...] for a narrow hidden layer instead")
            embed_dim = check_int("embed_dim", embed_dim, minimum=1)
            if embed_dim > self.d:
                raise ValueError(f"embed_dim must be <= d = {self.d} (an encoder R^d -> R^k), got {embed_dim}")
        prob = dataclasses.replace(self, widths=widths, embed_dim=embed_dim, kept=None)
        if kept is not None:
            kept = check_array("kept", kept, ndim=1)
            if np.any(kept != np.round(kept)) or np.unique(kept).size != kept.size or np.any(kept < 0) \
                    or np.any(kept >= self.d):
                raise ValueError(f"kept must be distinct feature indices in 0 .. {self.d - 1}, got {kept.tolist()}")
            if kept.size > prob.capacity or kept.size == 0:
                raise ValueError(f"kept names {kept.size} feature(s); this network carries 1 to {prob.capacity} "
                                 f"(its narrowest layer, widths={widths}, embed_dim={embed_dim})")
            prob = dataclasses.replace(prob, kept=tuple(int(i) for i in kept.astype(np.int64)))
        return prob

    def with_depth(self, depth):
        """The same data at another depth (init_scale kept; hidden widths, if given, must be given again)."""
        depth = check_int("depth", depth, minimum=1)
        if self.widths is not None and depth != self.depth:
            raise ValueError(f"depth={depth}: this problem's widths {list(self.widths)} are for depth {self.depth}; "
                             "use .with_depth(depth).with_shape(widths=...) on a problem without widths")
        return self._replace_checked(depth=depth)

    def with_init_scale(self, init_scale):
        return self._replace_checked(init_scale=check_positive("init_scale", init_scale))

    def _replace_checked(self, **kw):
        prob = dataclasses.replace(self, **kw)
        prob._warn_init()
        return prob

    def rotated(self, *, key):
        """The same problem in a random orthogonal basis: covariances become dense, spectra unchanged."""
        if self.d_in != self.d_out:
            raise ValueError(f"rotated(): this problem's input ({self.d_in}) and target ({self.d_out}) differ in "
                             "dimension; rotate Sxx, Syx and Syy yourself and build it with from_covariances")
        R = random_rotation(self.d, key=key)
        rot = lambda M: R @ M @ R.T  # noqa: E731
        samples = None if self.samples is None else (self.samples[0] @ R.T, self.samples[1] @ R.T)
        # every basis rotated together (dataclasses.replace would otherwise carry the input side's unrotated basis
        # over, formed on first access as the unrotated ``basis``)
        return dataclasses.replace(self, Sxx=rot(self.Sxx), Syx=rot(self.Syx), Syy=rot(self.Syy),
                                   basis=R @ self.basis, right_basis=R @ self.right_basis,
                                   source={**self.source, "rotated": True}, samples=samples)

    @property
    def syy_diag(self) -> np.ndarray:
        """diag(U^T Syy U) (stored at build time; computed for problems loaded from older files)."""
        if self.syy is None and not _Dense.formed(self, "Syy"):
            return self.sigma2
        return self.syy if self.syy is not None else diag_in_basis(self.basis, self.Syy)

    def require_diagonalisable(self, what):
        if not self.diagonalisable:
            raise ValueError(noncommuting_message(self, what))

    # ------------------------------------------------------------------ sampling
    def joint_covariance(self) -> np.ndarray:
        """Covariance of the stacked vector (x, y), shape (d_in + d_out, d_in + d_out)."""
        return np.block([[self.Sxx, self.Syx.T], [self.Syx, self.Syy]])

    def joint_factor(self) -> np.ndarray:
        """F with F F^T = joint covariance (symmetric square root; works when it is only PSD)."""
        C = self.joint_covariance()
        w, Q = np.linalg.eigh(0.5 * (C + C.T))
        scale = max(1.0, float(np.abs(w).max()))
        if w.min() < -1e-9 * scale:
            raise ValueError(f"the joint covariance of (x, y) is not positive semi-definite "
                             f"(smallest eigenvalue {w.min():.3g}): increase Syy")
        return (Q * np.sqrt(np.clip(w, 0, None))) @ Q.T

    def sample(self, n, *, key):
        """n Gaussian pairs (x, y), of shapes (n, d_in) and (n, d_out), with this problem's second moments."""
        n = check_int("n", n, minimum=1)
        g = np.asarray(jax.random.normal(as_key(key), (n, self.d_in + self.d_out), dtype=np.float64))
        z = g @ self.joint_factor().T
        return z[:, :self.d_in], z[:, self.d_in:]

    # ------------------------------------------------------------------ serialisation
    def state(self) -> tuple[dict, dict]:
        """(arrays, scalars) that ``from_state`` turns back into an equal problem."""
        # the dense matrices only where they were given or formed (a spectrum problem stays O(d))
        arrays = {k: np.asarray(getattr(self, k)) for k in ("Sxx", "Syx", "Syy", "basis", "right_basis")
                  if _Dense.formed(self, k)}
        arrays.update(sigma2=np.asarray(self.sigma2), lam=np.asarray(self.lam), syy=np.asarray(self.syy_diag))
        if self.samples is not None:
            arrays.update(samples_x=np.asarray(self.samples[0]), samples_y=np.asarray(self.samples[1]))
        scalars = {"class": type(self).__name__, "depth": self.depth, "init_scale": self.init_scale,
                   "diagonalisable": self.diagonalisable, "source": self.source}
        scalars.update({k: list(getattr(self, k)) for k in ("widths", "kept") if getattr(self, k) is not None})
        if self.embed_dim is not None:
            scalars["embed_dim"] = self.embed_dim
        return arrays, scalars

    def summary(self) -> dict:
        return {"lam": self.lam, "rho": self.rho, "depth": self.depth, "init_scale": self.init_scale}

    @classmethod
    def from_state(cls, arrays, scalars):
        # what a builder would have refused is refused here too, naming the field (a file may be edited)
        check_int("depth", scalars["depth"], minimum=1)
        check_positive("init_scale", scalars["init_scale"])
        sigma2 = check_array("sigma2", arrays["sigma2"], ndim=1)
        d = sigma2.size
        if d == 0 or not np.all(sigma2 > 0):
            raise ValueError(f"sigma2 (Sxx's eigenvalues) must be > 0 for every feature, got {sigma2[:5]}")
        check_array("lam", arrays["lam"], shape=(d,))
        if "syy" in arrays and np.any(check_array("syy", arrays["syy"], shape=(d,)) < 0):
            raise ValueError(f"syy (variances) must be >= 0, got {np.asarray(arrays['syy'])[:5]}")
        d_out = np.shape(arrays["basis"])[0] if "basis" in arrays else d
        d_in = np.shape(arrays["right_basis"])[0] if "right_basis" in arrays else d
        shapes = {"Sxx": (d_in, d_in), "Syx": (d_out, d_in), "Syy": (d_out, d_out), "basis": (d_out, d),
                  "right_basis": (d_in, d)}
        for k, shape in shapes.items():
            if k in arrays:
                check_array(k, arrays[k], shape=shape)
        prob = cls(depth=int(scalars["depth"]), init_scale=float(scalars["init_scale"]),
                   diagonalisable=bool(scalars["diagonalisable"]), source=dict(scalars["source"]),
                   syy=np.asarray(arrays["syy"]) if "syy" in arrays else None,
                   samples=((np.asarray(arrays["samples_x"]), np.asarray(arrays["samples_y"]))
                            if "samples_x" in arrays else None),
                   **{k: np.asarray(arrays[k]) for k in ("Sxx", "Syx", "Syy", "basis", "right_basis", "sigma2",
                                                          "lam") if k in arrays})
        return prob._shaped(scalars.get("widths"), scalars.get("embed_dim"), scalars.get("kept"))


@register_problem
class SSLProblem(LinearProblem):
    """Paired views (x, y) for deep linear JEPA and MAE (theory/jepa.md). See ``LinearProblem``."""


@register_problem
class RegressionProblem(LinearProblem):
    """Input x, target y for deep linear regression (theory/saxe.md): lam_i = singular value of
    Syx, rho_i = lam_i / sigma2_i = the regression coefficient the end-to-end map converges to.  A
    non-symmetric Syx is taken through its singular vectors (``basis`` U on the output side,
    ``right_basis`` V on the input side) where Sxx commutes with Syx^T Syx (theory/saxe.md, "Any Syx")."""

    singular_basis = True

    def _warn_init(self):  # regression learns every positive mode whatever the init
        return None
