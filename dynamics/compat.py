"""Old module paths, kept working: ``import dynamics.heads`` gives ``dynamics.families.byol`` etc.

The library was regrouped into layers (core, exact, families, plot, experiments, cli); researchers'
scripts that import the former flat modules keep working through this table, resolved lazily by an
import hook (nothing here is imported until a script asks for it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["ALIASES", "install"]

ALIASES = {
    "dynamics.engine": "dynamics.core.engine",
    "dynamics.datasets": "dynamics.core.datasets",
    "dynamics.results": "dynamics.core.results_compat",
    "dynamics.validation": "dynamics.core.validation",
    "dynamics.metrics": "dynamics.core.metrics",
    "dynamics.cpu_devices": "dynamics.core.devices",
    "dynamics.mode_integrals": "dynamics.exact.mode_integrals",
    "dynamics.mode_tables": "dynamics.exact.mode_tables",
    "dynamics.problems": "dynamics.families.linear.problems",
    "dynamics.linear_net": "dynamics.families.linear.family",
    "dynamics.hadamard": "dynamics.families.hadamard.api",
    "dynamics.diagonal": "dynamics.families.dln",
    "dynamics.transformer": "dynamics.families.attention",
    "dynamics.heads": "dynamics.families.byol",
    "dynamics.identity_head": "dynamics.families.identity_head",
    "dynamics.stepwise": "dynamics.families.stepwise",
    "dynamics.jepa": "dynamics.families.jepa",
    "dynamics.saxe": "dynamics.families.saxe",
    "dynamics.rank_experiments": "dynamics.experiments.rank_growth",
    "dynamics.head_experiments": "dynamics.experiments.heads",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in ALIASES:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(ALIASES[fullname]))
        return None


def install():
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
