"""Matplotlib figures for trajectories, cross-checks and the JEPA-vs-MAE comparison.

Convention everywhere: simulation solid, theory dashed (black outline), one colour per feature,
critical times as dotted verticals.  Functions return the matplotlib Figure (or draw on ``ax``).
"""

from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np

from .core.compare import verdict

GF_LABEL = "gradient-flow time t = lr x step"
TAU_LABEL = "rescaled time $t / \\log(1/\\alpha)$"

__all__ = ["plot_trajectory", "plot_pair", "plot_crosscheck", "plot_jepa_vs_mae", "feature_labels", "marks_legend",
           "plot_finite_samples", "plot_image_modes", "plot_kept_features", "plot_hierarchy"]


def feature_labels(problem):
    if problem is None or isinstance(problem, (list, tuple)) or not hasattr(problem, "lam"):
        return None
    return [f"feature {i}: $\\lambda$={lam:.3g}, $\\rho$={rho:.3g}"
            for i, (lam, rho) in enumerate(zip(problem.lam, problem.rho))]


def _colors(n):
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def _curves(traj, y=None):
    """The primary field of one run as (T, F) (a (T,) field becomes one column, (T, a, b) columns)."""
    y = np.asarray(traj.fields[traj.primary_field] if y is None else y, float)
    return y.reshape(y.shape[0], -1) if y.ndim != 1 else y[:, None]


def _ylabel(traj, normalised):
    name = traj.primary_field
    return f"{name} / fixed point" if normalised else name


def plot_trajectory(traj, ax=None, *, normalise=True, style=None, labels=True, log_time=False):
    """The primary field's curves (encoder modes, predictor eigenvalues, beta, ...), normalised by the
    fixed point when known; every run of a batch (thin lines, one colour per feature)."""
    fig, ax = _fig_ax(ax)
    runs = [traj.run(i) for i in range(traj.n_runs)] if traj.batched else [traj]
    style = style or ("-" if traj.kind == "simulation" else "--")
    names = feature_labels(traj.problem) if (labels and len(runs) == 1) else None
    norm = False
    for r, one in enumerate(runs):
        y = _curves(one)
        fp = one.fixed_point
        norm = normalise and fp is not None
        if norm:    # a feature whose fixed point is 0 (not kept by a bottleneck) is drawn as it is
            f = np.asarray(fp, float).reshape(-1)
            y = y / np.where(f != 0, f, 1.0)
        for i, c in enumerate(_colors(y.shape[1])):
            label = names[i] if names is not None else (f"{one.primary_field}[{i}]" if r == 0 and y.shape[1] <= 10 else None)
            ax.plot(one.times(), y[:, i], style, color=c, lw=(2 if style == "-" else 1.5) / (1 + (len(runs) > 1)),
                    label=label)
    ax.set_xlabel(_time_label(traj))
    ax.set_ylabel(_ylabel(traj, norm))
    if len(runs) > 1:
        ax.set_title(f"{traj.model}: {len(runs)} runs (one line each)", fontsize=10)
    if log_time:
        ax.set_xscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def plot_pair(sim, th, ax=None, *, fraction=0.5, normalise=True, legend=True):
    """Simulation (solid) and theory (dashed) on one axis, with the theory's critical times (dotted)
    and the level ``fraction`` of the fixed point (grey) when the family knows its fixed point."""
    fig, ax = _fig_ax(ax)
    fp = th.fixed_point if th.fixed_point is not None else sim.fixed_point
    normalise = normalise and fp is not None
    norm = np.asarray(fp, float).reshape(-1) if normalise else 1.0
    ys, yt = _curves(sim) / norm, _curves(th) / norm
    cols = _colors(ys.shape[1])
    names = feature_labels(th.problem) or [f"{th.primary_field}[{i}]" for i in range(len(cols))]
    for i, c in enumerate(cols):
        ax.plot(sim.t, ys[:, i], "-", color=c, lw=2.2, alpha=0.75, label=names[i] if i < len(names) else None)
        ax.plot(th.t, yt[:, i], "--", color="k", lw=1)
    if fp is not None:
        tc = th.critical_times(fraction) if th.fixed_point is not None else sim.critical_times(fraction)
        for i, c in enumerate(cols[:np.size(tc)]):
            if np.isfinite(tc[i]):
                ax.axvline(tc[i], color=c, ls=":", lw=1)
        if normalise:
            ax.axhline(fraction, color="0.6", lw=0.8)
    ax.set_xlabel(_time_label(sim))
    ax.set_ylabel(_ylabel(th, normalise).replace("modes", "encoder mode"))
    if legend:
        handles, lbls = ax.get_legend_handles_labels()
        mh, ml = marks_legend(sim, th, fraction=fraction if fp is not None else None, normalised=normalise)
        ax.legend(handles + mh, lbls + ml, fontsize=7, loc="best", framealpha=0.85)
    return fig


