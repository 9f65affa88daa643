"""Matplotlib figures for trajectories, cross-checks and the JEPA-vs-MAE comparison.

Convention everywhere: simulation solid, theory dashed (black outline), one colour per feature,
critical times as dotted verticals.  Functions return the matplotlib Figure (or draw on ``ax``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_trajectory", "plot_pair", "plot_crosscheck", "plot_jepa_vs_mae", "feature_labels"]


def feature_labels(problem):
    if problem is None or isinstance(problem, (list, tuple)):
        return None
    return [f"feature {i}: $\\lambda$={lam:.3g}, $\\rho$={rho:.3g}"
            for i, (lam, rho) in enumerate(zip(problem.lam, problem.rho))]


def _colors(n):
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def plot_trajectory(traj, ax=None, *, normalise=True, style=None, labels=True, log_time=False):
    """Mode curves of one trajectory (normalised by the fixed point when known)."""
    fig, ax = _fig_ax(ax)
    modes = np.asarray(traj.modes, float)
    if modes.ndim == 3:
        raise ValueError("plot one run at a time: traj.run(i).plot()")
    fp = traj.fixed_point
    y = modes / fp if (normalise and fp is not None) else modes
    style = style or ("-" if traj.kind == "simulation" else "--")
    names = feature_labels(traj.problem) if labels else None
    for i, c in enumerate(_colors(y.shape[1])):
        ax.plot(traj.t, y[:, i], style, color=c, lw=2 if style == "-" else 1.5,
                label=None if names is None else names[i])
    ax.set_xlabel(_time_label(traj))
    ax.set_ylabel("encoder mode / fixed point" if (normalise and fp is not None) else "encoder mode")
    if log_time:
        ax.set_xscale("log")
    if names:
        ax.legend(fontsize=8)
    return fig


def plot_pair(sim, th, ax=None, *, fraction=0.5, normalise=True, legend=True):
    """Simulation (solid) and theory (dashed) on one axis, with the theory's critical times."""
    fig, ax = _fig_ax(ax)
    fp = th.fixed_point
    norm = fp if (normalise and fp is not None) else 1.0
    cols = _colors(np.shape(sim.modes)[-1])
    names = feature_labels(th.problem) or [f"feature {i}" for i in range(len(cols))]
    for i, c in enumerate(cols):
        ax.plot(sim.t, sim.modes[:, i] / np.atleast_1d(norm)[i % np.size(norm)], "-", color=c, lw=2.2,
                alpha=0.75, label=names[i])
        ax.plot(th.t, th.modes[:, i] / np.atleast_1d(norm)[i % np.size(norm)], "--", color="k", lw=1)
    if fp is not None:
        tc = th.critical_times(fraction)
        for i, c in enumerate(cols):
            if np.isfinite(tc[i]):
                ax.axvline(tc[i], color=c, ls=":", lw=1)
        ax.axhline(fraction if normalise else np.nan, color="0.6", lw=0.8)
    ax.set_xlabel(_time_label(sim))
    ax.set_ylabel("encoder mode / fixed point" if normalise else "encoder mode")
    if legend:
        handles, lbls = ax.get_legend_handles_labels()
        handles.append(plt.Line2D([], [], color="k", ls="--", lw=1))
        lbls.append("theory (dashed)")
        ax.legend(handles, lbls, fontsize=7, loc="lower right")
    return fig


def plot_crosscheck(report, ax=None):
    """Two panels: the curves (simulation vs theory) and the pointwise relative error."""
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    else:
        fig, axes = ax.figure, [ax, ax.twinx()]
    plot_pair(report.a, report.b, axes[0], fraction=report.fraction)
    for i, c in enumerate(_colors(report.rel_error.shape[1])):
        axes[1].semilogy(report.t, np.maximum(report.rel_error[:, i], 1e-17), color=c)
    axes[1].axhline(report.rtol, color="k", ls=":", lw=1, label=f"tolerance {report.rtol:g}")
    axes[1].set_xlabel(_time_label(report.a))
    axes[1].set_ylabel("|simulation - theory| / theory")
    axes[1].legend(fontsize=8)
    axes[0].set_title(f"{report.a.model}: {'PASS' if report.passed else 'FAIL'} "
                      f"(max rel. error {report.max_rel_error:.2e})", fontsize=10)
    return fig


def plot_jepa_vs_mae(pairs, *, fraction=0.5, title=None):
    """Grid: rows = objectives, columns = depths. ``pairs[(objective, depth)] = (sim, theory)``."""
    objectives = sorted({k[0] for k in pairs}, key=lambda o: ["jepa", "mae"].index(o) if o in ("jepa", "mae") else 9)
    depths = sorted({k[1] for k in pairs})
    fig, axes = plt.subplots(len(objectives), len(depths), figsize=(3.6 * len(depths), 3.0 * len(objectives)),
                             squeeze=False, constrained_layout=True)
    for r, obj in enumerate(objectives):
        for c, L in enumerate(depths):
            ax = axes[r, c]
            if (obj, L) not in pairs:
                ax.axis("off")
                continue
            sim, th = pairs[(obj, L)]
            plot_pair(sim, th, ax, fraction=fraction, legend=(r == 0 and c == 0))
            ax.set_title(f"{obj.upper()}, depth L = {L}", fontsize=10)
            if c:
                ax.set_ylabel("")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _fig_ax(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
        return fig, ax
    return ax.figure, ax


def _time_label(traj):
    units = (traj.settings or {}).get("units", "gf")
    return "time (paper units, L x t)" if units == "paper" else "gradient-flow time t = lr x step"
