"""The core layer: what every family shares and no family owns.

validation (input checks), keys (one PRNG derivation), linalg, io (atomic writes, JSON, versions),
engine (the one jit-compiled simulator), family (the family contract and its registry), frontend (the
one simulation and theory front-end), trajectory (results, save/load), compare (crosscheck), metrics,
devices (one JAX CPU device per core).  The core imports no family, no plotting and no experiments.
"""
