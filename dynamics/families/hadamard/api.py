"""Everything of the u * v machinery in one namespace (the former ``dynamics.hadamard`` module)."""

from ...core.family import get_family
from ...core.validation import check_instance
from .model import HadamardFamily, HadamardProblem, beta_from_dual, check_alpha  # noqa: F401
from .model import simulate_hadamard as simulate_family
from .stages import StageCheck, Stages, crosscheck_stages, fast_flow, stages  # noqa: F401

__all__ = ["HadamardProblem", "HadamardFamily", "Stages", "StageCheck", "beta_from_dual", "simulate_hadamard",
           "stages", "crosscheck_stages", "fast_flow", "check_alpha"]


def simulate_hadamard(problem, *, method="gd", lr=None, steps=None, tau_max=None, dtau=None, times=None,
                      rtol=None, atol=None, solver=None, record_every=None, record_log=None, runs=1, key=0, dtype=None,
                      optimizer="sgd", progress=None, on_divergence="raise"):
    """``simulate_dln`` / ``simulate_attention`` for any u * v problem (the family from its type)."""
    first = problem[0] if isinstance(problem, (list, tuple)) else problem
    check_instance("problem", first, HadamardProblem, "a DLNProblem or AttentionProblem")
    return simulate_family(get_family(first.name), problem, method=method, lr=lr, steps=steps, tau_max=tau_max,
                           dtau=dtau, times=times, rtol=rtol, atol=atol, solver=solver, record_every=record_every,
                             record_log=record_log, runs=runs, key=key,
                           dtype=dtype, optimizer=optimizer, progress=progress, on_divergence=on_divergence)
