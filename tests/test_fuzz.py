"""Fuzzing every public callable, one argument at a time (tests/fuzz_catalogue.py).

Each mutated call must end in a clear error naming the argument or in a result without a NaN; never
another exception, a silent NaN, or a hang.  Three layers:

* every public callable of ``dynamics.__all__`` has a valid call in the catalogue (or a stated reason
  not to be called), so a new public function is fuzzed once it has one;
* the fixed mutations (17 hostile values x every argument x every callable, ~2,800 calls): no finding,
  and the generated argument table ``docs/arguments.md`` is current;
* hypothesis draws further hostile values (floats, integers, strings, lists, arrays of any shape,
  complex numbers, dicts): ``DYNAMICS_FUZZ_EXAMPLES`` examples (default 150; ``make fuzz`` runs 3,000).
"""

import inspect
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dynamics as dy

import fuzz_catalogue as fc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _public_callables():
    names = []
    for name in dy.__all__:
        obj = getattr(dy, name)
        if inspect.ismodule(obj) or not callable(obj):
            continue
        names.append(name)
    return names


def test_every_public_callable_is_catalogued():
    catalogued = {k.split(".")[0] for k in fc.CALLS} | set(fc.CALLS)
    missing = [n for n in _public_callables() if n not in catalogued and n not in fc.NOT_CALLED]
    assert not missing, f"public callables with no valid call in tests/fuzz_catalogue.py: {missing}"
    stale = [n for n in fc.NOT_CALLED if n not in dy.__all__]
    assert not stale, f"NOT_CALLED names that are not public: {stale}"


@pytest.mark.parametrize("key", sorted(fc.CALLS))
def test_the_catalogued_call_is_valid(key):
    fn, args, kwargs = fc.CALLS[key]()
    outcome, detail = fc.classify(fn, args, kwargs, "-")
    assert outcome == "ok", f"{key}: {detail}"


def test_fixed_mutations_give_clear_errors_or_results_and_the_table_is_current():
    results = fc.run_all()
    bad = [f"{o} {k}({a}={m}) :: {d[:200]}" for k, a, m, o, d in results if o not in ("clear", "ok")]
    assert not bad, f"{len(bad)} finding(s) of {len(results)} calls:\n" + "\n".join(bad[:40])
    table = open(os.path.join(ROOT, "docs", "arguments.md"), encoding="utf-8").read()
    assert fc.table(results) == table, ("docs/arguments.md is out of date: python tests/fuzz_catalogue.py "
                                        "--table docs/arguments.md")


HOSTILE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.text(max_size=6), st.none(), st.booleans(), st.complex_numbers(allow_nan=True),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6),
    hnp.arrays(st.sampled_from([np.float64, np.float32]), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
               elements=st.floats(-1e6, 1e6, width=32) | st.just(np.nan)),
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=2, max_side=4), elements=st.integers(-10, 10 ** 6)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=int(os.environ.get("DYNAMICS_FUZZ_EXAMPLES", 150)), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_hypothesis_mutations_give_clear_errors_or_results(data):
    key = data.draw(st.sampled_from(sorted(fc.CALLS)), label="callable")
    fn, args, kwargs = fc.CALLS[key]()
    name, pos = data.draw(st.sampled_from(fc.argument_names(fn, args, kwargs)), label="argument")
    value = data.draw(HOSTILE, label="value")
    a, k = fc.mutated(fn, args, kwargs, name, pos, value)
    outcome, detail = fc.classify(fn, a, k, name, timeout=60.0)
    assert outcome in ("clear", "ok"), f"{outcome}: {key}({name}={value!r:.80}) :: {detail}"


@settings(max_examples=int(os.environ.get("DYNAMICS_FUZZ_COMBINATIONS", 300)), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_combinations_of_arguments_give_clear_errors_or_results_and_none_is_ignored(data):
    """Two or three arguments changed at once -- a call's own and keywords of its signature that apply
    elsewhere (steppers and grids, options of other families, batch axes of other lengths) -- with valid or
    hostile values: a clear error naming one of them, or a result without a NaN in which every valid value
    counted (``fc.combination``: a value that leaves the result bit-identical is "ignored").
    ``DYNAMICS_FUZZ_COMBINATIONS`` examples (default 300; ``make fuzz`` runs 20,000)."""
    key = data.draw(st.sampled_from(sorted(fc.CALLS)), label="callable")
    fn, args, kwargs = fc.CALLS[key]()
    cands = fc.combination_candidates(fn, args, kwargs)
    n = data.draw(st.integers(2, min(3, len(cands))), label="how many") if len(cands) >= 2 else len(cands)
    chosen = data.draw(st.lists(st.sampled_from(cands), min_size=n, max_size=n, unique=True), label="arguments")
    valid = fc._valid()
    picks = []
    for name, pos in chosen:
        options = valid.get(name, [])
        if options and data.draw(st.booleans(), label=f"{name} valid"):
            picks.append((name, pos, data.draw(st.sampled_from(options), label=name), True))
        else:
            picks.append((name, pos, data.draw(st.sampled_from(sorted(fc.MUTATIONS)), label=name), False))
            picks[-1] = (name, pos, fc.MUTATIONS[picks[-1][2]], False)
    outcome, detail = fc.combination(fn, args, kwargs, picks)
    assert outcome in ("clear", "ok"), (f"{outcome}: {key}(" + ", ".join(f"{n}={v!r:.50}" for n, _, v, _ in picks)
                                        + f") :: {detail}")
