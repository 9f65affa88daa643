"""Cold vs warm on-disk cache (dynamics.core.cache): what a fresh process saves, measured in one session.

    python benchmarks/bench_cache.py [--suite] [--rounds N]

Every measurement is a fresh process with its own ``DYNAMICS_CACHE_DIR``:

* ``import``: ``import jax`` and ``import dynamics`` (the import budget: jax + 0.2 s);
* ``demo``: ``python -m dynamics demo`` with an empty cache (cold), then again (warm); the arrays the two
  write must be bit-identical (every ``.npz`` array; the settings' timing fields excepted), and a run with
  the cache off is the baseline;
* ``readme``: the README's ten-line example, timed to its first answer and to the end;
* ``suite`` (with ``--suite``, ~30 min): ``pytest -q`` on a clone without the cache, cold, then warm.

Cold and warm alternate ``--rounds`` times (a fresh folder per round) and the medians are reported.
Writes ``benchmarks/results/cache.md`` and ``cache.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

README = """
import time; t0 = time.perf_counter()
import dynamics as dy
t_import = time.perf_counter() - t0
prob = dy.SSLProblem.from_spectrum(lam=[1.0, 0.75], rho=[0.4, 1.0], depth=3, init_scale=1e-2, rotate=True, key=0)
sim = dy.simulate_jepa(prob, lr=0.02, steps=70_000, record_every=100, progress=False)
th = dy.solve_jepa(prob, times=sim.t)
print("critical times, JEPA:", dy.critical_times(prob, "jepa"), " MAE:", dy.critical_times(prob, "mae"))
report = dy.crosscheck(sim, th)
t_answer = time.perf_counter() - t0
print(report)
import json; print("TIMES", json.dumps({"import": t_import, "answer": t_answer}))
"""


def _env(cache):
    return dict(os.environ, DYNAMICS_CACHE_DIR=str(cache), PYTHONPATH=ROOT)


def _timed(cmd, cache, cwd=ROOT):
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=_env(cache), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode not in (0, 1):        # the CLI exits 1 when a cross-check FAILED: still timed
        raise RuntimeError(f"{cmd} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, r.stdout


def _arrays_identical(a, b):
    import numpy as np

    names = sorted(os.path.basename(f) for f in glob.glob(os.path.join(a, "*.npz")))
    assert names, a
    bad = []
    for n in names:
        with np.load(os.path.join(a, n)) as x, np.load(os.path.join(b, n)) as y:
            for k in x.files:
                if k == "__meta__":
                    mx, my = json.loads(str(x[k])), json.loads(str(y[k]))
                    for m in (mx, my):
                        for f in ("wall_time_s", "compile_time_s"):
                            m.get("settings", {}).pop(f, None)
                    if mx != my:
                        bad.append(f"{n}:{k}")
                elif x[k].dtype != y[k].dtype or x[k].tobytes() != y[k].tobytes():
                    bad.append(f"{n}:{k}")
    return len(names), bad


def bench_import(rounds):
    code = ("import time; t = time.perf_counter(); import jax; a = time.perf_counter() - t; import dynamics; "
            "print(a, time.perf_counter() - t - a)")
    jax_s, extra_s = [], []
    for _ in range(rounds):
        _, out = _timed([sys.executable, "-c", code], "off")
        a, b = map(float, out.split())
        jax_s.append(a)
        extra_s.append(b)
    return {"import_jax_s": statistics.median(jax_s), "import_dynamics_extra_s": statistics.median(extra_s)}


def bench_demo(rounds, tmp):
    cold, warm, off, identical = [], [], [], []
    for r in range(rounds):
        cache = os.path.join(tmp, f"demo{r}")
        outs = [os.path.join(tmp, f"demo{r}_{i}") for i in range(3)]
        cmd = lambda o: [sys.executable, "-m", "dynamics", "demo", "--no-progress", "--out", o]  # noqa: E731
        off.append(_timed(cmd(outs[2]), "off")[0])
        cold.append(_timed(cmd(outs[0]), cache)[0])
        warm.append(_timed(cmd(outs[1]), cache)[0])
        n, bad = _arrays_identical(outs[0], outs[1])
        n2, bad2 = _arrays_identical(outs[0], outs[2])
        identical.append({"files": n, "differ_warm": bad, "differ_off": bad2})
    return {"cold_s": statistics.median(cold), "warm_s": statistics.median(warm), "off_s": statistics.median(off),
            "warm_over_cold": statistics.median(w / c for w, c in zip(warm, cold)),
            "rounds": {"cold": cold, "warm": warm, "off": off}, "identical": identical}


def bench_readme(rounds, tmp):
    res = {"cold": [], "warm": [], "off": []}
    for r in range(rounds):
        cache = os.path.join(tmp, f"readme{r}")
        for label, c in (("off", "off"), ("cold", cache), ("warm", cache)):
            wall, out = _timed([sys.executable, "-c", README], c, cwd=tmp)
            times = json.loads(out.split("TIMES", 1)[1])
            res[label].append({"wall": wall, **times})
    med = {k: {f: statistics.median(x[f] for x in v) for f in ("wall", "import", "answer")} for k, v in res.items()}
    return {"median": med, "answer_warm_over_cold": med["warm"]["answer"] / med["cold"]["answer"],
            "wall_warm_over_cold": med["warm"]["wall"] / med["cold"]["wall"], "rounds": res}


def bench_suite(tmp):
    cache = os.path.join(tmp, "suite")
    clone = os.path.join(tmp, "clone")
    subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
    out = {}
    for label in ("off", "cold", "warm"):
        env = dict(_env("off" if label == "off" else cache), PYTHONPATH=clone)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=clone,
                           env=env, capture_output=True, text=True)
        out[f"{label}_s"] = time.perf_counter() - t
        out[f"{label}_tail"] = r.stdout.strip().splitlines()[-1]
        out[f"{label}_rc"] = r.returncode
    out["warm_over_cold"] = out["warm_s"] / out["cold_s"]
    out["cold_over_off"] = out["cold_s"] / out["off_s"]
    from dynamics.core.cache import cache_info
    info = cache_info(cache)
    out["cache_after"] = {"programs": info.programs, "program_mib": info.program_bytes / 2 ** 20,
                          "tables": info.tables, "table_mib": info.table_bytes / 2 ** 20}
    return out


def write(res):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "cache.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    i, d, rd = res["import"], res["demo"], res["readme"]["median"]
    ident = all(not x["differ_warm"] and not x["differ_off"] for x in d["identical"])
    lines = [
        "# The on-disk cache: cold vs warm (benchmarks/bench_cache.py)",
        "",
        f"{res['machine']}; {res['date']}; medians of {res['rounds']} alternating rounds, each a fresh process",
        "with its own `DYNAMICS_CACHE_DIR` (cold: empty; warm: the same folder again; off: `DYNAMICS_CACHE_DIR=off`).",
        "",
        "| what | off | cold | warm | warm / cold | target |",
        "|---|---|---|---|---|---|",
        f"| `python -m dynamics demo` (wall) | {d['off_s']:.2f} s | {d['cold_s']:.2f} s | {d['warm_s']:.2f} s "
        f"| {d['warm_over_cold']:.0%} | <= 50 % |",
        f"| README example, to the first answer | {rd['off']['answer']:.2f} s | {rd['cold']['answer']:.2f} s "
        f"| {rd['warm']['answer']:.2f} s | {res['readme']['answer_warm_over_cold']:.0%} | <= 60 % |",
        f"| README example, whole process (wall) | {rd['off']['wall']:.2f} s | {rd['cold']['wall']:.2f} s "
        f"| {rd['warm']['wall']:.2f} s | {res['readme']['wall_warm_over_cold']:.0%} | |",
    ]
    if "suite" in res:
        s = res["suite"]
        lines.append(f"| `pytest -q` (the whole suite) | {s['off_s']:.0f} s | {s['cold_s']:.0f} s | {s['warm_s']:.0f} s "
                     f"| {s['warm_over_cold']:.0%} | <= 50 % |")
    lines += [
        "",
        f"`import dynamics` costs `import jax` ({i['import_jax_s']:.2f} s) plus {i['import_dynamics_extra_s']:.3f} s "
        "(target: plus <= 0.2 s; scipy, diffrax and matplotlib load where first used).",
        "",
        f"Demo arrays, warm vs cold and off vs cold: {'bit-identical' if ident else 'DIFFERENT: ' + str(d['identical'])} "
        f"({d['identical'][0]['files']} `.npz` files per run, every array; the settings' wall and compile times "
        "excepted).",
    ]
    if "suite" in res:
        s = res["suite"]
        c = s["cache_after"]
        lines += ["", f"Suite: off `{s['off_tail']}`; cold `{s['cold_tail']}`; warm `{s['warm_tail']}`. Writing the "
                      f"cache costs the cold run {s['cold_over_off'] - 1:+.0%} against no cache. The cache after both: "
                      f"{c['programs']} compiled programs ({c['program_mib']:.0f} MiB), {c['tables']} tables "
                      f"({c['table_mib']:.0f} MiB)."]
    lines += ["", "What is not saved: tracing and lowering (Python) still run in every process; only XLA's",
              "compilation and the theory tables are read back. The warm demo's remaining time is mostly the",
              "import, tracing and the runs themselves."]
    with open(os.path.join(RESULTS, "cache.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", action="store_true", help="also time the test suite off, cold and warm (~30 min)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_cache_")
    try:
        res = {"machine": f"{platform.node() or 'this machine'}, {os.cpu_count()} cores, Python "
                          f"{platform.python_version()}",
               "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds}
        res["import"] = bench_import(max(5, args.rounds))
        res["demo"] = bench_demo(args.rounds, tmp)
        res["readme"] = bench_readme(args.rounds, tmp)
        if args.suite:
            res["suite"] = bench_suite(tmp)
        write(res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
