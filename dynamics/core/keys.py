"""Random keys: one derivation for every family.

A run's stream is derived once from the user's ``key`` (an int seed, a ``jax.random.key`` or a
sequence of either, one per run):

* ``key`` a single seed/key, batch of R runs: run i gets ``fold_in(key, i)`` (so ``runs=1``
  reproduces run 0 of any batch);
* ``key`` a sequence of R seeds/keys: run i gets ``fold_in(key_i, 0)`` (the same as running seed i
  alone).

From a run's key, ``fold_in(run_key, 0)`` draws its initial state and ``fold_in(run_key, 1)`` seeds
the per-step stream of the simulator (minibatches, fresh samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["as_key", "is_key_sequence", "key_count", "run_keys", "init_key", "step_key", "key_data",
           "RunKeys", "derive_run_keys", "unstack_keys"]


def as_key(key, name="key"):
    """A JAX PRNG key from a key or an int seed (None is refused: results must be reproducible)."""
    if key is None:
        raise ValueError(f"{name} is required: pass key=jax.random.key(seed) or an int seed")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not -2 ** 63 <= int(key) < 2 ** 63:
            raise ValueError(f"{name} must be an int seed in [-2**63, 2**63) (a 64-bit integer), got {int(key)}")
        return jax.random.key(int(key))
    try:
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise TypeError(f"{name} must be one key, got an array of keys of shape {key.shape}")
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    except AttributeError:
        pass
    raise TypeError(f"{name} must be a jax.random.key(...) or an int seed, got {type(key).__name__}")


def is_key_sequence(key) -> bool:
    """Whether ``key`` holds one seed/key per run (a list/tuple, a 1-D int array, an array of keys)."""
    if isinstance(key, (list, tuple)):
        return True
    if isinstance(key, np.ndarray) and key.ndim == 1 and key.dtype != np.uint32:
        return True
    try:
        return bool(jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 1)
    except AttributeError:
        return False


def key_count(key) -> int:
    """How many runs ``key`` names (1 for a single seed or key)."""
    return len(key) if is_key_sequence(key) else 1


def run_keys(key, R):
    """One PRNG key per run (module docstring)."""
    if is_key_sequence(key):
        if len(key) != R:
            raise ValueError(f"key: got {len(key)} seeds/keys for a batch of {R} runs")
        return [jax.random.fold_in(as_key(key[i], f"key[{i}]"), 0) for i in range(R)]
    key = as_key(key)
    return [jax.random.fold_in(key, i) for i in range(R)]


def init_key(run_key):
    """The key a run's initial state is drawn from."""
    return jax.random.fold_in(run_key, 0)


def step_key(run_key):
    """The seed of a run's per-step stream (split every step by the engine)."""
    return jax.random.fold_in(run_key, 1)


def key_data(keys):
    """The raw uint32 data of run keys, as nested lists (for a settings record)."""
    return [np.asarray(jax.random.key_data(k)).tolist() for k in keys]


def unstack_keys(keys):
    """A key array of shape (R,) as a list of R keys, through their raw data (``list(keys)`` compiles a
    program for every new length R: ~0.1-0.4 s each; this costs ~20 us a key)."""
    impl = jax.random.key_impl(keys)
    return [jax.random.wrap_key_data(x, impl=impl) for x in np.asarray(jax.random.key_data(keys))]


@dataclass(frozen=True)
class RunKeys:
    """Every key a batch of R runs needs, derived at once (the same keys as ``run_keys``, ``init_key``
    and ``step_key`` one by one, bit for bit): ``run`` / ``init`` / ``step`` hold their raw uint32 data,
    shape (R, ...), on the host; ``impl`` is the PRNG implementation they belong to."""

    run: np.ndarray
    init: np.ndarray
    step: np.ndarray
    impl: object

    def init_key(self, i):
        """Run i's init key (``init_key(run_keys(...)[i])``)."""
        return jax.random.wrap_key_data(self.init[i], impl=self.impl)

    def init_keys(self, sl=slice(None)):
        """The init keys of runs ``sl`` as one key array."""
        return jax.random.wrap_key_data(self.init[sl], impl=self.impl)

    def step_key(self, i):
        """Run i's step key (``step_key(run_keys(...)[i])``)."""
        return jax.random.wrap_key_data(self.step[i], impl=self.impl)

    def step_keys(self, sl=slice(None)):
        """The step keys of runs ``sl`` as one key array (``step_key`` of each)."""
        return jax.random.wrap_key_data(self.step[sl], impl=self.impl)

    def run_data(self):
        """The run keys' raw data as nested lists (``key_data(run_keys(...))``)."""
        return self.run.tolist()


#: runs per compiled key derivation: a batch is derived in blocks of this many runs (the last one padded),
#: so that one program serves every batch size (compiled once per process, not once per R)
KEY_BLOCK = 64


def _fold_run(run):
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    return tuple(jax.random.key_data(k) for k in (run, fold(run, 0), fold(run, 1)))


@jax.jit
def _derive_block(key, offset):
    """Run, init and step keys of runs offset .. offset + KEY_BLOCK - 1 of one seed's batch."""
    idx = offset + jnp.arange(KEY_BLOCK, dtype=jnp.uint32)
    return _fold_run(jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx))


@jax.jit
def _derive_block_from_sequence(base):
    """The same for KEY_BLOCK keys given one per run (run i's key is fold_in(key_i, 0))."""
    return _fold_run(jax.vmap(jax.random.fold_in, in_axes=(0, None))(base, 0))


def derive_run_keys(key, R) -> RunKeys:
    """:class:`RunKeys` for ``key`` and R runs (module docstring), by one compiled program per block of
    ``KEY_BLOCK`` runs instead of 3R small dispatches (each key operation on its own costs ~0.1 ms)."""
    R = int(R)
    n_blocks = -(-R // KEY_BLOCK)
    if is_key_sequence(key):
        if len(key) != R:
            raise ValueError(f"key: got {len(key)} seeds/keys for a batch of {R} runs")
        base = [as_key(key[i], f"key[{i}]") for i in range(R)]
        impls = {str(jax.random.key_impl(k)) for k in base}
        if len(impls) > 1:
            raise ValueError(f"key: the keys of a batch must share one PRNG implementation, got {sorted(impls)}")
        impl = jax.random.key_impl(base[0])
        data = np.stack([np.asarray(jax.random.key_data(k)) for k in base])
        data = np.concatenate([data, np.repeat(data[-1:], n_blocks * KEY_BLOCK - R, axis=0)])
        parts = [_derive_block_from_sequence(jax.random.wrap_key_data(data[b * KEY_BLOCK:(b + 1) * KEY_BLOCK],
                                                                      impl=impl)) for b in range(n_blocks)]
    else:
        base = as_key(key)
        impl = jax.random.key_impl(base)
        parts = [_derive_block(base, np.uint32(b * KEY_BLOCK)) for b in range(n_blocks)]
    run_d, init_d, step_d = (np.concatenate([np.asarray(p[j]) for p in parts])[:R] for j in range(3))
    return RunKeys(run_d, init_d, step_d, impl)
