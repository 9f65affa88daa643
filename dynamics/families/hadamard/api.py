"""Everything of the u * v machinery in one namespace: problems, the family, its simulator and stages."""

from ...core.family import get_family
from ...core.validation import check_instance
from .family import HadamardFamily  # noqa: F401
from .family import simulate_uv
from .model import HadamardProblem, beta_from_dual, check_alpha  # noqa: F401
from .stages import StageCheck, Stages, crosscheck_stages, fast_flow, stages  # noqa: F401

__all__ = ["HadamardProblem", "HadamardFamily", "Stages", "StageCheck", "beta_from_dual", "simulate_hadamard",
           "stages", "crosscheck_stages", "fast_flow", "check_alpha"]


def simulate_hadamard(problem, **kwargs):
    """``simulate_dln`` / ``simulate_attention`` for any u * v problem (the family from the problem's
    type); keywords as :func:`dynamics.families.hadamard.family.simulate_uv`."""
    first = problem[0] if isinstance(problem, (list, tuple)) else problem
    check_instance("problem", first, HadamardProblem, "a DLNProblem or AttentionProblem")
    return simulate_uv(get_family(first.name), problem, **kwargs)