def marks_legend(sim, th, *, fraction=None, normalised=False):
    """Legend entries (handles, labels) that explain plot_pair's marks: solid = the simulation (its
    method), dashed = the reference, dotted verticals = the reference's critical times, grey = the level
    ``fraction`` of the fixed point."""
    from .core.compare import result_label
    h = [plt.Line2D([], [], color="0.3", lw=2.2, alpha=0.75), plt.Line2D([], [], color="k", ls="--", lw=1)]
    lab = [f"solid: {result_label(sim)} simulation" if sim.kind == "simulation" else f"solid: {result_label(sim)}",
           f"dashed: {result_label(th)}"]
    if fraction is not None:
        h.append(plt.Line2D([], [], color="0.3", ls=":", lw=1))
        lab.append(f"dotted: critical times ({fraction:g} of the fixed point)")
        if normalised:
            h.append(plt.Line2D([], [], color="0.6", lw=0.8))
            lab.append(f"grey: {fraction:g} of the fixed point")
    return h, lab


def plot_crosscheck(report, ax=None):
    """Two panels: the curves (a solid, b dashed; their legend below the panels, not over them) and the
    error |a - b| / max_t |b| per feature (the norm crosscheck uses) with its tolerance (dotted, inside
    the axis: the top of the axis is a decade above the larger of the two)."""
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    else:
        fig, axes = ax.figure, [ax, ax.twinx()]
    plot_pair(report.a, report.b, axes[0], fraction=report.fraction, legend=False)
    floor = 1e-17
    for i, c in enumerate(_colors(report.rel_error.shape[1])):
        axes[1].semilogy(report.t, np.maximum(report.rel_error[:, i], floor), color=c)
    axes[1].axhline(report.rtol, color="k", ls=":", lw=1, label=f"tolerance rtol = {report.rtol:g}")
    top = max(report.rtol, float(np.nanmax(report.rel_error)) if report.rel_error.size else report.rtol)
    axes[1].set_ylim(top=10 * top)
    axes[1].set_xlabel(_time_label(report.a))
    axes[1].set_ylabel(f"|a - b| / max_t |b| of {report.field}")
    axes[1].legend(fontsize=8, loc="lower right")
    handles, lbls = axes[0].get_legend_handles_labels()
    fp = report.b.fixed_point if report.b.fixed_point is not None else report.a.fixed_point
    mh, ml = marks_legend(report.a, report.b, fraction=report.fraction if fp is not None else None,
                          normalised=fp is not None)
    if ax is None:
        fig.legend(handles + mh, lbls + ml, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    else:
        axes[0].legend(handles + mh, lbls + ml, fontsize=7, loc="best", framealpha=0.85)
    axes[0].set_title(f"{report.a.model}: {verdict(report.outcome)} (max error {report.max_rel_error:.2e}, "
                      f"tolerance {report.rtol:g})", fontsize=10)
    return fig


def plot_jepa_vs_mae(pairs, *, fraction=0.5, title=None):
    """Grid: rows = objectives, columns = depths. ``pairs[(objective, depth)] = (sim, theory)``.

    One legend for the whole figure, below the panels (features and marks); each panel's title names the
    feature learned first; a note says that every panel's time axis runs to 1.3x its own last critical
    time (so the rows' scales differ: MAE learns much faster than JEPA)."""
    objectives = sorted({k[0] for k in pairs}, key=lambda o: ["jepa", "mae"].index(o) if o in ("jepa", "mae") else 9)
    depths = sorted({k[1] for k in pairs})
    fig, axes = plt.subplots(len(objectives), len(depths), figsize=(3.6 * len(depths), 3.0 * len(objectives) + 1.1),
                             squeeze=False, constrained_layout=True)
    t_ends = {}
    for r, obj in enumerate(objectives):
        for c, L in enumerate(depths):
            ax = axes[r, c]
            if (obj, L) not in pairs:
                ax.axis("off")
                continue
            sim, th = pairs[(obj, L)]
            plot_pair(sim, th, ax, fraction=fraction, legend=False)
            tc = th.critical_times(fraction)
            first = int(np.argmin(np.where(np.isfinite(tc), tc, np.inf))) if np.any(np.isfinite(tc)) else None
            ax.set_title(f"{obj.upper()}, L = {L}" + (f": feature {first} first" if first is not None else ""),
                         fontsize=10)
            t_ends.setdefault(obj, []).append(float(np.max(sim.t)))
            if c:
                ax.set_ylabel("")
    any_pair = next(iter(pairs.values()))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    mh, ml = marks_legend(*any_pair, fraction=fraction, normalised=any_pair[1].fixed_point is not None)
    fig.legend(handles + mh, labels + ml, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    note = None
    if len(t_ends) > 1:
        spans = ", ".join(f"{o.upper()} to t = {min(v):.3g}-{max(v):.3g}" for o, v in t_ends.items())
        note = f"each panel's time axis ends past its last critical time ({spans}): the scales differ"
    return _suptitle(fig, title, note)


def _label(ax, xlabel, ylabel, title=None, legend=8):
    """Axis labels, legend (font size ``legend``, or None for none) and panel title, in one place."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(fontsize=legend)
    if title:
        ax.set_title(title, fontsize=10)


def _suptitle(fig, title, note=None):
    """The figure's title, with ``note`` (what the reader must know to read it) on a second line; each
    wrapped to the figure's width (a character is ~0.55 of the font size wide), never clipped at its edges."""
    import textwrap
    size = 11 if not note else 9.5
    width = max(20, int(fig.get_figwidth() * 72 / (0.55 * size)))
    text = "\n".join(textwrap.fill(x, width) for x in (title, note) if x)
    if text:
        fig.suptitle(text, fontsize=size)
    return fig


def _fig_ax(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
        return fig, ax
    return ax.figure, ax


def _time_label(traj):
    units = (traj.settings or {}).get("units", "gf")
    return {"paper": "time (paper units, L x t)", "steps": "SGD step", "rescaled": TAU_LABEL}.get(units, GF_LABEL)


def plot_staircase(sims, st, *, title=None):
    """Rank-growth figure: (a) loss against t / log(1/alpha) for several alphas over the predicted
    staircase, (b) coordinates at the smallest alpha over the predicted plateaus, (c) rank / support
    size over time. ``sims``: list of (alpha, Trajectory from the dual integrator or GD)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    ax = axes[0]
    cmap = plt.get_cmap("viridis")
    for j, (a, sim) in enumerate(sims):
        ax.plot(sim.tau, sim.loss, color=cmap(j / max(1, len(sims) - 1)), lw=1.8,
                label=f"gradient flow, $\\alpha$ = {a:.0e}")
    tau_end = max(float(np.max(sim.tau)) for _, sim in sims)
    grid = np.linspace(0, tau_end, 2000)
    ax.plot(grid, st.predict(grid).loss, "k--", lw=1.2, label="stage theory ($\\alpha \\to 0$)")
    ax.set_yscale("log")
    _label(ax, TAU_LABEL, "training loss", "(a) loss converges to the staircase", legend=7)
    ax = axes[1]
    a, sim = sims[-1]
    pred = st.predict(grid).beta
    active = np.nonzero(np.abs(st.points).max(axis=0) > 0)[0]
    cols = _colors(len(active))
    for c, i in zip(cols, active):
        ax.plot(sim.tau, sim.beta[:, i], color=c, lw=2, alpha=0.8, label=f"coordinate {i}")
        ax.plot(grid, pred[:, i], "--", color="k", lw=0.9)
    _label(ax, TAU_LABEL, "$\\beta_i = u_i v_i$", f"(b) coordinates at $\\alpha$ = {a:.0e} (dashed: plateaus)",
           legend=None)
    ax.legend(fontsize=7, ncol=2)
    ax = axes[2]
    thresh = 1e-3 * max(1e-12, np.abs(st.points).max())
    if "ranks" in st.extra:
        p = sim                         # the smallest alpha's run (panel b)
        idx = st.plateau_index(grid)
        ax.step(grid, st.ranks[idx, 0], "--", color="tab:blue", where="post", label="predicted rank $\\Delta W_KW_Q^T$")
        ax.step(grid, st.ranks[idx, 1], "--", color="tab:orange", where="post", label="predicted rank $\\Delta W_VW_O^T$")
        beta = p.beta
        nd = int(st.extra["d"])
        is_q = (np.arange(beta.shape[1]) % (2 * nd)) < nd
        ax.plot(p.tau, (np.abs(beta[:, is_q]) > thresh).sum(1), color="tab:blue", lw=2, alpha=0.6,
                label="simulated (|coordinate| > 1e-3 max)")
        ax.plot(p.tau, (np.abs(beta[:, ~is_q]) > thresh).sum(1), color="tab:orange", lw=2, alpha=0.6)
        ax.set_ylabel("rank of the learned perturbation")
    else:
        idx = st.plateau_index(grid)
        ax.step(grid, [len(st.active[k]) for k in idx], "k--", where="post", label="predicted support size")
        ax.plot(sim.tau, (np.abs(sim.beta) > thresh).sum(1), color="tab:green", lw=2, alpha=0.7,
                label="simulated (|beta_i| > 1e-3 max)")
        ax.set_ylabel("number of active coordinates")
    _label(ax, TAU_LABEL, ax.get_ylabel(), "(c) one coordinate (rank) at a time", legend=7)
    return _suptitle(fig, title)


def plot_dense_rank(sims, *, teacher=None, top=None, title=None):
    """Dense attention: for each optimizer (rows; ``sims`` = {optimizer: Trajectory} or one Trajectory),
    (a) the loss, (b) the singular values of Delta W_K W_Q^T and (c) of Delta W_V W_O^T over time, one
    colour per init scale (the ``top`` largest singular values; log time).  ``teacher`` = (kq, vo): the
    teacher's singular values, drawn as dotted horizontal lines (what the perturbation should reach)."""
    if not isinstance(sims, dict):
        sims = {sims.settings.get("optimizer", "") or "": sims}
    rows = len(sims)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 3.8 * rows + 0.4), squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("plasma")
    for r, (opt, sim) in enumerate(sims.items()):
        scales = np.atleast_1d(sim.settings.get("init_scales", sim.settings.get("init_scale")))
        t = np.asarray(sim.t, float)
        t_plot = np.where(t > 0, t, np.nan)           # log time: the t = 0 record is left out
        k = sim.sv_kq.shape[-1] if top is None else min(top + 1, sim.sv_kq.shape[-1])
        for j, sc in enumerate(scales):
            c = cmap(j / max(1, len(scales)))
            tj = t_plot[j] if t_plot.ndim == 2 else t_plot
            axes[r, 0].loglog(tj, sim.loss[j], color=c, label=f"init scale {sc:g}")
            for col, field in ((1, "sv_kq"), (2, "sv_vo")):
                sv = np.asarray(sim.fields[field])[j][:, 0, 0, :k]
                for i in range(k):
                    axes[r, col].semilogx(tj, sv[:, i], color=c, lw=1.6 if i < k - 1 or top is None else 0.8,
                                          ls="-" if i < k - 1 or top is None else "--",
                                          label=f"init scale {sc:g}" if i == 0 else None)
        if teacher is not None:
            for col, vals in ((1, teacher[0]), (2, teacher[1])):
                for v in vals:
                    axes[r, col].axhline(v, color="k", ls=":", lw=0.9)
        name = f"{opt.upper()}: " if opt else ""
        lr = np.unique(np.atleast_1d(sim.settings.get("lr")))
        lr = ", ".join(f"{x:g}" for x in lr) if lr.dtype.kind in "fi" else str(lr)
        _label(axes[r, 0], "time t = lr x step (log)", "training loss", f"{name}loss (lr {lr})", legend=7)
        extra = "" if top is None else f" (the {k - 1} largest; dashed: the next one)"
        _label(axes[r, 1], "time t = lr x step (log)", "singular values", f"{name}$\\Delta W_K W_Q^T${extra}", legend=7)
        _label(axes[r, 2], "time t = lr x step (log)", "singular values", f"{name}$\\Delta W_V W_O^T${extra}", legend=7)
    note = "dotted: the teacher's singular values" if teacher is not None else None
    return _suptitle(fig, title, note)


def plot_byol_portrait(sim, th, prob, *, fixed_points=None, title=None):
    """SimSiam per-mode flow in the (p, s) plane: vector field, invariant parabola s = p^2/alpha_p,
    the fixed points ``fixed_points`` = (p-, p+) (``dy.byol_fixed_points``; not drawn when None or nan),
    and each mode's trajectory (simulation solid, theory dashed)."""
    x, xa = prob.spectra
    k = float(np.mean((x + xa) / np.maximum(x, 1e-300)))
    ap, eta = prob.alpha_p, prob.eta
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    ax = axes[0]
    pmax = max(1.1 / k, float(np.max(th.p)) * 1.1)
    smax = max(float(np.max(th.s)) * 1.2, pmax ** 2 / ap * 1.1)
    P, S = np.meshgrid(np.linspace(1e-3, pmax, 30), np.linspace(1e-4, smax, 30))
    dP = ap * S * (1.0 - k * P) - eta * P
    dS = 2 * P * S * (1.0 - k * P) - 2 * eta * S
    ax.streamplot(P, S, dP, dS, color="0.75", density=1.0, linewidth=0.7)
    pp_grid = np.linspace(0, pmax, 200)
    ax.plot(pp_grid, pp_grid ** 2 / ap, color="tab:purple", lw=1.2, label="invariant parabola $s = p^2/\\alpha_p$")
    pm, pplus = (np.nan, np.nan) if fixed_points is None else map(float, fixed_points)
    if np.isfinite(pm):
        ax.plot([pm], [pm ** 2 / ap], "o", mfc="w", mec="k", label=f"$p_-$ = {pm:.3g} (unstable)")
        ax.plot([pplus], [pplus ** 2 / ap], "ko", label=f"$p_+$ = {pplus:.3g} (stable)")
    cols = _colors(th.p.shape[1])
    for j, c in enumerate(cols):
        ax.plot(sim.p[:, j], sim.s[:, j], color=c, lw=2.2, alpha=0.7)
        ax.plot(th.p[:, j], th.s[:, j], "--", color="k", lw=0.9)
        ax.plot(th.p[0, j], th.s[0, j], "s", color=c)
    ax.set_xlim(0, pmax)
    ax.set_ylim(0, smax)
    _label(ax, "predictor eigenvalue p", "s = eigenvalue of $WW^T$",
           f"(a) SimSiam phase portrait ($\\eta$ = {eta:g}, $\\sigma^2$ = {k - 1:g})", legend=None)
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[1]
    for j, c in enumerate(cols):
        ax.plot(sim.t, sim.p[:, j], color=c, lw=2.2, alpha=0.7, label=f"mode {j}")
        ax.plot(th.t, th.p[:, j], "--", color="k", lw=0.9)
    if np.isfinite(pm):
        ax.axhline(pm, color="0.5", ls=":", lw=1)
        ax.axhline(pplus, color="0.5", ls=":", lw=1)
    _label(ax, GF_LABEL, "predictor eigenvalue p",
           "(b) simulation (solid) vs per-mode theory (dashed); dotted: $p_-$, $p_+$", legend=7)
    return _suptitle(fig, title)


def plot_alignment(sims, *, title=None):
    """||[F, W_p]|| over time for several weight decays, with Thm 3's bound e^(-2 lambda0 t)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    for j, (eta, sim) in enumerate(sims):
        c = cmap(j / max(1, len(sims) - 1))
        axes[0].semilogy(sim.t, np.maximum(sim.commutator, 1e-16), color=c, lw=2, label=f"$\\eta$ = {eta:g}")
        lam0 = sim.K_min.min()
        if lam0 > 0:
            axes[0].semilogy(sim.t, sim.commutator[0] * np.exp(-2 * lam0 * sim.t), ":", color=c, lw=1)
        axes[1].plot(sim.t, sim.K_min, color=c, lw=2, label=f"$\\eta$ = {eta:g}")
    axes[1].axhline(0, color="k", lw=0.8)
    _label(axes[0], GF_LABEL, "$\\|[F, W_p]\\|_F$ (dotted: bound when K > 0)")
    _label(axes[1], GF_LABEL, "smallest eigenvalue of K")
    return _suptitle(fig, title)


def plot_identity_head(runs, phases, *, title=None):
    """Feature overlaps of each neuron and the head's off-diagonals, per run, with phase times."""
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.5 * (len(runs) + 1), 4), constrained_layout=True)
    styles = {(0, 0): ("tab:blue", "-"), (0, 1): ("tab:blue", "--"), (1, 0): ("tab:red", "-"), (1, 1): ("tab:red", "--")}
    for ax, (name, tr) in zip(axes, runs.items()):
        ov = np.abs(tr.overlaps)
        for (j, l), (c, ls) in styles.items():
            if j < ov.shape[1]:
                ax.plot(tr.t, ov[:, j, l], color=c, ls=ls, lw=2, label=f"|cos(w{j + 1}, v{l + 1})|")
        ph = phases[name]
        for key, col in (("substitution", "tab:orange"), ("weak", "tab:green")):
            if np.isfinite(ph[key]):
                ax.axvline(ph[key], color=col, ls=":", lw=1.2, label=f"{key} ({ph[key]:.3g})")
        _label(ax, GF_LABEL, "feature overlap",
               f"{name}: weak feature {'learned' if ph['weak_learned'] else 'not learned'}", legend=7)
    ax = axes[-1]
    for name, tr in runs.items():
        if "head_offdiag" in tr.fields:
            ax.plot(tr.t, np.abs(tr.head_offdiag).max(axis=1), lw=2, label=name)
    _label(ax, GF_LABEL, "max |off-diagonal of the head|", "the head rises (substitution), then returns to I")
    return _suptitle(fig, title)


