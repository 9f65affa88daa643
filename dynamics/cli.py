"""Command line: ``python -m dynamics`` / ``dynamics``.

    dynamics demo [--out DIR]            run the built-in default example (JEPA vs MAE at depths 1-3)
    dynamics run SPEC.toml [--out DIR]   run an experiment spec from sims/
    dynamics solve SPEC.toml             theory only: print the critical times
    dynamics list [--dir sims]           the specs available
    dynamics cache info|clear|verify     what the on-disk cache holds / empty it / drop damaged entries
Options: --seed N, --x32 (float32 simulation; the default is float64), --no-progress.
Compiled programs and tables are kept on disk between runs (``dynamics.core.cache``): in
$DYNAMICS_CACHE_DIR, else $XDG_CACHE_HOME/dynamics (~/.cache/dynamics); DYNAMICS_CACHE_DIR=off turns
it off.  Results are bit-identical with and without it.
Exit status: 0 done (every cross-check passed or was inconclusive, each printed with its verdict),
1 a cross-check FAILED (the outputs are still written), 2 an error (bad spec, missing file, ...).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

__all__ = ["main"]


def _parser():
    p = argparse.ArgumentParser(
        prog="dynamics", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Theory and simulation of how deep linear models learn: run the default example, an "
                    "experiment spec (TOML, see sims/), or its theory only.",
        epilog="examples:\n  dynamics demo --out out/demo\n  dynamics run sims/jepa_vs_mae.toml\n"
               "  dynamics solve sims/jepa_vs_mae.toml\n  dynamics list\n  dynamics cache info\n\n"
               "compiled programs and tables are kept in $DYNAMICS_CACHE_DIR (default\n"
               "$XDG_CACHE_HOME/dynamics or ~/.cache/dynamics); DYNAMICS_CACHE_DIR=off turns it off\n\n"
               "exit status: 0 done (every cross-check passed or inconclusive), 1 a cross-check FAILED\n"
               "(outputs still written), 2 an error (bad spec, missing file, ...)")
    sub = p.add_subparsers(dest="cmd", required=True)

    def seed(text):
        """--seed N: an integer in [0, 2**63) (what a spec's run.seed accepts), checked by argparse."""
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
        if not 0 <= v < 2 ** 63:
            raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63), got {text}")
        return v

    def common(sp):
        sp.add_argument("--out", default=None, help="output folder (default out/<spec name>)")
        sp.add_argument("--seed", type=seed, default=None, help="override run.seed")
        prec = sp.add_mutually_exclusive_group()
        prec.add_argument("--x64", dest="x32", action="store_false", help="float64 simulation (default)")
        prec.add_argument("--x32", dest="x32", action="store_true", help="float32 simulation (faster)")
        sp.set_defaults(x32=False)     # float64 unless --x32 (the store_false of --x64 would default to True)
        sp.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    common(sub.add_parser("demo", help="run the built-in default example"))
    r = sub.add_parser("run", help="run an experiment spec (TOML)")
    r.add_argument("spec", help="path of an experiment spec, e.g. sims/jepa_vs_mae.toml ('dynamics list' shows them)")
    common(r)
    s = sub.add_parser("solve", help="theory only: critical times of a spec")
    s.add_argument("spec", help="path of an experiment spec, e.g. sims/jepa_vs_mae.toml")
    s.add_argument("--seed", type=seed, default=None, help="override run.seed")
    ls = sub.add_parser("list", help="list the specs in a folder")
    ls.add_argument("--dir", default=None, help="folder of specs (default: ./sims if it exists, else the "
                                                "sims/ folder beside the installed package's source)")
    c = sub.add_parser("cache", help="the on-disk cache of compiled programs and tables: info or clear")
    c.add_argument("action", choices=("info", "clear", "verify"),
                   help="info: where it is and what it holds; clear: empty it; verify: remove damaged entries")
    c.add_argument("--dir", default=None, help="cache folder (default: $DYNAMICS_CACHE_DIR, else "
                                               "$XDG_CACHE_HOME/dynamics or ~/.cache/dynamics)")
    return p


