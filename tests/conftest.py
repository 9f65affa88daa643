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
