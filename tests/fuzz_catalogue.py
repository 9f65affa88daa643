"""The argument fuzzer's catalogue: one valid, cheap call of every public callable, and the mutations
applied to one argument at a time (tests/test_fuzz.py, ``make fuzz``, docs/arguments.md).

A mutated call must end in one of two ways:

* ``clear``: a ``ValueError`` / ``TypeError`` (or a subclass: ``ResourceError``, ``SpecError``), or a
  ``DivergenceError`` (a learning rate too large for the run) or a ``FileNotFoundError``, whose message
  names the mutated argument;
* ``ok``: a result with no NaN in it (inf is allowed: "never learned" is a legitimate answer), or a NaN
  that a warning explains (a documented "there is no such value", e.g. no fixed point).

Anything else is a finding: ``unclear`` (another exception, or an error that does not name the
argument), ``nan`` (a NaN in the result: a silently wrong number) or ``hang`` (over the time limit).

``CALLS`` maps each public name (as ``dynamics.<name>`` or ``dynamics.<Class>.<classmethod>``) to a
function returning ``(callable, args, kwargs)``; ``NOT_CALLED`` names the public objects that are not
called directly and why.  ``test_fuzz.test_every_public_callable_is_catalogued`` fails when a public
name is in neither, so a new public function is fuzzed as soon as it has a valid call here.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import signal
import tempfile
import warnings

import numpy as np

import dynamics as dy

# ------------------------------------------------------------------------------------------ fixtures
_CACHE: dict = {}


def _once(name, make):
    if name not in _CACHE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _CACHE[name] = make()
    return _CACHE[name]


def P():
    return _once("P", lambda: dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 2, 0.05))


def R():
    return _once("R", lambda: dy.RegressionProblem.from_spectrum([1.0, 0.5], [1.2, 0.8], 2, 0.05))


def DLN():
    return _once("DLN", lambda: dy.DLNProblem.random(12, 3, beta_star=[1.0, -0.5, 0.0], init_scale=1e-3, key=0))


def GDDLN():
    return _once("GDDLN", lambda: dy.simulate_dln(DLN(), lr=0.05, steps=20, progress=False))


def ATT():
    return _once("ATT", lambda: dy.AttentionProblem.teacher_student(8, 3, 2, init_scale=1e-2, key=0))


def BYOL():
    return _once("BYOL", lambda: dy.BYOLProblem.isotropic(3, 0.5, eta=0.02, w0=0.3, p0=0.3))


def HEAD():
    return _once("HEAD", lambda: dy.HeadProblem(d=8, patches=4, feature_patches=1, batch=16, eval_batch=16,
                                                noise_bank=64))


def STEP():
    return _once("STEP", lambda: dy.StepwiseProblem.from_spectrum([1.0, 0.5], 1e-2, key=0))


def PG():
    return _once("PG", lambda: dy.PolicyGradientProblem.tabular(4, [0.2, 0.05]))


def R2():
    return _once("R2", lambda: dy.RegressionProblem.from_covariances(np.eye(2), np.diag([2.0, 1.0]), depth=2,
                                                                     init_scale=0.3))


def ADAM():
    return _once("ADAM", lambda: dy.AdamSpikesProblem.regression(np.diag([1.0, 0.5]), np.diag([1.0, 0.3])))


def ADAM_RUN():
    return _once("ADAM_RUN", lambda: dy.simulate_adam(ADAM(), lr=0.01, steps=300, record_every=10, beta2=0.99))


def SIM():
    return _once("SIM", lambda: dy.simulate_jepa(P(), lr=0.05, steps=40, record_every=10, progress=False))


def TH():
    return _once("TH", lambda: dy.solve_jepa(P(), times=SIM().t))


def STAGES():
    return _once("STAGES", lambda: dy.stages(DLN()))


def DUAL():
    return _once("DUAL", lambda: dy.simulate_dln(DLN(), method="dual", tau_max=2.0, progress=False))


def HEADSIM():
    return _once("HEADSIM", lambda: dy.simulate_head(HEAD(), steps=20, record_every=5, progress=False))


def SAVED():
    def make():
        path = tempfile.mkdtemp(prefix="dynamics-fuzz-") + "/run.npz"
        SIM().save(path)
        return path
    return _once("SAVED", make)


_Q = dict(progress=False)
CALLS = {
    "SSLProblem.from_spectrum": lambda: (dy.SSLProblem.from_spectrum, ([1.0, 0.5], [0.8, 1.0], 2, 0.05), {}),
    "SSLProblem.from_covariances": lambda: (dy.SSLProblem.from_covariances,
                                            (np.diag([1.0, 0.5]), np.diag([0.8, 0.5]), 2, 0.05), {}),
    "SSLProblem.from_generative": lambda: (dy.SSLProblem.from_generative, ("static", [1.0, 0.6], [1.5, 0.0], 2, 0.05),
                                           {}),
    "SSLProblem.from_samples": lambda: (dy.SSLProblem.from_samples,
                                        (np.random.default_rng(0).normal(size=(40, 2)),
                                         np.random.default_rng(1).normal(size=(40, 2)), 2, 0.05), {}),
    "RegressionProblem.from_spectrum": lambda: (dy.RegressionProblem.from_spectrum, ([1.0, 0.5], [1.2, 0.8], 2, 0.05),
                                                {}),
    "random_rotation": lambda: (dy.random_rotation, (3,), {"key": 0}),
    "simulate_jepa": lambda: (dy.simulate_jepa, (P(),), dict(lr=0.05, steps=20, record_every=5, **_Q)),
    "simulate_mae": lambda: (dy.simulate_mae, (P(),), dict(lr=0.05, steps=20, record_every=5, **_Q)),
    "solve_jepa": lambda: (dy.solve_jepa, (P(),), {"times": [0.0, 1.0, 10.0], "lr": 0.5}),
    "solve_mae": lambda: (dy.solve_mae, (P(),), {"times": [0.0, 1.0, 10.0]}),
    "max_stable_lr": lambda: (dy.max_stable_lr, ("jepa", P()), {"init": None}),
    "critical_times": lambda: (dy.critical_times, (P(), "jepa", 0.5), {}),
    "critical_times_asymptotic": lambda: (dy.critical_times_asymptotic, (P(), "jepa"), {}),
    "fixed_points": lambda: (dy.fixed_points, (P(), "jepa"), {}),
    "generalized_modes": lambda: (dy.generalized_modes, (P(),), {}),
    "generalized_fixed_points": lambda: (dy.generalized_fixed_points, (P(), "jepa"), {}),
    "commutator": lambda: (dy.commutator, (P(),), {}),
    "finite_sample_study": lambda: (dy.finite_sample_study, (P(), [60]), dict(resamples=2, records=60)),
    "datasets.image_views": lambda: (dy.datasets.image_views, ("neighbor",), dict(patch=2, n=50, key=0)),
    "simulate_saxe": lambda: (dy.simulate_saxe, (R(),), dict(lr=0.05, steps=20, record_every=5, **_Q)),
    "solve_saxe": lambda: (dy.solve_saxe, (R(),), {"times": [0.0, 1.0, 10.0], "lr": 0.5}),
    "crosscheck": lambda: (dy.crosscheck, (SIM(), TH()), dict(fraction=0.5, rtol=0.05, ctol=0.05)),
    "load": lambda: (dy.load, (SAVED(),), {}),
    "record_schedule": lambda: (dy.record_schedule, (100,), {"every": 10}),
    "DLNProblem.random": lambda: (dy.DLNProblem.random, (12, 3), dict(beta_star=[1.0, -0.5, 0.0], init_scale=1e-3,
                                                                      key=0)),
    "DLNProblem": lambda: (dy.DLNProblem, (DLN().X, DLN().y, 1e-3), {}),
    "AttentionProblem.teacher_student": lambda: (dy.AttentionProblem.teacher_student, (8, 3, 2),
                                                 dict(init_scale=1e-2, key=0)),
    "stages": lambda: (dy.stages, (DLN(),), {}),
    "crosscheck_stages": lambda: (dy.crosscheck_stages, (DUAL(), STAGES()), {"rtol": 0.05}),
    "simulate_dln": lambda: (dy.simulate_dln, (DLN(),), dict(method="gd", lr=0.05, steps=20, **_Q)),
    "implicit_bias": lambda: (dy.implicit_bias, (DLN(),), {"lr": None}),
    "hyperbolic_interpolator": lambda: (dy.hyperbolic_interpolator, (DLN().X, DLN().y, 0.1), {"shift": None}),
    "effective_init_scale": lambda: (dy.effective_init_scale, (GDDLN(),), {}),
    "simulate_attention": lambda: (dy.simulate_attention, (ATT(),), dict(method="gd", lr=0.05, steps=20, **_Q)),
    "simulate_dense_attention": lambda: (dy.simulate_dense_attention, (ATT(),),
                                         dict(init_scales=[1.0], lr=0.01, steps=10, **_Q)),
    "rotated_teacher": lambda: (dy.rotated_teacher, (8, 3, 3), dict(kq=[1.0, 0.5], vo=[1.0], key=0)),
    "BYOLProblem.isotropic": lambda: (dy.BYOLProblem.isotropic, (3, 0.5), dict(eta=0.02, w0=0.3, p0=0.3)),
    "simulate_byol": lambda: (dy.simulate_byol, (BYOL(),), dict(lr=0.05, steps=20, record_every=5, **_Q)),
    "solve_byol": lambda: (dy.solve_byol, (BYOL(),), {"times": [0.0, 1.0, 5.0]}),
    "solve_byol_batch": lambda: (dy.solve_byol_batch, ([BYOL()],), {"times": [0.0, 1.0, 5.0]}),
    "byol_fixed_points": lambda: (dy.byol_fixed_points, (1.0, 0.05, 0.5), {}),
    "byol_time_to_learn": lambda: (dy.byol_time_to_learn, (0.3, 0.5, 1.0, 0.5), {"eta": 0.02}),
    "byol_collapse_threshold": lambda: (dy.byol_collapse_threshold, (1.0, 0.5), {}),
    "HeadProblem": lambda: (dy.HeadProblem, (), dict(d=8, patches=4, feature_patches=1, batch=16, eval_batch=16,
                                                    noise_bank=64)),
    "simulate_head": lambda: (dy.simulate_head, (HEAD(),), dict(steps=20, record_every=5, **_Q)),
    "head_phases": lambda: (dy.head_phases, (HEADSIM(),), {"threshold": 0.2}),
    "StepwiseProblem.from_spectrum": lambda: (dy.StepwiseProblem.from_spectrum, ([1.0, 0.5], 1e-2), {"key": 0}),
    "simulate_stepwise": lambda: (dy.simulate_stepwise, (STEP(),), dict(lr=0.05, steps=20, record_every=5, **_Q)),
    "solve_stepwise": lambda: (dy.solve_stepwise, (STEP(),), {"times": [0.0, 1.0, 5.0]}),
    "critical_times[stepwise]": lambda: (dy.critical_times, (STEP(),), {"fraction": 0.5}),
    "critical_times[saxe]": lambda: (dy.critical_times, (R(), None, 0.5), {}),
    "PolicyGradientProblem.tabular": lambda: (dy.PolicyGradientProblem.tabular, (4, [0.2, 0.05]), {}),
    "PolicyGradientProblem.linear": lambda: (dy.PolicyGradientProblem.linear, (np.eye(3)[:2], [0, 1], 3, 0.1), {}),
    "simulate_policy_gradient": lambda: (dy.simulate_policy_gradient, (PG(), "rl"),
                                         dict(lr=0.05, steps=20, record_every=5, **_Q)),
    "solve_policy_gradient": lambda: (dy.solve_policy_gradient, (PG(), "rl"), {"times": [0.0, 1.0, 5.0]}),
    "critical_times[policy_gradient]": lambda: (dy.critical_times, (PG(), "sft"), {"fraction": 0.5}),
    "PolicyGradientConfig": lambda: (dy.PolicyGradientConfig, (), dict(objective="sft_then_rl", sft_time=1.0,
                                                                      sft_fraction=0.5)),
    "AdamSpikesProblem.regression": lambda: (dy.AdamSpikesProblem.regression, (np.diag([1.0, 0.5]),
                                                                              np.diag([1.0, 0.3])), dict(depth=2)),
    "AdamSpikesProblem.logistic": lambda: (dy.AdamSpikesProblem.logistic, (np.eye(2), [1.0, -1.0]), dict(depth=1)),
    "simulate_adam": lambda: (dy.simulate_adam, (ADAM(),), dict(lr=0.01, steps=20, record_every=5, beta1=0.9,
                                                                 beta2=0.99, eps=1e-8, **_Q)),
    "AdamConfig": lambda: (dy.AdamConfig, (), dict(beta1=0.9, beta2=[0.99, 0.999], eps=1e-8)),
    "predict_spikes": lambda: (dy.predict_spikes, (ADAM_RUN(),), dict(quiet=0.03, converged=1e-10, drop=0.05,
                                                                      max_cycles=5)),
    "spike_onset": lambda: (dy.spike_onset, (1e-3, 3.0, 0.01, 1e-8), dict(beta1=0.9, beta2=0.999, t0=100.0)),
    "eps_threshold": lambda: (dy.eps_threshold, (0.01, 3.0), dict(beta1=0.9)),
    "adam_threshold": lambda: (dy.adam_threshold, (0.9,), {}),
    "inits.balanced": lambda: (dy.inits.balanced, (R2(), 0.1), dict(scale=0.5, key=0)),
    "RegressionProblem.from_covariances[rectangular]": lambda: (dy.RegressionProblem.from_covariances,
                                                                (np.eye(2), np.array([[1.0, 0.0], [0.0, 0.5], [0.0, 0.0]]),
                                                                 2, 1e-2), dict(widths=[2], kept=[0])),
    "SSLProblem.from_spectrum[embed_dim]": lambda: (dy.SSLProblem.from_spectrum, ([1.0, 0.5], [0.8, 1.0], 2, 1e-2),
                                                    dict(embed_dim=1, kept=[1])),
    "kept_features": lambda: (dy.kept_features, (dy.SSLProblem.from_spectrum([1.0, 0.5], [0.8, 1.0], 1, 1e-2,
                                                                             embed_dim=1),), dict(family="jepa")),
    "network_layers": lambda: (dy.network_layers, (R2(), {"W": np.zeros((2, 2, 2))}), dict(family=None)),
    "solve_saxe[small init]": lambda: (dy.solve_saxe, (R2().with_init_scale(1e-4),),
                                       dict(times=[0.0, 1.0], init="gaussian", key=1)),
    "solve_saxe[init]": lambda: (dy.solve_saxe, (R2(),), dict(times=[0.0, 1.0], init="orthogonal", key=1)),
    "get_family": lambda: (dy.get_family, ("jepa",), {}),
    "Flow": lambda: (dy.Flow, (), dict(rtol=1e-8, max_steps=1000)),
    "Dual": lambda: (dy.Dual, (), dict(rtol=1e-8, max_steps=1000)),
    "GD": lambda: (dy.GD, (), dict(lr=0.05, steps=20)),
    "DualRK4": lambda: (dy.DualRK4, (), dict(dtau=0.01, steps=20)),
    "simulate": lambda: (dy.simulate, ("jepa", P(), dy.GD(lr=0.05, steps=20)), dict(record_every=5, **_Q)),
    "flow_times": lambda: (dy.flow_times, (), dict(t_max=1.0, records=5)),
    "gd_error": lambda: (dy.gd_error, ("jepa", P(), 0.05), dict(t_max=2.0, records=10)),
    "cache_info": lambda: (dy.cache_info, (tempfile.mkdtemp(),), {}),
    "lr_for": lambda: (dy.lr_for, ("jepa", P(), 0.05), dict(t_max=2.0, records=10)),
    "LinearConfig": lambda: (dy.LinearConfig, (), dict(init="gaussian", batch_size=8, ema=0.9)),
    "BYOLConfig": lambda: (dy.BYOLConfig, (), dict(init="aligned")),
    "StepwiseConfig": lambda: (dy.StepwiseConfig, (), dict(init="random")),
    "HeadConfig": lambda: (dy.HeadConfig, (), dict(head=True, batchnorm=False, full_batch=True)),
    "DenseAttentionConfig": lambda: (dy.DenseAttentionConfig, (), dict(d_head=4, init_scale=[1.0, 0.5])),
    "simulate[config]": lambda: (dy.simulate, ("jepa", P(), dy.GD(lr=0.05, steps=20)),
                                 dict(config=dy.LinearConfig(ema=[0.5, 0.9]), record_every=5, **_Q)),
}

# public objects that are not called with user arguments, and why
NOT_CALLED = {
    "SSLProblem": "built through its from_* constructors (fuzzed)",
    "RegressionProblem": "built through from_spectrum (fuzzed)",
    "GeneralizedModes": "a result (returned by generalized_modes)",
    "ApproximationWarning": "a warning class",
    "FiniteSampleStudy": "a result (returned by finite_sample_study)",
    "Trajectory": "a result (returned by simulate_* / solve_*; load() is fuzzed)",
    "CrossCheck": "a result (returned by crosscheck)",
    "BatchCrossCheck": "a result (returned by crosscheck)",
    "DivergenceError": "an exception class",
    "AttentionProblem": "built through teacher_student / rotated_teacher (fuzzed)",
    "Stages": "a result (returned by stages)",
    "StageCheck": "a result (returned by crosscheck_stages)",
    "BYOLProblem": "built through isotropic (fuzzed)",
    "StepwiseProblem": "built through from_spectrum (fuzzed)",
    "PolicyGradientProblem": "built through tabular / linear (fuzzed)",
    "AdamSpikesProblem": "built through regression / logistic (fuzzed)",
    "SpikePrediction": "a result (returned by predict_spikes)",
    "SpikeCycle": "a result (one cycle of a SpikePrediction)",
    "Family": "the base class of a family (the contract tests cover it)",
    "Config": "the abstract base of the family configurations (each final one is fuzzed)",
    "NoConfig": "takes no arguments",
    "UVConfig": "takes no arguments",
    "Theory": "a family's theory record (returned by Family.theory; the contract tests cover it)",
    "Example": "a family's example (the contract tests cover it)",
    "registered_families": "takes no arguments",
    "StepSizeAdvice": "a result (returned by lr_for)",
    "ResourceError": "an exception class",
    "AbstractStepper": "the abstract base class of the steppers (GD, Flow, Dual, DualRK4 are fuzzed)",
    "AbstractAdaptive": "the abstract base class of the adaptive steppers (Flow, Dual are fuzzed)",
    "enable_cache": "switches the process's compilation cache (tests/test_cache.py checks its arguments)",
    "disable_cache": "takes no arguments",
    "clear_cache": "deletes a folder's cache entries: not fuzzed with mutated paths (tests/test_cache.py)",
    "verify_cache": "deletes a folder's damaged entries: not fuzzed with mutated paths (tests/test_cache.py)",
    "CacheInfo": "a result (returned by cache_info)",
    "CacheWarning": "a warning class",
    "StabilityLimit": "a result (returned by max_stable_lr)",
    "ImplicitBias": "a result (returned by implicit_bias)",
    "EndpointCheck": "a result (returned by crosscheck against an ImplicitBias)",
}

# ------------------------------------------------------------------------------------------ mutations
MUTATIONS = {
    "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "negative": -1.0, "zero": 0, "huge": 1e308,
    "giant_int": 10 ** 12, "str": "x", "none": None, "empty_list": [], "bool": True,
    "matrix": np.ones((2, 2, 2)), "long_list": [1.0, 2.0, 3.0, 4.0, 5.0], "nan_array": np.array([math.nan, 1.0]),
    "float32_array": np.array([0.5, 1.0], dtype=np.float32), "dict": {"a": 1}, "complex": 1 + 2j,
}


def argument_names(fn, args, kwargs):
    """[(name, position or None)] of the arguments of a catalogued call, positional ones first."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = []
    for i in range(len(args)):
        names.append((params[i].name if i < len(params) else f"arg{i}", i))
    names += [(k, None) for k in kwargs if k != "progress"]
    return names