def plot_stepwise(sim, th, prob, rnd=None, *, title=None):
    """Barlow-Twins staircase: eigenvalues of C over time (simulation solid, logistic theory dashed),
    the theory's step (half) times dotted; random small-init runs in grey."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    ax = axes[0]
    cols = _colors(sim.eigenvalues.shape[1])
    ts = th.critical_times(0.5)                     # the logistic theory's half times
    for j, c in enumerate(cols):
        ax.plot(sim.t, sim.eigenvalues[:, j], color=c, lw=2.2, alpha=0.75, label=f"$\\gamma$ = {prob.gammas[j]:.3g}")
        ax.plot(th.t, th.eigenvalues[:, j], "--", color="k", lw=0.9)
        ax.axvline(ts[j], color=c, ls=":", lw=1)
    if rnd is not None:
        ev = np.asarray(rnd.eigenvalues)
        ev = ev[None] if ev.ndim == 2 else ev          # one random run is not a batch
        for r in range(ev.shape[0]):
            ax.plot(rnd.t, ev[r], color="0.6", lw=0.8, alpha=0.6)
    _label(ax, GF_LABEL, "eigenvalues of $C = W\\Gamma W^T$",
           "(a) one mode at a time: simulation (solid), logistic theory (dashed),\nits step times (dotted), small random inits (grey)")
    ax = axes[1]
    ax.semilogy(sim.t, sim.loss, lw=2, label="simulation")
    ax.semilogy(th.t, th.loss, "k--", lw=1, label="theory")
    _label(ax, GF_LABEL, "loss $\\|C - I\\|_F^2$", "(b) staircase loss")
    return _suptitle(fig, title)


def plot_policy_gradient(p0, theory, located, shared, reach, *, frac=0.5, title=None):
    """Vanishing gradients in RL finetuning: (a) escape time to p = ``frac`` against the initial reward std
    sqrt(p0 (1 - p0)), closed forms (lines) and the exact flow's located critical times (marks), RL and SFT;
    (b) the mean reward of a policy shared by many inputs, RL only against a short SFT phase on a few inputs
    then RL (the exact flow), each with the time it reaches ``frac`` (dotted)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
    ax = axes[0]
    sigma = np.sqrt(p0 * (1 - p0))
    order = np.argsort(sigma)
    for o, c, m in (("rl", "C3", "o"), ("sft", "C0", "s")):
        ax.loglog(sigma[order], theory[o][order], "-", color=c, lw=1.2, label=f"{o.upper()}: closed form")
        ax.loglog(sigma, located[o], m, color=c, ms=6, mfc="none", label=f"{o.upper()}: exact flow")
    _label(ax, "initial reward std $\\sigma_0 = \\sqrt{p_0(1-p_0)}$", f"time to $p$ = {frac:g}",
           "(a) RL's time grows like $1/\\sigma_0^2$, SFT's like $\\ln(1/\\sigma_0)$")
    ax = axes[1]
    for (name, traj), c in zip(shared.items(), ("C3", "C2")):
        ax.plot(traj.t, traj.reward_mean, color=c, lw=2, label=name)
        if np.isfinite(reach[name]):
            ax.axvline(reach[name], color=c, ls=":", lw=1)
    ax.axhline(frac, color="0.6", lw=0.8)
    _label(ax, GF_LABEL, "mean reward over all inputs",
           "(b) shared features: a little SFT on a few inputs lifts all\n(exact flow; dotted: time to the grey level)",
           legend=7)
    return _suptitle(fig, title)


