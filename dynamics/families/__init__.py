"""The model families, one module each (named after the family), registered in ``core.family``.

jepa (JEPA and MAE), saxe, dln, attention (diagonal and dense), byol, identity_head, stepwise,
policy_gradient, adam_spikes.
Shared mechanisms live in packages the families share: ``linear`` (the deep linear network) and
``hadamard`` (the u * v machinery).  A family imports no plotting and no experiments, and another
family only through one of these shared packages.
"""

from . import adam_spikes, attention, byol, dln, identity_head, jepa, policy_gradient, saxe, stepwise  # noqa: F401  (registers them)
