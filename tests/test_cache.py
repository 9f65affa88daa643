"""The on-disk cache (dynamics.core.cache): results bit-identical with and without it, table entries
verified on load (a corrupt or stale one rebuilt with a warning, never used), damaged compiled programs
never run, the switches (DYNAMICS_CACHE_DIR, enable/disable) and the command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import dynamics as dy
from dynamics.core import cache
from dynamics.exact import mode_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def folder(tmp_path):
    """This process's cache switched to a fresh folder for the test, then back to what it was."""
    before = cache.cache_dir()
    cache.enable_cache(tmp_path / "c")
    yield tmp_path / "c"
    if before is None:
        cache.disable_cache()
    else:
        cache.enable_cache(before)


class Builder:
    """A table builder that counts its calls (a rebuild is a call)."""

    def __init__(self, scale=1.0):
        self.calls, self.scale = 0, scale

    def __call__(self):
        self.calls += 1
        return {"a": self.scale * np.arange(12.0).reshape(3, 4), "n": np.int64(7)}


def _only_entry(folder):
    (path,) = (folder / "tables").glob("*.npz")
    return path


def test_a_table_is_built_once_and_read_back_bit_for_bit(folder, recwarn):
    b = Builder()
    first = cache.cached_arrays("demo", {"k": 2, "n": (1, 2)}, b)
    again = cache.cached_arrays("demo", {"k": 2, "n": (1, 2)}, b)      # a tuple in the key reads back
    assert b.calls == 1
    assert again["a"].tobytes() == first["a"].tobytes() and again["n"] == 7
    other = cache.cached_arrays("demo", {"k": 3, "n": (1, 2)}, Builder(2.0))   # another key, another entry
    assert other["a"][1, 0] == 8.0 and len(list((folder / "tables").glob("*.npz"))) == 2
    assert not [w for w in recwarn if issubclass(w.category, cache.CacheWarning)]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "array", "checksum"])
def test_a_damaged_table_entry_is_rebuilt_with_a_warning_never_used(folder, damage):
    b = Builder()
    good = cache.cached_arrays("demo", {"k": 1}, b)
    path = _only_entry(folder)
    raw = path.read_bytes()
    if damage == "truncate":              # a write cut short (not possible with the atomic rename, but a disk can)
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an npz file")
    else:                                 # a well-formed archive whose array or checksum is wrong
        with np.load(path) as z:
            meta, arrays = json.loads(str(z["__meta__"])), {k: np.array(z[k]) for k in ("a", "n")}
        if damage == "array":
            arrays["a"][0, 1] += 1e-12    # one ulp-scale change: the checksum must catch it
        else:
            meta["digests"]["a"] = "0" * 64
        np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
    with pytest.warns(cache.CacheWarning, match="rebuilding it") as rec:
        out = cache.cached_arrays("demo", {"k": 1}, b)
    (reason,) = [str(w.message) for w in rec if issubclass(w.category, cache.CacheWarning)]
    assert ("unreadable" in reason) if damage in ("truncate", "garbage") else ("corrupt" in reason)
    assert b.calls == 2 and out["a"].tobytes() == good["a"].tobytes()
    again = cache.cached_arrays("demo", {"k": 1}, b)                  # the rebuilt entry is good again
    assert b.calls == 2 and again["a"].tobytes() == good["a"].tobytes()


def test_a_stale_table_entry_is_rebuilt(folder, tmp_path):
    """An entry built by other code (the builder's source changed) is stale: rebuilt, never used."""
    src = tmp_path / "builder.py"
    src.write_text("VERSION = 1\n")
    cache.cached_arrays("demo", {"k": 1}, Builder(1.0), sources=[src])
    src.write_text("VERSION = 2\n")
    b = Builder(3.0)
    with pytest.warns(cache.CacheWarning, match="stale"):
        out = cache.cached_arrays("demo", {"k": 1}, b, sources=[src])
    assert b.calls == 1 and out["a"][0, 1] == 3.0


def test_an_unwritable_cache_warns_once_and_still_answers(folder):
    """The tables' folder replaced by a file (unwritable even for root): a CacheWarning, the answer all
    the same, and no second warning for the same folder."""
    import shutil
    import warnings

    shutil.rmtree(folder / "tables")
    (folder / "tables").write_text("not a folder")
    with pytest.warns(cache.CacheWarning, match="cannot be written"):
        out = cache.cached_arrays("demo", {"k": 1}, Builder())
    assert out["n"] == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        assert cache.cached_arrays("demo", {"k": 2}, Builder())["n"] == 7


def test_off_means_no_files(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, "off")
    assert cache.enable_from_environment(default_on=True) is None
    before = cache.cache_dir()
    try:
        cache.disable_cache()
        b = Builder()
        cache.cached_arrays("demo", {"k": 1}, b)
        cache.cached_arrays("demo", {"k": 1}, b)
        assert b.calls == 2 and cache.cache_dir() is None
    finally:
        if before is not None:
            cache.enable_cache(before)