def plot_adam_spikes(sim, report, grid=None, *, title=None):
    """Adam's late-stage spikes (theory/adam_spikes.md): for one run ``sim`` and its ``report``
    (``dy.predict_spikes``), (a) the loss, (b) the stability ratio lr lambda_max(D^1/2 H D^1/2) / threshold
    (the step is unstable above 1, grey line), (c) the last layer's weight norm (the Slingshot's cycles); each
    with the predicted spikes (dashed: the onset plus the growth from the seed) and the observed spikes (red
    marks).  ``grid`` (optional): rows (label, predicted, observed spike step[, error]) drawn as (d) observed
    against predicted, with the +-10 % band; the error |predicted - observed| / observed."""
    n = 4 if grid else 3
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 3.8), constrained_layout=True)
    step = np.asarray(report.steps)
    done = [c for c in report.cycles if np.isfinite(c.observed)]
    obs_idx = [int(np.searchsorted(step, c.observed)) for c in done]
    curves = ((np.asarray(sim.loss), "loss (above its minimum)", "(a) loss: spikes after convergence", True),
              (report.stability_ratio, "stability ratio (1: Adam's step unstable)",
               "(b) v decays until the ratio reaches 1", False),
              (np.asarray(sim.weight_norm)[:, -1], "last layer's weight norm", "(c) the weight-norm cycles", False))
    for ax, (y, ylabel, head, log) in zip(axes, curves):
        (ax.semilogy if log else ax.plot)(step, y, color="C0", lw=1)
        for c in report.cycles:
            if np.isfinite(c.predicted) and c.predicted <= step[-1]:
                ax.axvline(c.predicted, color="k", ls="--", lw=0.7)
        ax.plot(step[obs_idx], np.asarray(y)[obs_idx], "o", color="C3", ms=4, mfc="none")
        _label(ax, "step", ylabel, head, legend=None)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    axes[1].axhline(1.0, color="0.5", lw=0.8)
    if report.cycles:       # the norm's cycles are small: zoom on the run after convergence
        late = np.asarray(sim.weight_norm)[step >= report.cycles[0].quiet, -1]
        pad = 0.1 * max(float(np.ptp(late)), 1e-12 * float(np.abs(late).max()))
        axes[2].set_ylim(late.min() - pad, late.max() + pad)
        axes[2].set_xlim(report.cycles[0].quiet, step[-1])
    axes[0].plot([], [], "k--", lw=0.7, label="predicted spike")
    axes[0].plot([], [], "o", color="C3", mfc="none", label="observed spike")
    axes[0].legend(fontsize=7, loc="upper right")
    if grid:
        ax = axes[3]
        pred = np.array([g[1] for g in grid], float)
        obs = np.array([g[2] for g in grid], float)
        lo, hi = 0.8 * min(pred.min(), obs.min()), 1.25 * max(pred.max(), obs.max())
        xs = np.geomspace(lo, hi, 50)
        ax.fill_between(xs, 0.9 * xs, 1.1 * xs, color="0.85", label="$\\pm$10 %")
        ax.loglog(xs, xs, "k-", lw=0.7)
        ax.loglog(pred, obs, "o", color="C2", ms=5)
        from matplotlib.ticker import NullFormatter
        for axis in (ax.xaxis, ax.yaxis):       # decade labels only: the minor ones collide on a short range
            axis.set_minor_formatter(NullFormatter())
        err = np.abs(pred - obs) / obs
        _label(ax, "predicted spike (step)", "observed spike (step)",
               f"(d) {len(grid)} runs over (lr, eps, $\\beta_2$): worst {err.max():.1%}", legend=7)
    return _suptitle(fig, title)


