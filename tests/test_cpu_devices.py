"""One CPU device per core at import, and every way a program can opt out of it."""

import os
import subprocess
import sys

import pytest

from dynamics.core.devices import available_cores

PROBE = "import jax, dynamics; print(jax.device_count())"


def _devices(code=PROBE, **env):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "DYNAMICS_CPU_DEVICES")} | env
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "", out.stderr


def test_default_is_one_device_per_core():
    rc, out, err = _devices()
    assert rc == 0, err[-2000:]
    assert int(out) == available_cores()


def test_environment_variable_sets_or_disables_the_count():
    assert _devices(DYNAMICS_CPU_DEVICES="3")[1] == "3"
    assert _devices(DYNAMICS_CPU_DEVICES="1")[1] == "1"


def test_program_choice_wins():
    """An explicit XLA flag, or a JAX that already started its backends, is left alone."""
    assert _devices(XLA_FLAGS="--xla_force_host_platform_device_count=5")[1] == "5"
    started = "import jax, jax.numpy as jnp; jnp.ones(1).block_until_ready(); import dynamics; print(jax.device_count())"
    assert _devices(started, DYNAMICS_CPU_DEVICES="3")[1] == "1"


@pytest.mark.parametrize("bad", ["zero", "0", "-2"])
def test_bad_value_names_the_variable(bad):
    rc, _, err = _devices(DYNAMICS_CPU_DEVICES=bad)
    assert rc != 0 and "DYNAMICS_CPU_DEVICES must be a positive integer" in err