def test_the_clock_table_from_disk_equals_the_one_built(folder):
    """The inverse-clock table read back from disk is the built one, bit for bit (and is used: the
    builder is not called again)."""
    fresh = mode_tables.ClockTable(2, 3)
    calls = []
    real = mode_tables._build
    mode_tables._build = lambda k, n: calls.append((k, n)) or real(k, n)
    try:
        again = mode_tables.ClockTable(2, 3)
    finally:
        mode_tables._build = real
    assert calls == []
    assert again.coef.tobytes() == fresh.coef.tobytes()
    assert (again.n_neg, again.n_pos, again.c_top, again.key0) == (fresh.n_neg, fresh.n_pos, fresh.c_top, fresh.key0)


def test_switching_on_trims_the_compiled_programs_oldest_first(tmp_path):
    xla = tmp_path / "c" / "xla"
    xla.mkdir(parents=True)
    for i in range(10):                                   # 10 x 1000 bytes, entry 0 the oldest
        (xla / f"p{i}-cache").write_bytes(bytes(1000))
        os.utime(xla / f"p{i}-cache", (1e9 + i, 1e9 + i))
    before = cache.cache_dir()
    try:
        cache.enable_cache(tmp_path / "c", max_bytes=8000)  # over: trimmed to <= 3/4 of 8000
        left = sorted(p.name for p in xla.iterdir())
        assert left == [f"p{i}-cache" for i in range(4, 10)]
        cache.enable_cache(tmp_path / "c", max_bytes=6000)  # not over: nothing removed
        assert len(list(xla.iterdir())) == 6
    finally:
        cache.enable_cache(before) if before is not None else cache.disable_cache()


def test_enable_cache_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        cache.enable_cache(tmp_path, max_bytes=0)
    with pytest.raises(ValueError, match="min_compile_secs"):
        cache.enable_cache(tmp_path, min_compile_secs=-1.0)
    with pytest.raises(TypeError, match="path"):
        cache.enable_cache(3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        cache.enable_cache(tmp_path / "file")


# a small end-to-end run in a fresh process: a simulation, a theory on its grid, and the crosscheck
SCRIPT = """
import sys, warnings, numpy as np, dynamics as dy
warnings.simplefilter("always")
p = dy.SSLProblem.from_spectrum(lam=[1.0, 0.6], rho=[0.5, 1.0], depth=2, init_scale=0.05)
g = dy.simulate_jepa(p, lr=0.05, steps=400, record_every=20, progress=False)
f = dy.simulate_mae(p, method="flow", times=g.t, progress=False)
th = dy.solve_jepa(p, times=g.t)
np.savez(sys.argv[1], gd=g.modes, flow=f.modes, theory=th.modes, loss=g.loss)
print(dy.crosscheck(g, th).outcome)
"""


def _run(tmp_path, name, cache_dir):
    out = tmp_path / f"{name}.npz"
    env = dict(os.environ, DYNAMICS_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT, DYNAMICS_CPU_DEVICES="1")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr
    with np.load(out) as z:
        return {k: z[k] for k in z.files}, r.stderr


def test_results_are_bit_identical_cold_warm_damaged_and_off(tmp_path):
    """Four fresh processes: a cold cache (writes), a warm one (reads everything, writes nothing), the
    same cache with every entry damaged (JAX warns and recompiles, the tables are rebuilt with a
    CacheWarning), and no cache at all.  Every array is identical to the last bit."""
    folder = tmp_path / "c"
    cold, _ = _run(tmp_path, "cold", folder)
    info = cache.cache_info(folder)
    assert info.programs > 0 and info.tables > 0
    # the adaptive flow's solve is kept too (equinox's checks traced without host callbacks: cacheable)
    assert any(p.name.startswith("jit_one-") for p in (folder / "xla").iterdir())
    warm, _ = _run(tmp_path, "warm", folder)
    after = cache.cache_info(folder)
    assert (after.programs, after.tables) == (info.programs, info.tables)   # every program was found
    for p in list((folder / "xla").glob("*-cache")) + list((folder / "tables").glob("*.npz")):
        p.write_bytes(p.read_bytes()[:40])                                  # cut short, as by a kill
    damaged, err = _run(tmp_path, "damaged", folder)
    assert "Error reading persistent compilation cache entry" in err        # JAX never ran a damaged program
    assert "CacheWarning" in err and "rebuilding it" in err
    checked, removed = cache.verify_cache(folder)        # what JAX kept, verify removes; tables were rebuilt
    assert removed == info.programs and checked == info.programs + info.tables
    off, _ = _run(tmp_path, "off", "off")
    for other in (warm, damaged, off):
        assert set(other) == set(cold)
        for k in cold:
            assert other[k].dtype == cold[k].dtype and other[k].tobytes() == cold[k].tobytes(), k


def test_the_command_line_shows_verifies_and_clears_the_cache(tmp_path, capsys):
    from dynamics.cli import main

    folder = tmp_path / "c"
    before = cache.cache_dir()
    try:
        cache.enable_cache(folder)
        cache.cached_arrays("demo", {"k": 1}, Builder())
    finally:
        cache.enable_cache(before) if before is not None else cache.disable_cache()

    def cli(*args):
        assert main(["cache", *args, "--dir", str(folder)]) == 0
        return capsys.readouterr().out

    assert "1 tables" in cli("info")
    assert "removed 0 damaged" in cli("verify")
    assert "cleared" in cli("clear") and "0 tables" in cli("info")
    assert not list((folder / "tables").glob("*.npz"))