def mutated(fn, args, kwargs, name, pos, value):
    args, kwargs = list(args), dict(kwargs)
    if pos is not None:
        args[pos] = value
    else:
        kwargs[name] = value
    return args, kwargs


class _Timeout(Exception):
    """A call ran past its time limit (raised by the SIGALRM handler)."""


def _alarm(signum, frame):
    raise _Timeout()


def _has_nan(x, depth=0):
    if depth > 4:
        return False
    if isinstance(x, float):
        return math.isnan(x)
    if isinstance(x, np.ndarray) and x.dtype.kind in "fc":
        return bool(np.isnan(x).any())
    if hasattr(x, "fields") and isinstance(getattr(x, "fields"), dict):        # Trajectory
        return _has_nan(x.fields, depth + 1) or _has_nan(np.asarray(x.t, float), depth + 1)
    if isinstance(x, dict):
        return any(_has_nan(v, depth + 1) for v in x.values())
    if isinstance(x, (list, tuple)):
        return any(_has_nan(v, depth + 1) for v in x[:1000])
    return False


#: the step budget (run-steps) of a fuzzed call: a mutated ``steps`` of 1e7-1e9 is a valid run (the
#: library's own budget is 1e10, about a day of one core) that would take minutes, not a finding; under
#: this budget it is refused up front, which names ``steps`` (``core.resources.check_steps``)
FUZZ_STEP_BUDGET = "1e6"


