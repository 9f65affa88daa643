"""Runner for the policy-gradient spec in ``sims/`` (Razin et al. 2024, theory/policy_gradient.md):
policy_gradient_escape.

Panel (a): the tabular model's escape time (to p = ``fraction``) against the initial reward std
sigma0 = sqrt(p0 (1 - p0)) for RL and SFT -- the closed forms as lines, the exact flow of the full softmax
policy as marks (its critical times located by the solver); RL's time grows like 1 / sigma0^2, SFT's like
ln(1 / sigma0).  Panel (b): a linear policy shared by ``n_inputs`` inputs whose features overlap: RL alone
against a short SFT phase on a fraction of the inputs followed by RL, the mean reward over all inputs (the
exact flow; no closed form for shared features); the margin is the ratio of the times to mean reward
``fraction``.
"""

from __future__ import annotations

import numpy as np

from .output import verdict_line
from .spec import NUM, TOP, Experiment, SpecError

__all__ = ["SCHEMAS", "EXPERIMENTS"]

SCHEMAS = {
    "policy_gradient_escape": {**TOP, "problem": {
        "n_outputs": ((int,), False, 50), "p0": ((list,), False, [1e-1, 1e-2, 1e-3, 1e-4]),
        "n_inputs": ((int,), False, 40), "d": ((int,), False, 8), "overlap": (NUM, False, 0.7),
        "p0_shared": (NUM, False, 1e-3), "seed": ((int,), False, 0)},
        "run": {"fraction": (NUM, False, 0.5), "sft_fraction": (NUM, False, 0.05), "sft_time": (NUM, False, 2.0),
                "records": ((int,), False, 300)}},
}


def shared_problem(pb):
    """The linear policy of panel (b): features x_i = normalise(sqrt(overlap) u + sqrt(1 - overlap) g_i), one
    direction u shared by every input, g_i i.i.d. Gaussian; every input's correct output is 0; p_i(0) ~ p0_shared."""
    from ..families.policy_gradient import PolicyGradientProblem
    rng = np.random.default_rng(pb["seed"])
    d, n = pb["d"], pb["n_inputs"]
    u = np.zeros(d)
    u[0] = 1.0
    g = rng.standard_normal((n, d))
    X = np.sqrt(pb["overlap"]) * u + np.sqrt(1 - pb["overlap"]) * g / np.sqrt(d)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    prob = PolicyGradientProblem.linear(X, np.zeros(n, np.int64), pb["n_outputs"], pb["p0_shared"])
    return prob


