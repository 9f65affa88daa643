"""The cases of the reliability issue (round three), run against the current code: each gives the right
number (within 1e-6 relative of an exact reference, mpmath or closed form) or a clear error naming an
argument.  Writes benchmarks/results/reliability.md (the "before" column is the issue's measurement).

    python benchmarks/reliability_cases.py            (about a minute; the Ctrl-C case runs a subprocess)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

import dynamics as dy

S = dy.SSLProblem.from_spectrum
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def right(value, exact, rtol=1e-6):
    v, e = np.asarray(value, float), np.asarray(exact, float)
    ok = v.shape == e.shape and np.all(np.abs(v - e) <= rtol * np.abs(e))
    return ("right" if ok else "WRONG"), f"{np.array2string(v, precision=6)} (exact {np.array2string(e, precision=6)})"


def clear(fn, *names):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
    except (ValueError, TypeError) as e:
        msg = str(e)
        return ("clear error" if any(n in msg for n in names) else "UNCLEAR"), f"{type(e).__name__}: {msg[:110]}"
    except Exception as e:       # noqa: BLE001
        return "UNCLEAR", f"{type(e).__name__}: {str(e)[:110]}"
    return "ACCEPTED", repr(out)[:110]


def jepa_half_time(lam, rho, L, eps):
    """The exact JEPA critical time at half the fixed point: t = int dv / (lam v^2L - sigma2 v^(2L+1)) from
    eps^(1/L) to rho 2^(-1/L), in u = ln v at 30 digits by mpmath (theory/jepa.md sec. 3)."""
    import mpmath
    mpmath.mp.dps = 30
    k, lam, sigma2 = 2 * L, mpmath.mpf(lam), mpmath.mpf(lam) / mpmath.mpf(rho)
    a, b = mpmath.log(mpmath.mpf(eps)) / L, mpmath.log(mpmath.mpf(rho)) + mpmath.log(mpmath.mpf(0.5)) / L
    f = lambda u: mpmath.exp(u) / (lam * mpmath.exp(k * u) - sigma2 * mpmath.exp((k + 1) * u))  # noqa: E731
    return [float(mpmath.quad(f, [a + (b - a) * mpmath.mpf(j) / 24 for j in range(25)]))]


def stepwise_half_times(gammas, s0):
    """t_j = ln(1 / (gamma_j s0^2) - 1) / (8 gamma_j) at 50 digits (theory/stepwise.md)."""
    import mpmath
    mpmath.mp.dps = 50
    return [float(mpmath.log(1 / (mpmath.mpf(g) * mpmath.mpf(s0) ** 2) - 1) / (8 * g)) for g in gammas]


def quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def ctrl_c():
    """The issue's flow (2 runs to t = 1e9), SIGINT after 12 s: seconds to exit and what came back."""
    code = ("import numpy as np, dynamics as dy\n"
            "P = dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, key=3)\n"
            "r = dy.simulate_jepa(P, method='flow', lr=[.01, .02], times=np.linspace(0, 1e9, 2000))\n"
            "print('RESULT', r.status, np.shape(r.t), r.modes.shape, flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                         env={**os.environ, "PYTHONPATH": ROOT})
    time.sleep(12)
    t = time.time()
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        return "HANG", "no exit within 120 s of SIGINT"
    line = next((x for x in out.splitlines() if x.startswith("RESULT")), "no result")
    dt = time.time() - t
    ok = dt < 2.0 and line.startswith("RESULT 1 (1,)")      # status 1, the t = 0 record kept, within 2 s
    return ("right" if ok else "WRONG"), f"exit {dt:.2f} s after SIGINT; status, t, modes: {line[7:]}"


def cases():
    X = np.random.default_rng(0).normal(size=(20, 4))
    y = X @ np.array([1.0, -0.5, 0.0, 0.0])
    d1 = dy.DLNProblem(X, y, 1e-3)
    d8 = dy.DLNProblem(X, 1e8 * y, 1e-3)
    x2 = np.random.default_rng(1).normal(size=(30, 2))
    P = S([1.0, 0.5], [0.8, 1.0], 2, 0.05)
    return [
        ("1", "critical_times(S([1], [1000], 64, 0.01), 'jepa')", "nan",
         lambda: right(dy.critical_times(S([1.0], [1000.0], 64, 0.01), "jepa"), jepa_half_time(1.0, 1000.0, 64, 0.01))),
        ("1", "solve_jepa(S([1], [20], 64, 1e-80), times=[1]).modes", "1.845e83",
         lambda: right(quiet(lambda: dy.solve_jepa(S([1.0], [20.0], 64, 1e-80), times=[1.0]).modes[0]), [1e-80], 1e-3)),
        ("2", "S([1e200, 1], [1e-200, 1], 2, 1e-2)", "sigma2 = inf accepted",
         lambda: clear(lambda: S([1e200, 1.0], [1e-200, 1.0], 2, 1e-2), "sigma2", "lam", "rho")),
        ("3", "critical_times(StepwiseProblem.from_spectrum([1, .5], 1e-160))", "[inf, inf]",
         lambda: right(dy.critical_times(dy.StepwiseProblem.from_spectrum([1.0, 0.5], 1e-160, key=0)),
                       stepwise_half_times([1.0, 0.5], 1e-160), 1e-9)),
        ("3", "critical_times(RegressionProblem.from_spectrum([1], [1e9], 1, 1e-300))", "inf + false warning",
         # depth 1: dv/dt = lam - sigma2 v, v from 1e-300 to rho / 2: t = ln 2 / sigma2 (+ 1e-300 / rho)
         lambda: right(quiet(lambda: dy.critical_times(dy.RegressionProblem.from_spectrum([1.0], [1e9], 1, 1e-300))),
                       [np.log(2.0) * 1e9], 1e-9)),
        ("4", "1e8 x stages(DLNProblem(X, 1e8 y)).times vs stages(DLNProblem(X, y)).times", "201 stages, 200 false ties",
         # y -> c y scales the loss's gradient by c: the same stages at times / c
         lambda: right(1e8 * np.array(quiet(lambda: dy.stages(d8)).times), np.array(quiet(lambda: dy.stages(d1)).times),
                       1e-6)),
        ("5", "Ctrl-C in a batch flow to t = 1e9", "t = (0,), no fields; > 45 s to exit", ctrl_c),
        ("6", "simulate_jepa(P, method='flow', steps=5, lr=0.1, times=[0, 1])", "steps, lr ignored",
         lambda: clear(lambda: dy.simulate_jepa(P, method="flow", steps=5, lr=0.1, times=[0.0, 1.0]), "steps")),
        ("6", "simulate_jepa(P, method='flow', times=[1, 2]).t", "[0, 1, 2]",
         lambda: right(dy.simulate_jepa(P, method="flow", times=[1.0, 2.0]).t, [1.0, 2.0], 0.0)),
        ("6", "simulate_jepa(P, ..., batch_size=4, data=(x, y, z))", "z dropped",
         lambda: clear(lambda: dy.simulate_jepa(P, lr=0.1, steps=2, batch_size=4, data=(x2, x2, x2)), "data")),
        ("6", "simulate_dln(gd, steps=10, tau_max=2)", "tau_max ignored",
         lambda: clear(lambda: dy.simulate_dln(d1, lr=0.01, steps=10, tau_max=2.0), "tau_max")),
        ("6", "simulate_dln(dual, dtau=0.01, times=[0, 1])", "times ignored",
         lambda: clear(lambda: dy.simulate_dln(d1, method="dual", dtau=0.01, times=[0.0, 1.0]), "dtau")),
        ("6", "S(..., rotate=True, basis=I)", "rotate ignored",
         lambda: clear(lambda: S([1.0, 0.5], [0.8, 1.0], 2, 0.05, rotate=True, basis=np.eye(2), key=0), "rotate")),
        ("6", "S(..., key=3) without rotate", "key ignored",
         lambda: clear(lambda: S([1.0, 0.5], [0.8, 1.0], 2, 0.05, key=3), "key")),
        ("6", "simulate_jepa(P, key=[k]).runs", "unbatched",
         lambda: right(dy.simulate_jepa(P, lr=0.1, steps=2, key=[4]).runs, 1, 0.0)),
        ("8", "simulate_jepa(P, ..., data=(x[:0], y[:0]))", "DivergenceError ... try lr = 0.0125",
         lambda: clear(lambda: dy.simulate_jepa(P, lr=0.1, steps=2, data=(x2[:0], x2[:0])), "data")),
        ("8", "simulate_jepa(P, ..., optimizer=lambda lr: None)", "AttributeError from the engine",
         lambda: clear(lambda: dy.simulate_jepa(P, lr=0.1, steps=2, optimizer=lambda lr: None), "optimizer")),
        ("8", "save to a legal 244-character file name", "OSError: File name too long",
         lambda: ("right", "saved") if os.path.exists(dy.simulate_jepa(P, lr=0.1, steps=2).save(
             os.path.join(tempfile.mkdtemp(), "r" * 240 + ".npz"))) else ("WRONG", "not saved")),
        ("8", "crosscheck(depth-2 run, depth-3 theory)", "INCONCLUSIVE",
         lambda: clear(lambda: dy.crosscheck(dy.simulate_jepa(P, lr=0.1, steps=20),
                                             dy.solve_jepa(S([1.0, 0.5], [0.8, 1.0], 3, 0.05), times=np.linspace(0, 2, 21))),
                       "depth")),
        ("8", "lr_for('dln', SSLProblem)", "blames t_max",
         lambda: clear(lambda: dy.lr_for("dln", P, 1e-3), "problem")),
        ("combination", "simulate_jepa(P, ..., key=[])", "(found now) ValueError: min() arg is an empty sequence",
         lambda: clear(lambda: dy.simulate_jepa(P, lr=0.1, steps=2, key=[]), "key")),
        ("combination", "simulate_jepa(P, ..., runs=10**12)", "(found now) MemoryError: 7.28 TiB",
         lambda: clear(lambda: dy.simulate_jepa(P, lr=0.1, steps=2, runs=10 ** 12), "runs")),
        ("combination", "byol_collapse_threshold([], [1, 2, 3, 4, 5])", "(found now) broadcast ValueError",
         lambda: clear(lambda: dy.byol_collapse_threshold([], [1.0, 2.0, 3.0, 4.0, 5.0]), "tau")),
    ]


def main():
    rows = []
    for item, what, before, fn in cases():
        try:
            outcome, detail = fn()
        except Exception as e:       # noqa: BLE001
            outcome, detail = "CRASH", f"{type(e).__name__}: {str(e)[:110]}"
        rows.append((item, what, before, outcome, detail))
        print(f"{outcome:12} {what} :: {detail}", flush=True)
    good = sum(r[3] in ("right", "clear error") for r in rows)
    lines = ["# Reliability, round three: the issue's cases before and after", "",
             "`python benchmarks/reliability_cases.py` runs each case the issue lists (item number) against the code",
             "and classifies it: *right* (within the stated tolerance of an exact reference: mpmath or a closed",
             "form, 1e-6 relative unless the row says otherwise) or *clear error* (naming the argument).  *Before*",
             "is the issue's measurement.  Items 7 (load) and 9 (command line) are covered case by case by",
             "`tests/test_reliability.py` and `tests/test_cli.py`; the combination fuzzer's own findings are the",
             "last rows.", "",
             f"**{good} of {len(rows)} cases right or a clear error.**", "",
             "| item | case | before | now | detail |", "|---|---|---|---|---|"]
    for item, what, before, outcome, detail in rows:
        lines.append(f"| {item} | `{what}` | {before} | {outcome} | {detail.replace('|', '/')} |")
    path = os.path.join(ROOT, "benchmarks", "results", "reliability.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"{good}/{len(rows)}; wrote {path}")


if __name__ == "__main__":
    main()
