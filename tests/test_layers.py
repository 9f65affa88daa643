"""The layer rules of the package, enforced by reading every module's imports (including the imports
inside functions):

* core imports no family, no plotting, no experiments and no command line (the one exception: a
  lazy ``from ..plot import ...`` inside a method named ``plot``, the optional convenience);
* exact imports only core and exact;
* a family imports no plotting, experiments or command line, and another family only through a
  shared package (``families.linear``, ``families.hadamard``); the shared packages import no family;
* plotting imports only core;
* experiment runners never import each other (only ``experiments.spec`` and ``experiments.output``);
* no import cycles among the modules, counting the imports inside functions (except the lazy plotting
  import of the ``.plot()`` conveniences); no private ``_name`` imported across modules;
* ``import dynamics`` does not import matplotlib, scipy, diffrax or equinox (they load when first used).
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dynamics")
SHARED = ("dynamics.families.linear", "dynamics.families.hadamard")


def _modules():
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                name = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
                out[name] = path
    return out


MODULES = _modules()


def _is_package(name):
    return MODULES.get(name, "").endswith("__init__.py")


def _imports(name):
    """(imported module, imported names, inside function name or None, line) for every import."""
    tree = ast.parse(open(MODULES[name]).read())
    found = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                for a in child.names:
                    found.append((a.name, [], func, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name if _is_package(name) else name.rsplit(".", 1)[0]
                    for _ in range(child.level - 1):
                        base = base.rsplit(".", 1)[0]
                    mod = base + ("." + child.module if child.module else "")
                else:
                    mod = child.module
                names = [a.name for a in child.names]
                found.append((mod, names, func, child.lineno))
                for n in names:      # "from . import engine": the submodule itself
                    if f"{mod}.{n}" in MODULES:
                        found.append((f"{mod}.{n}", [], func, child.lineno))
            visit(child, f)

    visit(tree, None)
    return [(m, n, f, ln) for m, n, f, ln in found if m and (m == "dynamics" or m.startswith("dynamics."))]


def _layer(mod):
    if mod.startswith("dynamics.core"):
        return "core"
    if mod.startswith("dynamics.exact"):
        return "exact"
    if mod.startswith(SHARED):
        return "shared"
    if mod.startswith("dynamics.families"):
        return "family" if mod != "dynamics.families" else "families"
    if mod.startswith("dynamics.plot"):
        return "plot"
    if mod.startswith("dynamics.experiments"):
        return "experiments"
    if mod in ("dynamics.cli", "dynamics.__main__"):
        return "cli"
    return "top"


ALLOWED = {
    "core": {"core"},
    "exact": {"core", "exact"},
    "shared": {"core", "exact", "shared"},
    "family": {"core", "exact", "shared", "family"},
    "plot": {"core"},
    "experiments": {"core", "exact", "shared", "family", "families", "plot", "experiments"},
}


def test_every_module_was_found():
    for m in ("dynamics.core.engine", "dynamics.core.family", "dynamics.families.jepa", "dynamics.plot",
              "dynamics.experiments.jepa_vs_mae", "dynamics.cli"):
        assert m in MODULES


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layer_rules(name):
    layer = _layer(name)
    if layer not in ALLOWED:
        return
    for mod, names, func, line in _imports(name):
        target = _layer(mod)
        where = f"{name}:{line} imports {mod}"
        if layer == "core" and target == "plot":
            assert func == "plot", f"{where}: core may import plotting only lazily inside a plot() method"
            continue
        assert target in ALLOWED[layer], f"{where}: a {layer} module may not import the {target} layer"
        if layer == "family" and target == "family":
            assert mod == name, f"{where}: a family imports another family only through a shared package"
        if name.startswith("dynamics.experiments.") and mod.startswith("dynamics.experiments."):
            assert mod in ("dynamics.experiments.spec", "dynamics.experiments.output"), \
                f"{where}: experiment runners never import each other"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_crosses_a_module_boundary(name):
    for mod, names, func, line in _imports(name):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{name}:{line} imports private {private} from {mod}"


def _import_graph(modules=None):
    """module -> {module: line of the first import}, counting the imports inside functions too.  Not
    edges: a module importing itself or its ancestor packages, a package importing its own submodules,
    and a lazy import of the plotting module inside a function (the optional .plot() convenience)."""
    graph = {}
    for name in modules or MODULES:
        deps = {}
        for mod, _, func, line in _imports(name):
            if mod not in MODULES or mod == name or mod == "dynamics" or name.startswith(mod + "."):
                continue
            if func is not None and (mod == "dynamics.plot" or mod.startswith("dynamics.plot.")):
                continue
            if name != "dynamics" and _is_package(name) and mod.startswith(name + "."):
                continue
            deps.setdefault(mod, line)
        graph[name] = deps
    return graph


def _import_cycles(graph):
    """The cycles of ``graph``: one per strongly connected component of more than one module (Tarjan),
    each as the path ``[a, b, ..., a]`` through that component."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for comp in comps:
        start = min(comp)
        paths, seen = {start: [start]}, {start}
        queue = [start]
        while queue:                       # breadth first, inside the component, back to start
            v = queue.pop(0)
            nxt = sorted(w for w in graph[v] if w in comp)
            if start in nxt:
                cycles.append(paths[v] + [start])
                break
            for w in nxt:
                if w not in seen:
                    seen.add(w)
                    paths[w] = paths[v] + [w]
                    queue.append(w)
    return cycles


def test_no_import_cycles():
    graph = _import_graph()
    cycles = _import_cycles(graph)
    named = [" -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(c, c[1:])) + f" -> {c[-1]}" for c in cycles]
    assert not cycles, "import cycles (imports inside functions counted):\n" + "\n".join(named)


def test_the_cycle_check_counts_function_level_imports_and_names_the_cycle():
    assert _import_cycles({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}) == [["a", "b", "c", "a"]]
    assert _import_cycles({"a": {"b": 1}, "b": {}, "c": {"a": 2}}) == []
    graph = _import_graph()
    assert "dynamics.core.metrics" in graph["dynamics.core.trajectory"]    # imported inside critical_times()
    assert "dynamics.plot" not in graph["dynamics.core.trajectory"]        # the lazy .plot() convenience


HEAVY = ("matplotlib", "scipy", "diffrax", "equinox", "sklearn", "mpmath")


def test_import_dynamics_imports_no_heavy_module():
    """``import dynamics`` costs ``import jax`` plus about 0.1 s (benchmarks/results/cache.md): matplotlib,
    scipy (~0.25 s), diffrax and the rest are imported where first used.  Checked in a fresh process, with
    the on-disk cache on (its switch must not import them either)."""
    code = f"import sys, dynamics; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    from dynamics.core.cache import cache_dir

    env = dict(os.environ, DYNAMICS_CACHE_DIR=str(cache_dir() or "off"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