def _escape(spec, *, seed=None, dtype=None, progress=True, echo=print):
    from ..core.compare import crosscheck
    from ..core.metrics import hitting_times
    from ..families.policy_gradient import PolicyGradientProblem, escape_times, simulate_policy_gradient, \
        solve_policy_gradient
    from ..plot import plot_policy_gradient
    pb, run = spec["problem"], spec["run"]
    frac = run["fraction"]
    p0 = np.asarray(pb["p0"], float)
    tab = PolicyGradientProblem.tabular(pb["n_outputs"], p0)
    theory = {o: escape_times(tab, o, fraction=frac) for o in ("rl", "sft")}
    results, flows, checks = {}, {}, {}
    for o in ("rl", "sft"):
        t = np.linspace(0.0, 1.2 * float(theory[o].max()), run["records"])
        flows[o] = simulate_policy_gradient(tab, o, method="flow", times=t, progress=progress)
        checks[o] = crosscheck(flows[o], solve_policy_gradient(tab, o, times=t))
        echo(verdict_line(f"tabular {o}", checks[o]))
        results[f"tabular_{o}_flow.npz"] = flows[o]
    located = {o: flows[o].critical_times(frac) for o in flows}
    err = max(float(np.max(np.abs(located[o] / theory[o] - 1))) for o in located)
    ratio = theory["rl"] / theory["sft"]
    echo(f"escape to p = {frac:g} (K = {pb['n_outputs']}): RL / SFT = "
         + ", ".join(f"{r:.3g}x at p0 = {q:g}" for r, q in zip(ratio, p0))
         + f"; flow's located critical times within {err:.1e} of the closed forms")
    prob = shared_problem(pb)
    t_rl = 3.0 * float(escape_times(PolicyGradientProblem.tabular(pb["n_outputs"], pb["p0_shared"]), "rl",
                                    fraction=frac)[0]) / pb["n_inputs"]
    grid = np.linspace(0.0, t_rl, run["records"])
    shared = {"RL only": simulate_policy_gradient(prob, "rl", method="flow", times=grid, progress=progress),
              f"SFT on {run['sft_fraction']:.0%} of inputs for t = {run['sft_time']:g}, then RL":
                  simulate_policy_gradient(prob, "sft_then_rl", sft_fraction=run["sft_fraction"],
                                           sft_time=run["sft_time"], method="flow", times=grid, progress=progress)}
    # time to mean reward frac: the hitting time of frac x its fixed point 1 (core.metrics)
    reach = {k: float(hitting_times(np.asarray(v.t), np.asarray(v.reward_mean)[:, None], [1.0], frac)[0])
             for k, v in shared.items()}
    (k_rl, t_a), (k_sft, t_b) = reach.items()
    speedup = t_a / t_b if np.isfinite(t_b) and t_b > 0 else np.nan
    echo(f"shared features (n = {pb['n_inputs']}, overlap {pb['overlap']:g}): mean reward reaches {frac:g} at t = "
         f"{t_a:.4g} with RL only, {t_b:.4g} after the SFT phase ({speedup:.3g}x faster)")
    results.update({"shared_rl_flow.npz": shared[k_rl], "shared_sft_then_rl_flow.npz": shared[k_sft]})
    fig = plot_policy_gradient(p0, theory, located, shared, reach, frac=frac, title=spec["title"] or None)
    summary = {"p0": p0, "escape_rl": theory["rl"], "escape_sft": theory["sft"], "ratio": ratio,
               "flow_critical_time_error": err, "shared_reach": reach, "sft_speedup": speedup,
               "crosschecks": {o: c.to_dict() for o, c in checks.items()}}
    return {"figures": {"policy_gradient_escape": fig}, "summary": summary, "results": results}


def _solve(spec, *, seed=None):
    from ..families.policy_gradient import PolicyGradientProblem, escape_times
    pb, run = spec["problem"], spec["run"]
    tab = PolicyGradientProblem.tabular(pb["n_outputs"], np.asarray(pb["p0"], float))
    return {o: escape_times(tab, o, fraction=run["fraction"]).tolist() for o in ("rl", "sft")}


def _check(spec):
    pb, run = spec["problem"], spec["run"]
    p0 = pb["p0"]
    if not p0 or any(not isinstance(q, (int, float)) or not 0 < q < run["fraction"] for q in p0):
        raise SpecError(f"problem.p0 must be a non-empty list of numbers in (0, run.fraction = {run['fraction']:g}), "
                        f"got {p0!r:.80}")
    if not 0 < pb["p0_shared"] < run["fraction"]:
        raise SpecError(f"problem.p0_shared must be in (0, run.fraction), got {pb['p0_shared']!r}")
    if not 0 <= pb["overlap"] < 1:
        raise SpecError(f"problem.overlap must be in [0, 1), got {pb['overlap']!r}")
    if not 0 < run["sft_fraction"] <= 1 or not 0 < run["fraction"] < 1:
        raise SpecError("run.sft_fraction must be in (0, 1] and run.fraction in (0, 1)")
    if pb["n_outputs"] < 2 or pb["n_inputs"] < 1 or pb["d"] < 1:
        raise SpecError("problem.n_outputs must be >= 2, problem.n_inputs and problem.d >= 1")


EXPERIMENTS = (Experiment("policy_gradient_escape", SCHEMAS["policy_gradient_escape"], _escape, check=_check,
                          solve=_solve),)
