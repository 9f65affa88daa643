"""The on-disk cache: compiled XLA programs and expensive tables, kept between processes.

Most of the time a user waits in a fresh process is XLA compiling programs it compiled in the previous
one, and rebuilding tables that are pure functions of a few integers (the inverse-clock tables of
``exact.mode_tables``).  This module keeps both in one folder:

    <cache dir>/xla/       JAX's persistent compilation cache (its own format and keys: the program's
                           HLO, the compile options, the backend and the JAX version), trimmed to
                           ``max_bytes`` (oldest first) when a process switches it on;
    <cache dir>/tables/    ``cached_arrays`` entries: one ``.npz`` per table, written atomically, keyed
                           by a version, the source of the code that builds it, the versions of JAX,
                           jaxlib and NumPy and the backend, and verified on load (the full key and a
                           SHA-256 of every array); a corrupt or stale entry is rebuilt with a
                           ``CacheWarning``, never used.

What is cached never changes a result: a cached program is the same executable XLA would compile, and
a cached table holds the arrays the builder returned, bit for bit (``tests/test_cache.py`` compares runs
with and without the cache).

Where and when:

* ``DYNAMICS_CACHE_DIR=<folder>`` in the environment turns the cache on for every program that imports
  ``dynamics``; ``DYNAMICS_CACHE_DIR=off`` (or ``0``, ``none``, ``false``, ``no``) turns it off everywhere,
  the command line and the test suite included.
* Unset, the command line (``dynamics ...``) and the test suite use the default folder,
  ``$XDG_CACHE_HOME/dynamics`` (``~/.cache/dynamics``), and a library program runs without a cache until
  it calls ``dy.enable_cache()`` (JAX's compilation cache is process-wide state; the library does not
  switch it on behind a program's back).
* ``dynamics cache info`` / ``clear`` / ``verify`` (or ``dy.cache_info()``, ``dy.clear_cache()``,
  ``dy.verify_cache()``) show it, empty it, or remove its damaged entries (a compiled program cut short
  by a killed process: JAX warns and recompiles it, but keeps the file).  A program that set JAX's own cache folder (``JAX_COMPILATION_CACHE_DIR``) keeps it:
  the default switch-on then caches only the tables.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

__all__ = ["cacheable", "ENV", "CacheWarning", "CacheInfo", "default_cache_dir", "enable_cache", "disable_cache",
           "cache_dir", "cache_info", "clear_cache", "verify_cache", "cached_arrays", "enable_from_environment",
           "DEFAULT_MAX_BYTES", "DEFAULT_MIN_COMPILE_SECS"]

ENV = "DYNAMICS_CACHE_DIR"
_OFF = {"0", "off", "none", "false", "no"}
DEFAULT_MAX_BYTES = 2 ** 30              # the compiled programs' folder is trimmed to this, oldest first
DEFAULT_MIN_COMPILE_SECS = 0.0           # programs that compiled faster than this are not written
_TABLE_FORMAT = 1                        # bump when the entry layout below changes

_lock = threading.Lock()
_eqx_lock = threading.RLock()            # the equinox switch of ``cacheable``
_state = {"dir": None, "xla": False}     # the folder in use (None: off), whether we set JAX's cache
_warned_write = set()


class CacheWarning(UserWarning):
    """A cache entry was unreadable, corrupt or stale (rebuilt), or the cache could not be written."""


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """What a cache folder holds: ``path``; ``enabled`` (whether this process uses it now);
    ``programs`` / ``program_bytes`` (compiled XLA programs); ``tables`` / ``table_bytes``."""

    path: str
    enabled: bool
    programs: int
    program_bytes: int
    tables: int
    table_bytes: int

    def __str__(self):
        mb = 2 ** 20
        return (f"cache {self.path}{' (in use)' if self.enabled else ''}: "
                f"{self.programs} compiled programs ({self.program_bytes / mb:.1f} MiB), "
                f"{self.tables} tables ({self.table_bytes / mb:.1f} MiB)")


def default_cache_dir() -> Path:
    """The default cache folder: XDG_CACHE_HOME/dynamics, or ~/.cache/dynamics when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dynamics"


