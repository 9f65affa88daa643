"""The paired 64-run target (d = 32, L = 3) of bench_performance.py on one checkout of the project.

    python benchmarks/bench_pair_checkouts.py CHECKOUT     (e.g. a `git worktree add /tmp/base <commit>`)

Run it alternately on two checkouts in one session to compare code versions on the same machine state
(results/driver_redesign.md).  Prints one line "RESULT {json}" with the median ratio, the rounds and the
cost of a call besides its steps."""
import json, os, sys
root = sys.argv[1]
sys.path.insert(0, root)
sys.path.insert(0, os.path.join(root, "benchmarks"))
import bench_performance as b
import dynamics
assert dynamics.__file__.startswith(root), dynamics.__file__
out = b.target_pair(False)
print("RESULT", json.dumps({"root": root, "median": out["median_ratio"], "ratios": out["ratios"],
                            "fixed_ms": out["call_fixed_s"] * 1e3}), flush=True)