def _cache_command(args):
    from .core import cache

    if args.action == "info":
        print(cache.cache_info(args.dir))
        return 0
    if args.action == "verify":
        checked, removed = cache.verify_cache(args.dir)
        print(f"checked {checked} entries in {cache.cache_info(args.dir).path}: removed {removed} damaged")
        return 0
    info = cache.clear_cache(args.dir)
    print(f"cleared {info.path}: {info.programs} compiled programs and {info.tables} tables "
          f"({(info.program_bytes + info.table_bytes) / 2 ** 20:.1f} MiB)")
    return 0


def _one_line(exc, spec_error, no_theory):
    """The message of an error that ends a command: a bad spec, a spec that is not UTF-8, a missing
    file or closed form or a diverged run (their messages say what to do), or a library check on a
    spec value (named by its type)."""
    if isinstance(exc, no_theory):
        return str(exc)
    if isinstance(exc, spec_error):
        return f"bad spec: {exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"the spec is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, (OSError, FloatingPointError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def failed_checks(summary, path=""):
    """The names of the cross-checks in a run's summary whose outcome is "failed" (searched recursively:
    every report's ``to_dict()`` carries an ``outcome``)."""
    out = []
    if isinstance(summary, dict):
        if summary.get("outcome") == "failed":
            out.append(path or "crosscheck")
        for k, v in summary.items():
            if k != "spec":
                out += failed_checks(v, f"{path}.{k}" if path else str(k))
    elif isinstance(summary, (list, tuple)):
        for i, v in enumerate(summary):
            out += failed_checks(v, f"{path}[{i}]")
    return out


def _specs_dir(given):
    if given:
        return given
    here = os.path.join(os.getcwd(), "sims")
    if os.path.isdir(here):
        return here
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sims")


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.cmd == "cache":
        return _cache_command(args)
    from .core.cache import enable_from_environment
    enable_from_environment(default_on=True)
    import matplotlib
    matplotlib.use("Agg")
    from .experiments import DEFAULT_SPEC, NoTheoryError, SpecError, load_spec, parse_spec, run_spec, solve_spec
    try:
        if args.cmd == "list":
            folder = _specs_dir(args.dir)
            files = sorted(glob.glob(os.path.join(folder, "*.toml")))
            if not files:
                print(f"no specs in {folder}", file=sys.stderr)
                return 1
            for f in files:
                spec = load_spec(f)
                print(f"{os.path.relpath(f)}: [{spec['experiment']}] {spec['title']}")
            return 0
        if args.cmd == "solve":
            out = solve_spec(load_spec(args.spec), seed=args.seed)
            print(json.dumps(out, indent=2))
            return 0
        spec = parse_spec(DEFAULT_SPEC) if args.cmd == "demo" else load_spec(args.spec)
        name = "demo" if args.cmd == "demo" else os.path.splitext(os.path.basename(args.spec))[0]
        out = args.out or os.path.join("out", name)
        if os.path.exists(out) and not os.path.isdir(out):     # checked before the run, not after it
            raise NotADirectoryError(f"--out {out!r} is a file, not a folder: give a folder for the outputs")
        import numpy as np
        # progress bars on a terminal only: redirected to a log they would fill it with their redraws
        summary = run_spec(spec, out, seed=args.seed, dtype=np.float32 if args.x32 else None,
                           progress=not args.no_progress and sys.stderr.isatty())
        failed = failed_checks(summary)
        if failed:
            print(f"dynamics: {len(failed)} cross-check(s) FAILED ({', '.join(failed)}); outputs written to {out}",
                  file=sys.stderr)
            return 1
        return 0
    except (SpecError, NoTheoryError, OSError, ValueError, TypeError, ArithmeticError) as exc:
        # every error a run can end in, as one line (never a traceback): exit 2
        print(f"dynamics: {_one_line(exc, SpecError, NoTheoryError)}", file=sys.stderr)
        return 2

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