def _env():
    """(explicitly off, folder or None) from DYNAMICS_CACHE_DIR."""
    raw = os.environ.get(ENV)
    if raw is None or not raw.strip():
        return False, None
    if raw.strip().lower() in _OFF:
        return True, None
    return False, Path(os.path.expanduser(raw.strip()))


def enable_cache(path=None, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 min_compile_secs: float = DEFAULT_MIN_COMPILE_SECS) -> Path | None:
    """Keep compiled programs and tables on disk under ``path`` (default: ``DYNAMICS_CACHE_DIR`` if set,
    else ``default_cache_dir()``), from the next compilation on.  Returns the folder in use (None, with
    a ``CacheWarning``, when it cannot be created).

    ``max_bytes``: the compiled programs' folder is trimmed to this size now, oldest first (> 0).
    ``min_compile_secs``: programs that compiled faster are not written (>= 0).  Results are
    bit-identical with and without the cache.  Call ``disable_cache()`` to stop using it.

    Several processes may share the folder: tables are written atomically; a compiled program is
    written by JAX in place, so a process that reads one while another is still writing it finds it
    damaged, says so (JAX's warning "Error reading persistent compilation cache entry") and compiles
    it itself: the result is the same."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive integer (bytes), got {max_bytes!r}")
    if (isinstance(min_compile_secs, bool) or not isinstance(min_compile_secs, (int, float, np.floating))
            or not np.isfinite(min_compile_secs) or min_compile_secs < 0):
        raise ValueError(f"min_compile_secs must be a finite number >= 0 (seconds), got {min_compile_secs!r}")
    if path is None:
        path = _env()[1] or default_cache_dir()
    folder = _folder(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"path {str(folder)!r} exists and is not a folder")
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    with _lock:
        current = jax.config.jax_compilation_cache_dir
        ours = str(folder / "xla")
        if current and not _state["xla"] and current != ours:
            # the program chose JAX's cache folder itself: keep it, cache only the tables here
            _state.update(dir=folder, xla=False)
            return folder
        try:
            (folder / "xla").mkdir(parents=True, exist_ok=True)
            (folder / "tables").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            warnings.warn(f"the cache folder {str(folder)!r} cannot be created ({exc}); running without a "
                          f"cache (set {ENV} to a writable folder, or to 'off')", CacheWarning, stacklevel=2)
            return None
        _trim(folder / "xla", int(max_bytes))
        jax.config.update("jax_compilation_cache_dir", ours)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)   # every size
        # no eviction inside JAX: its LRU rescans the whole folder under a lock on every write (measured
        # 9 ms at 500 entries, 65 ms at 4,000; the test suite writes thousands); trimmed here instead
        jax.config.update("jax_compilation_cache_max_size", -1)
        jax.config.update("jax_enable_compilation_cache", True)
        cc.reset_cache()              # the next compilation opens the cache with these settings
        _state.update(dir=folder, xla=True)
    return folder


def _trim(xla: Path, max_bytes: int) -> None:
    """Delete the oldest compiled programs (by modification time) until the folder holds at most
    ``max_bytes`` (to 3/4 of it, so that trimming is rare).  One scan per ``enable_cache``."""
    entries = []
    for p in _files(xla, "*"):
        try:
            st = p.stat()
        except OSError:           # removed by another process meanwhile
            continue
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(e[1] for e in entries)
    if total <= max_bytes:
        return
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= 0.75 * max_bytes:
            break
        try:
            p.unlink()
            total -= size
        except OSError:
            pass


def disable_cache() -> None:
    """Stop using the on-disk cache in this process (what is on disk stays; ``clear_cache`` removes it)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    with _lock:
        if _state["xla"]:
            jax.config.update("jax_compilation_cache_dir", None)
            cc.reset_cache()
        _state.update(dir=None, xla=False)


def cache_dir() -> Path | None:
    """The cache folder this process uses, or None when the cache is off."""
    return _state["dir"]


