"""Writing results: atomic files, JSON-able values, the versions every result records."""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

__all__ = ["atomic_write", "jsonable", "versions"]


def versions() -> dict:
    import jax

    from .version import __version__
    return {"dynamics": __version__, "jax": jax.__version__, "numpy": np.__version__,
            "x64": bool(jax.config.jax_enable_x64)}


def _umask():
    try:                    # Linux: read it without changing it (other threads may be creating files)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # elsewhere reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it over ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask),
    not the private 0600 of the temporary file."""
    path = os.path.realpath(os.fspath(path))      # a symlink is saved through (its target updated)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory: give a file name to save to")
    os.makedirs(folder, exist_ok=True)
    _remove_orphans(folder, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix="-" + _tag(os.path.basename(path), folder),
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _tag(name, folder):
    """The file's name in its temporary twin's, or a digest of it where the name is so long that the twin's
    would pass the file system's limit (a legal 244-character name plus the ~25-character prefix)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    if len(name.encode()) + 40 <= limit:
        return name
    return "h" + hashlib.sha256(name.encode()).hexdigest()[:24]


def _remove_orphans(folder, name):
    """Delete temporary files of earlier saves of ``name`` whose writing process is gone (killed mid
    write): ``.tmp-<pid>-<random>-<name>``.  Files of live writers are left alone."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(".tmp-") and entry.endswith("-" + _tag(name, folder))):
            continue
        try:
            pid = int(entry.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(os.path.join(folder, entry))
        except OSError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else str(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x
