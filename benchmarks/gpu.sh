#!/usr/bin/env bash
# The performance suite and the multi-device tests on a GPU machine; tables beside the CPU ones.
#
#   bash benchmarks/gpu.sh            # from the repository root, on a host with NVIDIA GPUs
#
# Installs JAX's CUDA build into .venv-gpu (pip's jax[cuda12] wheels bring the CUDA libraries), checks
# that JAX sees the GPUs, then runs
#   * the multi-device tests (sharding over every GPU, several processes: one per GPU),
#   * benchmarks/bench_performance.py and benchmarks/bench_scaleout.py with the GPUs as JAX's devices,
# and writes their tables as benchmarks/results/*_gpu.{md,json} (the CPU tables are left as they are).
# CI never has a GPU: nothing in the test suite needs one.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet -e ".[test]" "jax[cuda12]"
"$VENV/bin/python" - <<'PY'
import jax
gpus = [d for d in jax.devices() if d.platform == "gpu"]
assert gpus, f"JAX sees no GPU (devices: {jax.devices()}): check the driver and the jax[cuda12] install"
print(f"{len(gpus)} GPU(s):", ", ".join(d.device_kind for d in gpus))
PY
export DYNAMICS_CPU_DEVICES=1        # the GPUs are the devices; no per-core CPU devices
# the multi-device and multi-process tests, then the contract battery on the GPU
"$VENV/bin/python" -m pytest -q tests/test_cpu_devices.py tests/test_distributed.py tests/test_groups.py tests/test_contract.py
# the benchmarks, with their tables renamed *_gpu beside the CPU ones
for bench in bench_performance bench_scaleout; do
  "$VENV/bin/python" "benchmarks/$bench.py"
done
for name in performance scaleout; do
  for ext in md json; do
    [ -f "benchmarks/results/$name.$ext" ] && mv "benchmarks/results/$name.$ext" "benchmarks/results/${name}_gpu.$ext"
  done
done
git checkout -- benchmarks/results/performance.md benchmarks/results/performance.json \
  benchmarks/results/performance.png benchmarks/results/scaleout.md benchmarks/results/scaleout.json 2>/dev/null || true
echo "GPU tables: benchmarks/results/performance_gpu.md, benchmarks/results/scaleout_gpu.md"