def enable_from_environment(default_on: bool = False) -> Path | None:
    """Switch the cache on as ``DYNAMICS_CACHE_DIR`` says: a folder turns it on there, ``off`` keeps it off;
    unset, ``default_on=True`` (the command line, the test suite) uses ``default_cache_dir()``."""
    off, folder = _env()
    if off or (folder is None and not default_on):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("default", CacheWarning)
        return enable_cache(folder)


def _files(folder: Path, pattern: str):
    try:
        return [p for p in folder.glob(pattern) if p.is_file()]
    except OSError:
        return []


def _folder(path) -> Path:
    if path is None:
        return cache_dir() or _env()[1] or default_cache_dir()
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a cache folder (str or os.PathLike), got {type(path).__name__}")
    return Path(os.path.expanduser(os.fspath(path))).absolute()


def cache_info(path=None) -> CacheInfo:
    """What the cache folder ``path`` (default: the one in use, else the one ``enable_cache()`` would
    use) holds."""
    folder = _folder(path)
    progs = _files(folder / "xla", "*-cache")
    tabs = _files(folder / "tables", "*.npz")
    size = lambda ps: sum(p.stat().st_size for p in ps if p.exists())   # noqa: E731
    return CacheInfo(str(folder), cache_dir() == folder, len(progs), size(progs), len(tabs), size(tabs))


def clear_cache(path=None) -> CacheInfo:
    """Remove every compiled program and table from the cache folder ``path`` (default as
    ``cache_info``); returns what it held.  Safe while other processes use it (they rebuild)."""
    info = cache_info(path)
    folder = Path(info.path)
    for sub in ("xla", "tables"):
        if (folder / sub).is_dir():
            shutil.rmtree(folder / sub, ignore_errors=True)
    if info.enabled:            # keep the folders of a cache in use
        (folder / "xla").mkdir(parents=True, exist_ok=True)
        (folder / "tables").mkdir(parents=True, exist_ok=True)
        from jax.experimental.compilation_cache import compilation_cache as cc
        cc.reset_cache()
    return info


def _program_ok(data: bytes) -> bool:
    """Whether a compiled-program entry decompresses (JAX writes zlib, or zstd where available; both
    carry a checksum) and holds more than its 4-byte compile-time header."""
    import zlib

    try:
        return len(zlib.decompress(data)) > 4
    except zlib.error:
        pass
    try:
        import zstandard
    except ImportError:
        return False
    try:
        return len(zstandard.ZstdDecompressor().decompress(data)) > 4
    except zstandard.ZstdError:
        return False


