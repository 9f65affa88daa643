"""dynamics: analytic theory and jit-compiled simulation of how deep linear models learn.

Layers (each imports only the ones before it): ``core`` (validation, keys, engine, the family
contract, the shared front-end, trajectories, crosscheck, metrics), ``exact`` (closed-form mode
integrals), ``families`` (one module per model family, shared packages ``linear`` and ``hadamard``),
``plot``, ``experiments`` (the spec registry) and ``cli``.

Importing ``dynamics`` enables JAX's 64-bit mode (``jax_enable_x64``) for the whole program, because
the theory-vs-simulation cross-checks need float64.  Pass ``dtype=np.float32`` to a simulator for
speed; to keep JAX in 32-bit elsewhere, call ``jax.config.update("jax_enable_x64", False)`` after
importing (the float64 paths then refuse to run and say so).

It also exposes one JAX CPU device per core (``jax_num_cpu_devices``) when the program has not chosen
a count and JAX has not started yet, so that sweeps are split across the cores: see
``dynamics.core.devices`` (``DYNAMICS_CPU_DEVICES=1`` turns it off).  It does not import matplotlib.

With ``DYNAMICS_CACHE_DIR=<folder>`` in the environment it keeps compiled programs and tables on disk
(``dynamics.core.cache``; ``dy.enable_cache()`` does the same from a program, and the command line and
the test suite do it by default).
"""

from .core.version import __version__  # noqa: E402,F401

import sys as _sys

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from .core.devices import configure_cpu_devices as _configure_cpu_devices  # noqa: E402

_configure_cpu_devices()

from .core.cache import enable_from_environment as _enable_cache_from_environment  # noqa: E402

_enable_cache_from_environment()          # DYNAMICS_CACHE_DIR=<folder> keeps compiled programs on disk

from . import core, exact, families  # noqa: E402,F401
from .core import compare, engine, flow, frontend, metrics, stepsize, trajectory  # noqa: E402,F401
from .core.compare import BatchCrossCheck, CrossCheck, crosscheck  # noqa: E402
from .core.chunks import DivergenceError  # noqa: E402
from .core.cache import CacheInfo, CacheWarning, cache_info, clear_cache, disable_cache, enable_cache, verify_cache  # noqa: E402
from .core.engine import record_schedule  # noqa: E402
from .core.flow import flow_times  # noqa: E402
from .core.frontend import max_stable_lr, simulate  # noqa: E402
from .core.stability import StabilityLimit  # noqa: E402
from .core.steppers import AbstractAdaptive, AbstractStepper, Dual, DualRK4, Flow, GD  # noqa: E402
from .core.resources import ResourceError  # noqa: E402
from .core.stepsize import StepSizeAdvice, gd_error, lr_for  # noqa: E402
from .core.family import Example, Family, families as registered_families, get_family  # noqa: E402
from .core.config import Config, NoConfig  # noqa: E402
from .core.theory import Theory  # noqa: E402
from .core.linalg import random_rotation  # noqa: E402
from .core.trajectory import Trajectory, load  # noqa: E402
from .families import adam_spikes, attention, byol, dln, identity_head, jepa, policy_gradient, saxe, stepwise  # noqa: E402
from .families.attention import AttentionProblem, DenseAttentionConfig, rotated_teacher, simulate_attention, simulate_dense_attention  # noqa: E402
from .families.byol import (BYOLConfig, BYOLProblem, byol_collapse_threshold, byol_fixed_points,  # noqa: E402
                            byol_time_to_learn, simulate_byol, solve_byol, solve_byol_batch)
from .families.dln import (DLNProblem, EndpointCheck, ImplicitBias, effective_init_scale,  # noqa: E402
                           hyperbolic_interpolator, implicit_bias, simulate_dln)
