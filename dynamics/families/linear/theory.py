"""The exact per-mode theory of the deep linear families for an aligned, balanced init.

With x the per-layer mode (equal to the head mode), psi = x / scale(rho, L) obeys
d psi / d tau = psi^k (1 - psi^n), t = pref(lam, rho, L) tau (theory/jepa.md sec. 3, theory/saxe.md),
solved in closed form by ``exact.mode_integrals`` and tabulated by ``exact.mode_tables``.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ...core.distributed import global_put, multiprocess, to_host
from ...core.engine import batch_mesh
from ...core.io import versions
from ...core.trajectory import Trajectory
from ...core.linalg import diag_in_basis
from ...core.validation import check_array, check_choice, check_fraction, check_instance, check_positive
from ...exact.mode_integrals import elapsed, psi_at_grid_jax, z_from_psi
from ...exact.mode_tables import clock, clock_table, ln_psi_of_clock
from .discrete import discrete_modes, map_slope, steps_of
from .generalized import approximation_info, check_approx, generalized_modes
from .problems import LinearProblem
from .bottleneck import constant_loss, kept_mask, square_part

__all__ = ["solve_linear", "critical_times_linear", "theory_inputs", "theory_spectrum", "warn_never_learned",
           "shaped_part", "on_kept"]


def theory_spectrum(problem, what, approx=None):
    """(lam, sigma2, syy, approximation) the per-mode theory runs on.

    A diagonalisable problem: its own features, exactly (``approximation`` None).  Otherwise the exact
    theory refuses (naming the commutator); with ``approx="generalized"`` its generalised modes
    (theory/generalized.md) and the settings entry naming the approximation and its estimated error."""
    check_instance("problem", problem, LinearProblem, "a problem object (an SSLProblem or a RegressionProblem)")
    check_approx(approx)
    if problem.diagonalisable or approx is None:
        problem.require_diagonalisable(what)
        lam = problem.lam
        if np.any(lam <= 0):
            raise ValueError(f"{what} needs lam > 0 for every feature; got {lam}")
        info = None if approx is None else approximation_info(problem, what)
        return lam, problem.sigma2, problem.syy_diag, info
    gm = generalized_modes(problem)
    syy = diag_in_basis(gm.directions, problem.Syy)
    return gm.lam, gm.sigma2, syy, approximation_info(problem, what)


def theory_inputs(objective, problem, what, approx=None, spectrum=None):
    """(lam, rho, L, eps, scale, psi0) per feature (``spectrum``: theory_spectrum's answer, if already
    computed).  Under ``approx`` a generalised mode may have lam <= 0 (it is not learned); its scale and
    psi0 are then nan."""
    lam, sigma2, _, _ = theory_spectrum(problem, what, approx) if spectrum is None else spectrum
    L, eps = problem.depth, problem.init_scale
    rho = lam / sigma2
    pos = lam > 0
    with np.errstate(invalid="ignore"):
        scale = np.where(pos, objective.scale(np.where(pos, rho, 1.0), L), np.nan)
    psi0 = eps ** (1.0 / L) / scale
    return lam, rho, L, eps, scale, psi0


#: on the shrinking branch (psi0 > 1) the closed-form clock loses tau increments below ~1e-16 of its
#: O(1) terms, while the time scale there is 1 / (psi0^k (psi0^n - 1)): beyond this stiffness the
#: per-mode ODE is integrated numerically instead (theory/jepa.md sec. 3)
SHRINKING_CLOCK_LIMIT = 1e6


def _decaying_modes(objective, lam, sigma2, x0, L, t):
    """Per-layer modes solved numerically: dx/dt = lam x^k - sigma2 x^(k+n) from x0 (the per-mode ODE of
    theory/jepa.md sec. 3 before rescaling).  For features with lam <= 0 (generalised modes only: they
    decay) and for features far above their fixed point at depth, where the closed form's clock is
    ill-conditioned (:data:`SHRINKING_CLOCK_LIMIT`)."""
    from scipy.integrate import solve_ivp
    k, n = objective.k(L), objective.n(L)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    out = np.empty((t.size, lam.size))
    for j in range(lam.size):
        sol = solve_ivp(lambda _, x: lam[j] * x ** k - sigma2[j] * x ** (k + n), (0.0, float(ts[-1]) if ts.size else 0.0),
                        [x0], t_eval=ts, method="LSODA", rtol=1e-12, atol=1e-15 * x0)
        if not sol.success:
            raise RuntimeError(f"the per-mode ODE of feature {j} could not be integrated: {sol.message}")
        out[order, j] = sol.y[0]
    return out


def _log_time_rate(objective, lam, sigma2, L):
    """dt/du = 1 / (lam x^(k-1) (1 - (sigma2 / lam) x^n)) at u = ln x, formed in logs (lam > 0, below the
    fixed point), as a function of u; and u* = ln of the fixed point x* = (lam / sigma2)^(1/n)."""
    k, n = objective.k(L), objective.n(L)
    ll, lr = np.log(lam), np.log(sigma2 / lam)

    def dt_du(u):
        with np.errstate(over="ignore"):
            return np.exp(-(ll + (k - 1) * u) - np.log(-np.expm1(lr + n * u)))
    return dt_du, -lr / n


def _modes_by_inverse_clock(objective, lam, sigma2, x0, L, t):
    """Per-layer modes of the features whose rescaled clock float64 cannot hold (:func:`_clock_out_of_range`):
    the time as a function of u = ln x, t(u) = int_{ln x0}^{u} dt/du, integrated where it is smooth (the
    mode itself sweeps through decades of x in less than one ulp of t at depth, the inverse does not), then
    inverted at each requested time by bracketing root finding on its dense output; past
    x = x* (1 - 1e-13) the fixed point."""
    from scipy.integrate import solve_ivp
    from scipy.optimize import brentq
    out = np.empty((t.size, lam.size))
    for j in range(lam.size):
        dt_du, u_star = _log_time_rate(objective, lam[j], sigma2[j], L)
        u0 = np.log(x0)
        u_end = u_star + np.log1p(-1e-13) / objective.n(L)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            sol = solve_ivp(lambda u, y: [dt_du(u)], (u0, u_end), [0.0], method="DOP853", rtol=1e-13, atol=1e-300,
                            dense_output=True)
        if not sol.success:
            raise RuntimeError(f"the clock of feature {j} could not be integrated: {sol.message}")
        t_end = float(sol.y[0, -1])
        for i, ti in enumerate(t):
            if ti <= 0:
                out[i, j] = x0
            elif not ti < t_end:
                out[i, j] = np.exp(u_star)
            else:
                out[i, j] = np.exp(brentq(lambda u: float(sol.sol(u)[0]) - ti, u0, u_end, xtol=1e-15, rtol=1e-15))
    return out


def _clock_out_of_range(objective, k, n, psi0, pref, t_gf):
    """(F,) features on the learning branch whose rescaled clock is not representable in float64: the time
    prefactor is 0 or inf, the rescaled horizon t / pref overflows, psi0 is below the smallest normal
    number, or the clock I(psi0) (~ psi0^(1-k) / (k-1)) overflows."""
    t_max = float(np.max(t_gf)) if t_gf.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bad = ~(np.isfinite(pref) & (pref > 0)) | ~np.isfinite(t_max / pref)
        if k >= 1:      # (k = 0 is solved in x itself: a psi0 below the normal range loses nothing)
            bad = bad | (psi0 < np.finfo(float).tiny)
        if k >= 2:      # ln I(psi0) ~ (1 - k) ln psi0 - ln(k - 1)
            bad = bad | ((1 - k) * np.log(np.where(psi0 > 0, psi0, 1.0)) - np.log(k - 1.0) > 700.0)
    return bad & (psi0 < 1)


def _critical_times_by_quadrature(objective, lam, sigma2, x0, xstar, L):
    """t = int_{x0}^{x*} dx / (lam x^k - sigma2 x^(k+n)) per feature, by quadrature in u = ln x with the
    integrand formed in logs: for the features whose rescaled clock float64 cannot hold (the time itself
    is an ordinary number).  inf where it exceeds the float64 range."""
    from scipy.integrate import quad
    out = np.empty(lam.size)
    for j in range(lam.size):
        a, b = np.log(x0), np.log(xstar[j])
        integrand = _log_time_rate(objective, lam[j], sigma2[j], L)[0]      # dt/du, formed in logs
        # the integrand is peaked at one end (k >= 2: at x0; k <= 1: at x*): split the range geometrically
        edges = np.linspace(a, b, 65)
        with np.errstate(over="ignore"):
            total = sum(quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)[0]
                        for lo, hi in zip(edges[:-1], edges[1:]))
        out[j] = total
    return out


def _to_gf_time(times, units, L, objective):
    check_choice("units", units, {"gf", "paper"})
    if units == "paper":
        if not objective.paper_units:
            raise ValueError(f"units='paper' is only defined for JEPA and MAE, not {objective.name}")
        return times / L
    return times


def solve_linear(objective, problem, *, times, units="gf", approx=None, lr=None):
    """Exact per-mode solution at ``times`` for the aligned balanced init (theory/jepa.md sec. 3).

    ``lr``: instead of the gradient flow, gradient descent at this step size, exactly: the per-mode
    discrete map of ``discrete.py`` (theory/discrete.md) at the steps times / lr (the times must lie on
    that grid, as a simulation's ``t`` does).

    On the learning branch (every 0 < psi0 < 1, the usual case) psi(t) = G(I(psi0) + t / pref) with the
    tabulated inverse clock G of ``mode_tables`` (no root finding; relative error ~1e-13): the whole
    (times x features) grid, the encoder modes and the loss are one fused jitted program.  Otherwise
    (a feature at or above its fixed point) the safeguarded Newton inverse of ``mode_integrals`` runs for
    that feature only, warm-started along the sorted time grid; the others keep the tabulated path.
    ``approx="generalized"``: the same formulas on the generalised modes of a non-commuting problem
    (theory/generalized.md); a mode with lam <= 0 there is not learned and decays (solved numerically).
    """
    times = check_array("times", times, ndim=1)
    if np.any(times < 0):
        raise ValueError("times must be >= 0")
    what = f"solve_{objective.name}"
    check_instance("problem", problem, LinearProblem, "a problem object (an SSLProblem or a RegressionProblem)")
    if not problem.plain:
        return _solve_shaped(objective, problem, times, units, approx, lr, what)
    if lr is not None:
        return _solve_discrete(objective, problem, times, units, approx, lr, what)
    spectrum = theory_spectrum(problem, what, approx)
    _, sigma2, syy, approximation = spectrum
    lam, rho, L, eps, scale, psi0 = theory_inputs(objective, problem, what, approx, spectrum)
    k, n = objective.k(L), objective.n(L)
    t_gf = _to_gf_time(times, units, L, objective)
    learned = lam > 0
    pref = np.where(learned, objective.pref(np.where(learned, lam, 1.0), np.where(learned, rho, 1.0), L), np.nan)
    sig = dict(L=L, head=objective.head, self_target=objective.target == "self")
    # the tabulated inverse clock for every feature on the learning branch (0 < psi0 < 1, finite clock);
    # the safeguarded Newton inverse only for the others (features at or above their fixed point)
    fast = np.zeros(psi0.size, bool)
    if k >= 1:
        ok = learned & (psi0 > 0) & (psi0 < 1)
        if np.any(ok):
            z0, _ = z_from_psi(jnp.asarray(np.where(ok, psi0, 0.5)))
            I0 = np.asarray(clock(z0, k, n))
            # a finite clock is not enough: its prefactor (lam at 1e200, say) may still leave float64
            fast = ok & np.isfinite(I0) & ~_clock_out_of_range(objective, k, n, psi0, pref, t_gf)
    if fast.all():
        modes, loss, x = _fast_grid(objective, k, n, t_gf, pref, I0, psi0, scale, lam, sigma2, syy,
                                    head=objective.head, **{k_: v for k_, v in sig.items() if k_ != "head"})
    else:
        x = np.empty((t_gf.size, psi0.size))
        if fast.any():
            x[:, fast] = _fast_grid(objective, k, n, t_gf, pref[fast], I0[fast], psi0[fast], scale[fast],
                                    lam[fast], sigma2[fast], syy[fast], head=True, L=L,
                                    self_target=sig["self_target"])[2]
        slow = learned & ~fast
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            stiff = slow & (psi0 > 1) & (k * np.log(np.where(psi0 > 1, psi0, 2.0))
                                          + np.log(np.abs(np.where(psi0 > 1, psi0, 2.0) ** n - 1))
                                          > np.log(SHRINKING_CLOCK_LIMIT))
        if stiff.any():
            x[:, stiff] = _decaying_modes(objective, lam[stiff], sigma2[stiff], eps ** (1.0 / L), L, t_gf)
            slow = slow & ~stiff
        # features whose rescaled clock float64 cannot hold (at depth: pref = rho^(1-2L) / lam under- or
        # overflows, or psi0^(1-k) does, while the modes themselves are ordinary numbers): the per-mode ODE in
        # the network's own variables instead (theory/jepa.md sec. 3, "Edges of float64")
        out_of_range = slow & _clock_out_of_range(objective, k, n, psi0, pref, t_gf)
        if out_of_range.any():
            x[:, out_of_range] = _modes_by_inverse_clock(objective, lam[out_of_range], sigma2[out_of_range],
                                                         eps ** (1.0 / L), L, t_gf)
            slow = slow & ~out_of_range
        tau = t_gf[:, None] / pref[None, slow]
        if not slow.any():
            pass
        elif k == 0:   # d psi/d tau = 1 - psi^n with n = 1: psi = 1 - (1 - psi0) e^(-tau), written as
            # x0 e^(-tau) - scale expm1(-tau) so that a tiny init (even one whose psi0 underflows) is kept
            x[:, slow] = eps ** (1.0 / L) * np.exp(-tau) - scale[None, slow] * np.expm1(-tau)
        else:   # warm-started along the sorted time grid (psi_at_grid_jax); times may come unsorted
            order = np.argsort(times, kind="stable")
            psi = np.empty_like(tau)
            psi[order] = np.asarray(psi_at_grid_jax(jnp.asarray(psi0[slow]), jnp.asarray(tau[order]), k=k, n=n))
            x[:, slow] = scale[None, slow] * psi
        if (~learned).any():
            x[:, ~learned] = _decaying_modes(objective, lam[~learned], sigma2[~learned], eps ** (1.0 / L), L, t_gf)
        with np.errstate(over="ignore", invalid="ignore"):
            modes, loss = _modes_and_loss(x, lam, sigma2, syy, xp=np, **sig)
        if np.all(np.isfinite(modes)) and not np.all(np.isfinite(loss)):
            warnings.warn("the loss exceeds the float64 range at some times (the modes, "
                          f"up to {np.abs(modes).max():.3g}, do not): returned as inf or nan there", RuntimeWarning,
                          stacklevel=3)
        x = x if objective.head else None
    fields = {"modes": modes, "gains": np.abs(modes), "loss": loss}
    if objective.head:
        fields["head"] = x
    warn_never_learned(objective, np.where(learned, psi0, 0.5))
    settings = {"units": units, "objective": objective.name, **versions()}
    if approximation is not None:
        settings["approximation"] = approximation
    with np.errstate(invalid="ignore"):
        fp = np.where(learned, objective.fixed_point(np.where(learned, rho, 1.0), L), 0.0)
    return Trajectory(t=np.asarray(times, float), fields=fields, kind="theory", model=objective.name,
                      problem=problem, settings=settings, fixed_point=fp, method="exact", primary="modes")


def shaped_part(objective, problem, what, approx=None):
    """(mask of kept features, the square problem of the kept ones) for a network of any shape: the aligned
    init's exact theory is the square theory of its kept features (bottleneck.py, theory/saxe.md "Any shape")."""
    check_instance("problem", problem, LinearProblem, "a problem object (an SSLProblem or a RegressionProblem)")
    problem.require_diagonalisable(what)
    if approx is not None:
        raise ValueError(f"{what}: approx={approx!r} needs the square network (every layer d x d); this one has "
                         f"layers {problem.layer_shapes()}")
    mask = kept_mask(objective, problem)
    return mask, square_part(problem, np.flatnonzero(mask))


def on_kept(objective, problem, what, per_feature, *, fill, approx=None):
    """A per-feature answer (F,) of a shaped network: ``per_feature(square problem of the kept features)`` on the
    kept features, ``fill`` on the others (0 for a fixed point, inf for a critical time)."""
    mask, sub = shaped_part(objective, problem, what, approx)
    out = np.full(problem.d, fill, dtype=float)
    out[mask] = per_feature(sub)
    return out


def _solve_shaped(objective, problem, times, units, approx, lr, what):
    """The aligned init of a network of any shape: the kept features' square theory, the others at zero."""
    mask, sub = shaped_part(objective, problem, what, approx)
    th = solve_linear(objective, sub, times=times, units=units, lr=lr)
    fields = {}
    for name, v in th.fields.items():
        if name == "loss":
            fields[name] = np.asarray(v) + constant_loss(objective, problem, mask)
        elif name != "head" or problem.embed_dim is None:   # an embedding's units are not the features' basis
            full = np.zeros((np.size(times), problem.d))
            full[:, mask] = v
            fields[name] = full
    fp = np.zeros(problem.d)
    fp[mask] = th.fixed_point
    settings = {**th.settings, "kept": np.flatnonzero(mask).tolist(),
                "theory": "aligned init of a shaped network: the kept features' exact modes, the rest at zero"}
    return Trajectory(t=np.asarray(times, float), fields=fields, kind="theory", model=objective.name, problem=problem,
                      settings=settings, fixed_point=fp, method=th.method, primary="modes")


#: the most steps the discrete map iterates in one call (~1e8 scalar steps a second per feature block)
MAX_MAP_STEPS = 10 ** 8


def _solve_discrete(objective, problem, times, units, approx, lr, what):
    """The discrete map of gradient descent at ``lr`` on ``times`` (discrete.py, theory/discrete.md)."""
    lr = check_positive("lr", lr)
    if approx is not None:
        raise ValueError(f"lr and approx={approx!r} given together: the discrete map of gradient descent is exact for "
                         "a problem with a common eigenbasis only; drop one of them")
    lam, sigma2, syy, _ = theory_spectrum(problem, what)
    L, eps = problem.depth, problem.init_scale
    t_gf = _to_gf_time(times, units, L, objective)
    steps = steps_of(t_gf, lr)
    if steps.size and steps.max() > MAX_MAP_STEPS:
        from ...core.resources import ResourceError
        raise ResourceError(f"times up to t = {float(np.max(t_gf)):.4g} at lr = {lr:g} are {int(steps.max()):.3g} steps of the "
                            f"discrete map, more than {MAX_MAP_STEPS:.0e} (~1 s, and not interruptible once started): "
                            "a shorter horizon, a larger lr, or (at so small a step the map is the flow to O(lr)) "
                            "no lr for the flow theory")
    x0 = np.full(lam.size, eps ** (1.0 / L))
    with np.errstate(over="ignore", invalid="ignore"):
        x = discrete_modes(objective, lam, sigma2, x0, L, lr, steps)
        modes, loss = _modes_and_loss(x, lam, sigma2, syy, L=L, head=objective.head,
                                      self_target=objective.target == "self", xp=np)
    slope = map_slope(objective, lam, sigma2, L)
    limit = float(2.0 / slope.max())
    bad = ~np.all(np.isfinite(x), axis=0)
    if bad.any():
        warnings.warn(f"{what}: the discrete map of gradient descent diverges for feature(s) {np.flatnonzero(bad).tolist()} "
                      f"at lr = {lr:g}: its stability limit at the fixed point is lr < 2 / g'(x*) = {limit:.6g} "
                      "(theory/discrete.md sec. 2)", RuntimeWarning, stacklevel=4)
    fields = {"modes": modes, "gains": np.abs(modes), "loss": loss}
    if objective.head:
        fields["head"] = x
    settings = {"units": units, "objective": objective.name, "lr": lr, "steps": int(steps.max(initial=0)),
                "map_stability_limit": limit, **versions()}
    with np.errstate(invalid="ignore"):
        fp = objective.fixed_point(lam / sigma2, L)
    return Trajectory(t=np.asarray(times, float), fields=fields, kind="theory", model=objective.name,
                      problem=problem, settings=settings, fixed_point=fp, method="discrete", primary="modes")


#: with several processes, a theory grid with at least this many features is split over the devices of
#: every process.  Not within one process: on one CPU host the split grid ran 7x slower than one device
#: (10^4 features x 10^3 times: 0.78 s against 0.11 s; XLA already threads one device's elementwise work)
SPLIT_FEATURES = 4096


def _fast_grid(objective, k, n, t_gf, pref, I0, psi0, scale, lam, sigma2, syy, *, L, head, self_target):
    """(modes, loss, x) by the tabulated inverse clock for features on the learning branch.

    After ``jax.distributed.initialize``, a large grid (>= SPLIT_FEATURES features) is split along the
    features over the devices of every process (as the simulators split their runs:
    ``dynamics.core.distributed``); every process gets the whole result."""
    tab = clock_table(k, n)
    per = [pref, I0, np.log(psi0), scale, lam, sigma2, syy]
    F = np.size(lam)
    ndev = jax.device_count()
    split = multiprocess() and ndev > 1 and F >= SPLIT_FEATURES
    if split:
        pad = (-F) % ndev
        # padding features: valid clock inputs, and zero lam / sigma2 / syy so that they add nothing to the loss
        per = [np.concatenate([np.asarray(a, float), np.full(pad, 0.0 if i >= 4 else np.asarray(a, float)[-1])])
               for i, a in enumerate(per)]
        mesh = batch_mesh(jax.devices())
        feat = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
        rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        args = [global_put(np.asarray(t_gf, float), rep)] + [global_put(a, feat) for a in per] + [
            global_put(np.asarray(tab.coef), rep)]
    else:
        args = [jnp.asarray(t_gf)] + [jnp.asarray(a) for a in per] + [jnp.asarray(tab.coef)]
    modes, loss, x = _exact_on_grid(*args, L=L, head=head, self_target=self_target, key0=tab.key0,
                                    n_neg=tab.n_neg, c_top=tab.c_top)
    modes, loss = to_host(modes)[:, :F], to_host(loss)
    return modes, loss, (None if x is None else to_host(x)[:, :F])


@functools.partial(jax.jit, static_argnames=("L", "head", "self_target", "key0", "n_neg", "c_top"))
def _exact_on_grid(t, pref, I0, lnpsi0, scale, lam, sigma2, syy, coef, *, L, head, self_target, key0,
                   n_neg, c_top):
    """Modes (T, F), loss (T,) and head modes (or None) from the clock: psi = G(I(psi0) + t / pref)."""
    c = I0[None, :] + t[:, None] / pref[None, :]
    lnpsi = ln_psi_of_clock(c, coef, key0=key0, n_neg=n_neg, c_top=c_top)
    lnpsi = jnp.where(t[:, None] == 0, lnpsi0[None, :], lnpsi)     # t = 0: the init itself
    x = scale[None, :] * jnp.exp(lnpsi)
    modes, loss = _modes_and_loss(x, lam, sigma2, syy, L=L, head=head, self_target=self_target, xp=jnp)
    return modes, loss, (x if head else None)


def _modes_and_loss(x, lam, sigma2, syy, *, L, head, self_target, xp):
    """Encoder modes x^L and the population loss per time (summed over features) from the per-layer
    modes x (T, F): A = head * encoder, T = the encoder (self) or 1, loss = sum 1/2 A^2 sigma2 - A T lam
    + 1/2 T^2 syy (theory/jepa.md sec. 2 in the eigenbasis)."""
    modes = x ** L
    a = x * modes if head else modes
    tgt = modes if self_target else 1.0
    return modes, xp.sum(0.5 * a ** 2 * sigma2 - a * tgt * lam + 0.5 * tgt ** 2 * syy, axis=1)


def warn_never_learned(objective, psi0):
    bad = np.nonzero(psi0 >= 1.0)[0]
    if bad.size:
        warnings.warn(f"{objective.name}: feature(s) {bad.tolist()} start at or above their fixed point "
                      "(init_scale^(1/L) >= the fixed point of the per-layer mode): they shrink instead "
                      "of being learned; their critical time is inf", RuntimeWarning, stacklevel=3)


def critical_times_linear(objective, problem, *, fraction=0.5, units="gf", approx=None):
    """Exact time at which each encoder mode reaches ``fraction`` of its fixed point (inf if never).
    ``approx="generalized"``: of each generalised mode (theory/generalized.md), inf where lam <= 0."""
    fraction = check_fraction("fraction", fraction)
    check_choice("units", units, {"gf", "paper"})
    check_instance("problem", problem, LinearProblem, "a problem object (an SSLProblem or a RegressionProblem)")
    if not problem.plain:       # a shaped network: the kept features' times, inf for the others
        return on_kept(objective, problem, "critical_times", lambda sub: critical_times_linear(
            objective, sub, fraction=fraction, units=units), fill=np.inf, approx=approx)
    lam, rho, L, eps, scale, psi0 = theory_inputs(objective, problem, "critical_times", approx)
    learned = lam > 0
    k, n = objective.k(L), objective.n(L)
    psi_p = fraction ** (1.0 / L)
    p0 = np.where(learned, psi0, 0.5)
    tau = np.asarray(elapsed(p0, np.full_like(p0, psi_p), k, n))
    with np.errstate(invalid="ignore", over="ignore"):      # 0 * inf out of range: redone below
        t = objective.pref(np.where(learned, lam, 1.0), np.where(learned, rho, 1.0), L) * tau
    t = np.where(psi0 >= 1.0, np.inf, np.where(psi0 >= psi_p, 0.0, t))
    t = np.where(learned, t, np.inf)
    # where the rescaled clock or its prefactor is out of float64's range but the time is not (depth 64 at a
    # large rho, an init near 1e-300): the same integral in the network's own variables
    pref = objective.pref(np.where(learned, lam, 1.0), np.where(learned, rho, 1.0), L)
    redo = learned & (psi0 < psi_p) & (~np.isfinite(t) | _clock_out_of_range(objective, k, n, psi0, pref, np.zeros(1)))
    if np.any(redo):
        sigma2 = lam / rho
        t[redo] = _critical_times_by_quadrature(objective, lam[redo], sigma2[redo], eps ** (1.0 / L),
                                                (scale * psi_p)[redo], L)
    warn_never_learned(objective, p0)
    t = t * L if units == "paper" else t
    overflow = learned & (psi0 < psi_p) & ~np.isfinite(t)
    if np.any(overflow):      # learned eventually, but later than float64 can say: not "never"
        warnings.warn(f"the critical time of feature(s) {np.flatnonzero(overflow).tolist()} exceeds the float64 "
                      "range (> 1.8e308): returned as inf although the feature is learned eventually (a larger "
                      "init_scale brings it into range)", RuntimeWarning, stacklevel=3)
    return t
