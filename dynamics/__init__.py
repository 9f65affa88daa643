"""dynamics: analytic theory and jit-compiled simulation of how deep linear models learn.

Importing ``dynamics`` enables JAX's 64-bit mode (``jax_enable_x64``) for the whole program, because
the theory-vs-simulation cross-checks need float64.  Pass ``dtype=np.float32`` to a simulator for
speed; to keep JAX in 32-bit elsewhere, call ``jax.config.update("jax_enable_x64", False)`` after
importing (the float64 paths then refuse to run and say so).

It also exposes one JAX CPU device per core (``jax_num_cpu_devices``) when the program has not chosen
a count and JAX has not started yet, so that sweeps are split across the cores: see
``dynamics.cpu_devices`` (``DYNAMICS_CPU_DEVICES=1`` turns it off).
"""

__version__ = "0.1.0"

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from .cpu_devices import configure_cpu_devices as _configure_cpu_devices  # noqa: E402

_configure_cpu_devices()

from . import diagonal, engine, hadamard, heads, identity_head, metrics, saxe, stepwise, transformer  # noqa: E402
from .diagonal import DLNProblem, simulate_dln  # noqa: E402
from .engine import DivergenceError, record_schedule  # noqa: E402
from .hadamard import Stages, StageCheck, crosscheck_stages, stages  # noqa: E402
from .heads import (BYOLProblem, byol_collapse_threshold, byol_fixed_points, byol_time_to_learn,  # noqa: E402
                    simulate_byol, solve_byol, solve_byol_batch)
from .identity_head import HeadProblem, head_phases, simulate_head  # noqa: E402
from .jepa import (critical_times, critical_times_asymptotic, fixed_points, simulate_jepa,  # noqa: E402
                   simulate_mae, solve_jepa, solve_mae)
from .problems import RegressionProblem, SSLProblem, random_rotation  # noqa: E402
from .results import CrossCheck, Trajectory, crosscheck, load  # noqa: E402
from .saxe import critical_times_saxe, simulate_saxe, solve_saxe  # noqa: E402
from .stepwise import StepwiseProblem, simulate_stepwise, solve_stepwise, step_times  # noqa: E402
from .transformer import AttentionProblem, simulate_attention, simulate_dense_attention  # noqa: E402

__all__ = [
    "SSLProblem", "RegressionProblem", "random_rotation",
    "simulate_jepa", "simulate_mae", "solve_jepa", "solve_mae", "critical_times",
    "critical_times_asymptotic", "fixed_points",
    "simulate_saxe", "solve_saxe", "critical_times_saxe", "saxe",
    "Trajectory", "CrossCheck", "crosscheck", "load", "DivergenceError", "record_schedule",
    "DLNProblem", "AttentionProblem", "stages", "Stages", "StageCheck", "crosscheck_stages",
    "simulate_dln", "simulate_attention", "simulate_dense_attention",
    "BYOLProblem", "simulate_byol", "solve_byol", "solve_byol_batch", "byol_fixed_points", "byol_time_to_learn",
    "byol_collapse_threshold", "HeadProblem", "simulate_head", "head_phases",
    "StepwiseProblem", "simulate_stepwise", "solve_stepwise", "step_times",
    "engine", "metrics", "hadamard", "diagonal", "transformer", "heads", "identity_head", "stepwise",
    "__version__",
]
