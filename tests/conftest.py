import os

os.environ.setdefault("MPLBACKEND", "Agg")

import dynamics  # noqa: E402,F401  (enables float64 before any test builds arrays)
from dynamics.core.cache import enable_from_environment  # noqa: E402

# compiled programs and tables kept on disk between runs of the suite, as the command line does
# (DYNAMICS_CACHE_DIR=<folder> chooses where, DYNAMICS_CACHE_DIR=off runs without)
_cache = enable_from_environment(default_on=True)
if _cache is not None:
    # the scripts, command lines and workers the tests start in subprocesses use the same folder
    os.environ["DYNAMICS_CACHE_DIR"] = str(_cache)


import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Each compiled XLA:CPU program holds a few dozen memory mappings while any jit cache keeps it; over the
    whole suite (~1,000 tests, thousands of programs) they reached the kernel's vm.max_map_count (65,530) and
    the process died in XLA's executable serialisation (a segfault at the same test every run).  Dropping
    JAX's in-memory caches after each test module keeps the count bounded; the on-disk cache makes the few
    programs compiled again cheap."""
    yield
    jax.clear_caches()
