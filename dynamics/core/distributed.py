"""Several processes (and hosts) through JAX's own multi-controller runtime.

After the standard ``jax.distributed.initialize(...)`` (or a cluster environment JAX reads, e.g. SLURM),
every process runs the same program on the same inputs; ``jax.devices()`` then lists the devices of all
processes.  The engine lays a batch of runs out over those global devices (``engine.batch_layout``):
each process builds the *global* arrays from its full host copy of the inputs
(``jax.make_array_from_callback``: each process supplies the shards of its own devices), the compiled
chunks run on every process's devices at once, and the records are gathered back so that every process
gets the whole result (``to_host``: ``multihost_utils.process_allgather``), identical to the
single-process run of the same batch on the same number of devices.  Decisions that depend on timing
(the engine's chunk size) are taken by process 0 and broadcast, so that every process issues the same
sequence of collective operations.

Saving: only process 0 writes a result file (``Trajectory.save``); the others wait at a barrier until it
is written, so that after ``save`` returns the file exists for every process (on a shared file system).
With one process all of this reduces to ``jax.device_put`` and ``np.asarray``.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["process_count", "process_index", "multiprocess", "global_put", "to_host", "agree", "barrier"]


def process_count() -> int:
    return jax.process_count()


def process_index() -> int:
    return jax.process_index()


def multiprocess() -> bool:
    """True when this program runs as one of several JAX processes (``jax.distributed``)."""
    return jax.process_count() > 1


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _global_leaf(x, sharding):
    if _is_key(x):      # typed PRNG keys: move their data, wrap it again on the devices
        data = _global_leaf(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def global_put(tree, sharding):
    """``jax.device_put(tree, sharding)``, also when ``sharding`` spans other processes' devices: each
    leaf must be the same full array on every process (every process computes the same inputs)."""
    if not multiprocess():
        return jax.device_put(tree, sharding)
    return jax.tree_util.tree_map(lambda x: _global_leaf(x, sharding), tree)


def to_host(x) -> np.ndarray:
    """The whole array on this host: gathered from every process when it is sharded across them."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def agree(value):
    """Process 0's ``value`` on every process (a number: e.g. a step budget measured by the clock)."""
    if not multiprocess():
        return value
    from jax.experimental import multihost_utils
    return type(value)(np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value))).item())


def barrier(name: str):
    """Wait until every process reaches this point (no-op with one process)."""
    if multiprocess():
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