def plot_finite_samples(study, ax=None, *, title=None):
    """Critical time of each feature against the sample size n: mean +- standard deviation over the data
    sets (markers, error bars), the population theory (dashed horizontal lines); the fraction of data sets
    that learn in the population's order is written above each n."""
    fig, ax = _fig_ax(ax)
    cols = _colors(study.population.size)
    for i, col in enumerate(cols):
        ax.errorbar(study.ns * (1 + 0.03 * (i - 0.5 * (len(cols) - 1))), study.mean[:, i], yerr=study.std[:, i],
                    fmt="o", color=col, capsize=3, label=f"feature {i}: data sets (mean $\\pm$ std)")
        ax.axhline(study.population[i], color=col, ls="--", lw=1)
    for n, f in zip(study.ns, study.order_fraction):
        ax.annotate(f"{f:.0%}", (n, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    ax.set_xscale("log")
    _label(ax, "samples per data set n", f"critical time ({study.fraction:g} of the fixed point)",
           title or "dashed: population theory; % above: data sets learning in the population order", legend=7)
    return fig


def plot_image_modes(runs, modes, *, top=4, title=None):
    """JEPA and MAE on image patches: (left) the generalised modes' lam and rho; (right) for each
    objective the encoder's gain on the ``top`` modes learned first (flow solid, gd thin, the
    generalised-mode prediction's critical times as dotted verticals).  ``runs[objective] = (flow, gd,
    predicted critical times, order)``; ``modes`` the GeneralizedModes of the problem."""
    objs = list(runs)
    fig, axes = plt.subplots(1, 1 + len(objs), figsize=(4.2 * (1 + len(objs)), 3.6), constrained_layout=True)
    ax = axes[0]
    k = np.arange(modes.rho.size)
    ax.plot(k, modes.rho, "o-", label="$\\rho$ (generalised eigenvalue)")
    ax.plot(k, modes.lam / np.abs(modes.lam).max(), "s-", label="$\\lambda$ / max $\\lambda$")
    ax.axhline(0, color="grey", lw=0.6)
    _label(ax, "generalised mode (sorted by $\\rho$)", "value", "modes of the patch views", legend=7)
    for ax, obj in zip(axes[1:], objs):
        flow, gd, tc, order = runs[obj]
        fp = np.where(np.isfinite(tc), flow.fixed_point, np.nan)
        for j, col in zip(order[:top], _colors(top)):
            ax.plot(flow.t, flow.gains[:, j] / fp[j], color=col, lw=2, label=f"mode {j} ($\\rho$={modes.rho[j]:.2f})")
            if gd is not None:
                ax.plot(gd.t, gd.gains[:, j] / fp[j], color="k", lw=0.6)
            ax.axvline(tc[j], color=col, ls=":", lw=1)
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set_xscale("log")
        _label(ax, GF_LABEL, "gain $\\|\\bar W u_i\\|$ / predicted fixed point",
               f"{obj.upper()}: first {top} modes (flow; black: gd; dotted: predicted)", legend=6)
    return _suptitle(fig, title)


def plot_kept_features(panels, *, title=None):
    """Which features a narrow network keeps (theory/jepa.md "A narrow encoder"; ``dy.kept_features``): one panel
    per entry of ``panels``, each a dict with ``sim`` (a batch of runs from random inits, its ``modes`` the gains
    ||Wbar u_i||), ``theory`` (the aligned init's theory of the predicted kept features), ``kept`` (their indices),
    ``critical_times`` and ``label``.  Thin lines: one per seed and feature, gain over fixed point (colour by
    feature); dashed black: the theory of the kept features; dotted: their critical times."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), constrained_layout=True)
    axes = np.atleast_1d(axes)
    for ax, p in zip(axes, panels):
        sim, th, kept, tc = p["sim"], p["theory"], np.asarray(p["kept"]), np.asarray(p["critical_times"])
        prob = sim.problem[0] if isinstance(sim.problem, (list, tuple)) else sim.problem
        fp = np.asarray(p["fixed_point"], float)
        t = np.asarray(sim.t)
        t = t[0] if t.ndim == 2 else t
        frac = np.asarray(sim.modes) / fp
        frac = frac[None] if frac.ndim == 2 else frac
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, frac.shape[-1]))
        for i, c in enumerate(colors):
            for r in range(frac.shape[0]):
                ax.plot(t, frac[r, :, i], color=c, lw=0.8, label=(f"feature {i} (lam {prob.lam[i]:.3g}, rho "
                                                                  f"{prob.rho[i]:.3g})" if r == 0 else None))
            if i in kept:
                ax.plot(t, np.asarray(th.modes)[:, i] / fp[i], "--", color="k", lw=1.2,
                        label="aligned theory, kept features" if i == kept[0] else None)
                ax.axvline(tc[i], color=c, ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("t (gradient-flow time)")
        ax.set_ylabel("gain / fixed point")
        ax.set_title(p["label"], fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_hierarchy(sim, theory, random_sim, random_theory, levels, names, *, title=None):
    """Saxe's hierarchy (theory/saxe.md, "Any shape"): (a) gradient descent from the aligned init (solid) over the
    exact per-mode theory (dashed), critical times dotted; (b) the same network from a small gaussian init, each
    mode over its fixed point coloured by the tree level it separates (solid), with the small-init stage theory
    (dashed; theory/saxe.md "From a small random init")."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    plot_pair(sim, theory, axes[0], legend=False)
    axes[0].set_title("(a) aligned init: theory over gradient descent", fontsize=10)
    prob = random_sim.problem
    uniq = sorted(set(levels), reverse=True)
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(uniq)))
    m, mt = np.asarray(random_sim.modes), np.asarray(random_theory.modes)
    seen = set()
    for i in range(prob.d):
        lv = uniq.index(levels[i])
        axes[1].plot(random_sim.t, m[:, i] / prob.rho[i], color=colors[lv], lw=1.4,
                     label=None if lv in seen else f"{names[lv]} (s = {prob.lam[i]:.3f})")
        axes[1].plot(random_theory.t, mt[:, i] / prob.rho[i], "--", color="k", lw=0.8,
                     label="stage theory" if i == 0 else None)
        seen.add(lv)
    axes[1].set_xlabel("t (gradient-flow time)")
    axes[1].set_ylabel("mode / fixed point")
    axes[1].set_title("(b) small gaussian init: the stage theory over gradient descent", fontsize=10)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