from .families.hadamard import api as hadamard  # noqa: E402
from .families.hadamard.family import UVConfig  # noqa: E402
from .families.hadamard.stages import StageCheck, Stages, crosscheck_stages, stages  # noqa: E402
from .families.identity_head import HeadConfig, HeadProblem, head_phases, simulate_head  # noqa: E402
from .families.jepa import (FiniteSampleStudy, commutator, critical_times, critical_times_asymptotic,  # noqa: E402
                            finite_sample_study, fixed_points, generalized_fixed_points, generalized_modes,
                            simulate_jepa, simulate_mae, solve_jepa, solve_mae)
from .core import datasets  # noqa: E402
from .families.linear.generalized import ApproximationWarning, GeneralizedModes  # noqa: E402
from .families.linear.problems import RegressionProblem, SSLProblem  # noqa: E402
from .families.linear.family import LinearConfig, network_layers  # noqa: E402
from .families.linear.family import kept_features_of as kept_features  # noqa: E402
from .families.linear import inits  # noqa: E402
from .families.saxe import simulate_saxe, solve_saxe  # noqa: E402
from .families.stepwise import StepwiseConfig, StepwiseProblem, simulate_stepwise, solve_stepwise  # noqa: E402
from .families.policy_gradient import (PolicyGradientConfig, PolicyGradientProblem,  # noqa: E402
                                       simulate_policy_gradient, solve_policy_gradient)
from .families.adam_spikes import (AdamConfig, AdamSpikesProblem, SpikeCycle, SpikePrediction,  # noqa: E402
                                   adam_threshold, eps_threshold, predict_spikes, simulate_adam, spike_onset)

__all__ = [
    "SSLProblem", "RegressionProblem", "random_rotation",
    "simulate_jepa", "simulate_mae", "solve_jepa", "solve_mae", "critical_times",
    "critical_times_asymptotic", "fixed_points", "generalized_modes", "generalized_fixed_points", "commutator",
    "GeneralizedModes", "ApproximationWarning", "finite_sample_study", "FiniteSampleStudy", "datasets",
    "simulate_saxe", "solve_saxe", "saxe", "inits", "kept_features", "network_layers",
    "Trajectory", "CrossCheck", "BatchCrossCheck", "crosscheck", "load", "DivergenceError", "record_schedule",
    "DLNProblem", "AttentionProblem", "stages", "Stages", "StageCheck", "crosscheck_stages",
    "simulate_dln", "implicit_bias", "ImplicitBias", "EndpointCheck", "effective_init_scale",
    "hyperbolic_interpolator", "simulate_attention", "simulate_dense_attention", "rotated_teacher",
    "BYOLProblem", "simulate_byol", "solve_byol", "solve_byol_batch", "byol_fixed_points", "byol_time_to_learn",
    "byol_collapse_threshold", "HeadProblem", "simulate_head", "head_phases",
    "StepwiseProblem", "simulate_stepwise", "solve_stepwise",
    "PolicyGradientProblem", "PolicyGradientConfig", "simulate_policy_gradient", "solve_policy_gradient",
    "AdamSpikesProblem", "AdamConfig", "simulate_adam", "predict_spikes", "SpikePrediction", "SpikeCycle",
    "adam_threshold", "eps_threshold", "spike_onset",
    "Family", "Example", "get_family", "registered_families", "Config", "NoConfig", "Theory", "LinearConfig",
    "BYOLConfig", "StepwiseConfig", "HeadConfig", "DenseAttentionConfig", "UVConfig",
    "simulate", "GD", "Flow", "Dual", "DualRK4", "AbstractStepper", "AbstractAdaptive", "flow_times", "gd_error", "lr_for", "StepSizeAdvice", "ResourceError",
    "max_stable_lr", "StabilityLimit", "enable_cache", "disable_cache", "cache_info", "clear_cache", "verify_cache", "CacheInfo", "CacheWarning",
    "core", "exact", "families", "engine", "metrics", "hadamard", "dln", "attention", "byol",
    "identity_head", "stepwise", "jepa", "policy_gradient", "adam_spikes",
    "__version__",
]
del _sys