def verify_cache(path=None) -> tuple[int, int]:
    """Check every entry of the cache folder ``path`` (default as ``cache_info``) and remove the damaged
    ones (a compiled program that does not decompress, a table that is unreadable or fails its
    checksum), so that they are rebuilt.  Returns (entries checked, entries removed).

    JAX itself never runs a damaged program (it warns "Error reading persistent compilation cache entry"
    and compiles afresh) but keeps the file; tables are checked on every load anyway."""
    folder = Path(cache_info(path).path)
    checked = removed = 0
    for p in _files(folder / "xla", "*-cache"):
        checked += 1
        try:
            ok = _program_ok(p.read_bytes())
        except OSError:
            continue
        if not ok:
            p.unlink(missing_ok=True)
            removed += 1
    for p in _files(folder / "tables", "*.npz"):
        checked += 1
        try:
            with open(p, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"]))
                ok = all(_digest(np.array(z[k])) == d for k, d in meta["digests"].items())
        except Exception:
            ok = False
        if not ok:
            p.unlink(missing_ok=True)
            removed += 1
    return checked, removed


# ---------------------------------------------------------------------------------------------------
# programs that JAX would not cache


def cacheable(jitted):
    """``jitted`` (a jitted diffrax solve), traced with equinox's runtime checks as NaNs instead of host
    callbacks, so that JAX's persistent cache can keep its compiled program.

    JAX never writes a program that uses host callbacks to the cache, and equinox's ``error_if`` (inside
    diffrax) raises through one by default (``EQX_ON_ERROR=raise``): every adaptive flow was recompiled in
    every process (measured: a warm fresh process 3.1 s -> 1.7 s for a small flow).  Our solves run with
    ``throw=False`` and check the result's status and finiteness themselves, so a failed internal check
    surfaces as a failed, non-finite run instead of an exception.  The switch is equinox's
    ``_errors.EQX_ON_ERROR`` (read when a check is traced), set only while this function traces and
    restored after; with an equinox that has no such switch this is a no-op (programs are then just not
    cached)."""
    try:
        from equinox import _errors as eqx_errors
    except ImportError:           # pragma: no cover - equinox comes with diffrax
        return jitted
    if not isinstance(getattr(eqx_errors, "EQX_ON_ERROR", None), str):
        return jitted             # pragma: no cover - another equinox: leave it alone

    @functools.wraps(jitted)
    def call(*args, **kwargs):
        with _eqx_lock:
            old, eqx_errors.EQX_ON_ERROR = eqx_errors.EQX_ON_ERROR, "nan"
            try:
                return jitted(*args, **kwargs)
            finally:
                eqx_errors.EQX_ON_ERROR = old

    return call


# ---------------------------------------------------------------------------------------------------
# tables


def _source_digest(sources) -> str:
    h = hashlib.sha256()
    for src in sources:
        with open(src, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def _full_key(kind: str, key: Mapping, sources) -> dict:
    import jax
    import jaxlib

    full = {"format": _TABLE_FORMAT, "kind": kind, "key": {k: key[k] for k in sorted(key)},
            "source": _source_digest(sources), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__, "backend": jax.default_backend()}
    return json.loads(json.dumps(full))       # as it reads back (tuples become lists)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def _read(path: Path, full_key: dict):
    """The arrays of a verified entry, or (None, reason)."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            if meta.get("key") != full_key:
                return None, "stale (built for another version of the code, JAX or NumPy)"
            arrays = {name: np.array(z[name]) for name in meta["digests"]}
    except Exception as exc:     # any unreadable file: truncated, not an npz, bad JSON, missing arrays
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    for name, d in meta["digests"].items():
        if _digest(arrays[name]) != d:
            return None, f"corrupt (the checksum of {name!r} does not match)"
    return arrays, None


def _write(path: Path, full_key: dict, arrays: Mapping[str, np.ndarray]) -> None:
    from .io import atomic_write

    meta = json.dumps({"key": full_key, "digests": {k: _digest(v) for k, v in arrays.items()}})
    try:
        atomic_write(path, lambda fh: np.savez(fh, __meta__=np.array(meta), **arrays))
    except OSError as exc:
        if path.parent not in _warned_write:
            _warned_write.add(path.parent)
            warnings.warn(f"the cache folder {str(path.parent)!r} cannot be written ({exc}); tables are "
                          f"rebuilt in every process (set {ENV} to a writable folder, or to 'off')",
                          CacheWarning, stacklevel=3)


def cached_arrays(kind: str, key: Mapping, build: Callable[[], Mapping[str, np.ndarray]], *,
                  sources=()) -> dict:
    """``build()`` (a dict of NumPy arrays, a pure function of ``key``), kept on disk when the cache is on.

    ``kind`` names the table, ``key`` (JSON-able) the inputs it depends on, and ``sources`` the files of
    the code that builds it: an entry is used only when all of them, the table format and the versions of
    JAX, jaxlib and NumPy and the backend match, and every array's SHA-256 checks; otherwise it is
    rebuilt (with a ``CacheWarning`` when a file was there) and written atomically."""
    folder = cache_dir()
    if folder is None:
        return {k: np.asarray(v) for k, v in build().items()}
    full = _full_key(kind, key, sources)
    name = hashlib.sha256(json.dumps({"kind": kind, "key": full["key"]}, sort_keys=True).encode()).hexdigest()[:24]
    path = folder / "tables" / f"{kind}-{name}.npz"
    if path.exists():
        arrays, reason = _read(path, full)
        if arrays is not None:
            return arrays
        warnings.warn(f"cache entry {str(path)!r} is {reason}; rebuilding it", CacheWarning, stacklevel=2)
    arrays = {k: np.asarray(v) for k, v in build().items()}
    _write(path, full, arrays)
    return arrays
