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

import jax
import numpy as np

__all__ = ["as_key", "is_key_sequence", "key_count", "run_keys", "init_key", "step_key", "key_data"]


def as_key(key, name="key"):
    """A JAX PRNG key from a key or an int seed (None is refused: results must be reproducible)."""
    if key is None:
        raise ValueError(f"{name} is required: pass key=jax.random.key(seed) or an int seed")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
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
