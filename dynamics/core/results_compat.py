"""The former ``dynamics.results`` namespace: trajectories, comparison and writing in one place."""

from .compare import BatchCrossCheck, CrossCheck, crosscheck  # noqa: F401
from .io import atomic_write, jsonable, versions  # noqa: F401
from .trajectory import FORMAT, Trajectory, load, records_to_fields, stack_runs  # noqa: F401

_jsonable = jsonable   # the name older scripts used

__all__ = ["Trajectory", "CrossCheck", "BatchCrossCheck", "crosscheck", "load", "FORMAT", "atomic_write",
           "versions", "jsonable", "records_to_fields", "stack_runs"]