def classify(fn, args, kwargs, name, timeout=30.0, *, keep=False):
    """(outcome, detail) of one call: "clear", "ok", "unclear", "nan" or "hang".  ``name``: the argument
    (or a tuple of arguments) a clear error names.  keep: (outcome, detail, result) instead."""
    names = (name,) if isinstance(name, str) else tuple(name)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    budget = os.environ.get("DYNAMICS_STEP_BUDGET")
    os.environ["DYNAMICS_STEP_BUDGET"] = FUZZ_STEP_BUDGET
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn(*args, **kwargs)
    except _Timeout:
        return _kept(keep, "hang", f"over {timeout:g} s")
    except (ValueError, TypeError, dy.DivergenceError, FileNotFoundError) as exc:
        msg = str(exc)
        return _kept(keep, "clear" if any(n in msg for n in names) else "unclear",
                     f"{type(exc).__name__}: {msg[:300]}")
    except Exception as exc:  # noqa: BLE001 -- every other exception is a finding
        return _kept(keep, "unclear", f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if budget is None:
            del os.environ["DYNAMICS_STEP_BUDGET"]
        else:
            os.environ["DYNAMICS_STEP_BUDGET"] = budget
    if _has_nan(out):
        named = [w for w in caught if issubclass(w.category, (RuntimeWarning, UserWarning))]
        if named:     # a documented "no such value" (e.g. no fixed point), said in a warning
            return _kept(keep, "ok", f"NaN with a warning: {str(named[0].message)[:200]}", out)
        return _kept(keep, "nan", "a NaN in the result, without a warning", out)
    return _kept(keep, "ok", type(out).__name__, out)


def _kept(keep, outcome, detail, out=None):
    return (outcome, detail, out) if keep else (outcome, detail)


def cases(names=None):
    """Every (callable name, argument name, position, mutation name) of the catalogue."""
    out = []
    for key in sorted(CALLS if names is None else names):
        fn, args, kwargs = CALLS[key]()
        for name, pos in argument_names(fn, args, kwargs):
            for m in MUTATIONS:
                out.append((key, name, pos, m))
    return out


def run_case(key, name, pos, m, timeout=30.0):
    fn, args, kwargs = CALLS[key]()
    a, k = mutated(fn, args, kwargs, name, pos, MUTATIONS[m])
    return classify(fn, a, k, name, timeout)


def run_all(names=None, timeout=30.0):
    """Every fixed mutation of every catalogued call: [(callable, argument, mutation, outcome, detail)]."""
    return [(key, name, m, *run_case(key, name, pos, m, timeout)) for key, name, pos, m in cases(names)]


def table(results) -> str:
    """The argument table of docs/arguments.md, generated from a run of every fixed mutation: for each
    public callable and argument, the hostile values it accepts and those it refuses, with one of its
    error messages (a resource-budget message only where there is no other)."""
    rows = {}
    for key, name, m, outcome, detail in results:
        r = rows.setdefault((key, name), {"ok": [], "refused": [], "msg": None, "budget": None})
        if outcome == "ok":
            r["ok"].append(m)
        else:
            r["refused"].append(m)
            msg = detail.split(": ", 1)[-1].split(" (the budget is")[0]
            msg = msg if len(msg) <= 110 else msg[:107] + "..."
            if "budget" in detail:
                r["budget"] = r["budget"] or msg
            elif r["msg"] is None:
                r["msg"] = msg
    lines = ["# Every public argument and its check", "",
             "Generated by `python tests/fuzz_catalogue.py --table docs/arguments.md` from a run of the fuzzer's",
             "fixed mutations (`tests/fuzz_catalogue.py`): each argument of a valid call of every public callable",
             f"is replaced, one at a time, by each of {len(MUTATIONS)} hostile values ({', '.join(MUTATIONS)}).",
             "*Accepted* values gave a result without a NaN (e.g. a batch of learning rates, or an integer",
             "where a float is expected); *refused* ones a `ValueError` / `TypeError` naming the argument (or a",
             "`DivergenceError` naming the learning rate). `tests/test_fuzz.py` regenerates this table and",
             "fails if it differs, so it cannot drift from the code.", "",
             "| callable | argument | accepted | refused | e.g. |", "|---|---|---|---|---|"]
    for (key, name), r in sorted(rows.items()):
        msg = (r["msg"] or r["budget"] or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key}` | `{name}` | {', '.join(r['ok']) or '-'} | {', '.join(r['refused']) or '-'} | "
                     f"{msg} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ combinations
#: plausible values of arguments that a call may take besides its catalogued ones: options that apply
#: elsewhere, batch axes of other lengths, steppers and grids -- each valid for some call of the library
def _valid():
    return {
        "lr": [0.02, [0.01, 0.02], [0.01, 0.02, 0.03]], "steps": [7, 40], "times": [[0.0, 0.5, 1.0], [1.0, 2.0]],
        "t_max": [1.0], "tau_max": [2.0], "dtau": [0.01], "method": ["gd", "flow", "dual", "dual_rk4"],
        "rtol": [1e-6], "atol": [1e-9], "solver": ["dopri8"], "runs": [2, 3], "key": [3, [1, 2], [1, 2, 3]],
        "init": ["gaussian", "orthogonal", "random", "aligned"], "batch_size": [4], "ema": [0.5, [0.5, 0.9]],
        "record_every": [2], "record_log": [5], "optimizer": ["adam", "momentum"],
        "stepper": [dy.GD(lr=0.02, steps=5), dy.Flow(rtol=1e-6)], "dtype": ["float32"],
        "on_divergence": ["stop"], "fraction": [0.3], "init_scales": [[1.0, 0.5]], "d_head": [1, 3],
        "head": [False], "batchnorm": [False], "full_batch": [True], "snapshots": [True],
        "units": ["paper"], "approx": ["generalized"], "rotate": [True], "init_scale": [1e-2],
        "config": [dy.LinearConfig(init="gaussian")], "per_run": [{"ema": [0.5, 0.9]}], "ctol": [0.1],
        "interpolate": [True],
    }


#: arguments whose value may leave a result unchanged, and why (anything else that does is "ignored")
NO_EFFECT = {
    "key": "a run that draws nothing at random (an aligned init, full-batch gradients) does not use its key",
    "on_divergence": "a run that does not diverge returns the same result either way",
    "record_every": "a horizon shorter than two records of either value gives the same grid",
    "dtype": "a theory or a check that computes in float64 whatever the simulations' dtype",
    "rtol": "an adaptive solve whose steps are clipped to a few record times can take the same steps at either",
    "atol": "an adaptive solve whose steps are clipped to a few record times can take the same steps at either",
    "runs": "equal to the batch size that another argument sets (e.g. two learning rates), it adds nothing",
    "interpolate": "two results on one grid (the catalogue's theory is on its simulation's times) need none",
    "approx": "on the catalogue's problems (commuting covariances) the generalized approximation is exact",
}


#: what a None default of these arguments means (a value equal to it changes nothing)
NONE_MEANS = {"method": "gd", "optimizer": "sgd", "init": "aligned"}
#: the same, for one function's own documented defaults
NONE_MEANS_IN = {("simulate_dense_attention", "optimizer"): "adam",     # the paper's setting
                 ("simulate_head", "lr"): 0.02}


def combination_candidates(fn, args, kwargs):
    """[(name, position or None)]: the call's own arguments and the keywords of its signature that
    ``_valid`` has values for."""
    own = argument_names(fn, args, kwargs)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    taken = {n for n, _ in own}
    extra = [(n, None) for n in params if n in _valid() and n not in taken and n != "progress"]
    return own + extra


def same_result(a, b, depth=0):
    """Whether two results are the same (arrays bit for bit; a Trajectory's times and fields)."""
    if depth > 5:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dy.Trajectory):
        return (same_result(np.asarray(a.t), np.asarray(b.t), depth + 1) and sorted(a.fields) == sorted(b.fields)
                and all(same_result(a.fields[k], b.fields[k], depth + 1) for k in a.fields))
    if isinstance(a, np.ndarray) or np.isscalar(a):
        if np.shape(a) != np.shape(b):
            return False
        try:
            return bool(np.array_equal(a, b, equal_nan=True))
        except TypeError:       # strings, objects: no NaN to compare
            return bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_result(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict):
        return sorted(a) == sorted(b) and all(same_result(a[k], b[k], depth + 1) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same_result(getattr(a, f.name), getattr(b, f.name), depth + 1) for f in dataclasses.fields(a))
    return repr(a) == repr(b)


def combination(fn, args, kwargs, picks, timeout=60.0):
    """(outcome, detail) of a call with several arguments changed at once, ``picks`` = [(name, position,
    value, valid)]: "clear" (an error naming one of them), "ok", or a finding ("unclear", "nan", "hang",
    and "ignored": a valid value of an argument that leaves the result bit-identical to the call without
    it, where the argument is not one of ``NO_EFFECT``)."""
    a, k = list(args), dict(kwargs)
    for name, pos, value, _ in picks:
        a, k = mutated(fn, a, k, name, pos, value)
    names = tuple(n for n, *_ in picks)
    outcome, detail, out = classify(fn, a, k, names, timeout, keep=True)
    if outcome != "ok" or not all(v for *_, v in picks):
        return outcome, detail
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    for i, (name, pos, value, _) in enumerate(picks):
        base = (args[pos] if pos is not None else kwargs[name] if name in kwargs
                else params[name].default if name in params else inspect.Parameter.empty)
        if base is None and name in NONE_MEANS:
            base = NONE_MEANS_IN.get((getattr(fn, "__name__", ""), name), NONE_MEANS[name])
        elif base is None:
            base = NONE_MEANS_IN.get((getattr(fn, "__name__", ""), name), base)
        if name in NO_EFFECT or same_result(value, base):      # the value the call had anyway
            continue
        a2, k2 = list(args), dict(kwargs)
        for j, (n, p, v, _) in enumerate(picks):
            if j != i:
                a2, k2 = mutated(fn, a2, k2, n, p, v)
        o2, _, out2 = classify(fn, a2, k2, names, timeout, keep=True)
        if o2 == "ok" and same_result(out, out2):
            return "ignored", f"{name}={value!r:.60} left the result unchanged"
    return outcome, detail


def random_combinations(n, seed=0):
    """Tally of ``n`` random combinations (as the hypothesis test draws them, from a numpy generator):
    {outcome: count} and the findings."""
    rng = np.random.default_rng(seed)
    valid, keys, tally, findings = _valid(), sorted(CALLS), {}, []
    for _ in range(n):
        key = keys[rng.integers(len(keys))]
        fn, args, kwargs = CALLS[key]()
        cands = combination_candidates(fn, args, kwargs)
        k = min(len(cands), int(rng.integers(2, 4)))
        picks = []
        for i in rng.choice(len(cands), size=k, replace=False):
            name, pos = cands[i]
            if valid.get(name) and rng.random() < 0.5:
                picks.append((name, pos, valid[name][rng.integers(len(valid[name]))], True))
            else:
                m = sorted(MUTATIONS)[rng.integers(len(MUTATIONS))]
                picks.append((name, pos, MUTATIONS[m], False))
        outcome, detail = combination(fn, args, kwargs, picks)
        tally[outcome] = tally.get(outcome, 0) + 1
        if outcome not in ("clear", "ok"):
            findings.append(f"{outcome} {key}(" + ", ".join(f"{a}={v!r:.40}" for a, _, v, _ in picks) + f") :: {detail[:160]}")
    return tally, findings


if __name__ == "__main__":     # python tests/fuzz_catalogue.py [--table docs/arguments.md] [--combinations N]
    import sys
    if "--combinations" in sys.argv:
        n = int(sys.argv[sys.argv.index("--combinations") + 1])
        tally, found = random_combinations(n)
        print("\n".join(found))
        print(f"{n} combinations: {tally}")
        sys.exit(1 if found else 0)
    res = run_all()
    bad = [r for r in res if r[3] not in ("clear", "ok")]
    for r in bad:
        print(f"{r[3]:8} {r[0]}({r[1]}={r[2]}) :: {r[4][:200]}")
    print(f"{len(res)} calls: {len(bad)} finding(s)")
    if "--table" in sys.argv:
        path = sys.argv[sys.argv.index("--table") + 1]
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(table(res))
        print(f"wrote {path}")
    sys.exit(1 if bad else 0)
