"""Paired differences between methods: one bootstrap over the same examples for both runs."""

import math
import random

import pytest

from dps_lens.errors import DpsLensError
from dps_lens.evaluation import (
    bootstrap,
    compare_methods,
    comparisons_markdown,
    paired_difference,
)


def _rows(values, metric="rouge1"):
    return [{metric: v} for v in values]


def _spread(n=40, seed=0):
    draw = random.Random(seed)
    return [draw.random() for _ in range(n)]


def test_a_constant_gain_is_certain_although_the_marginal_intervals_overlap():
    base = _spread()
    shifted = [v + 0.05 for v in base]
    d = paired_difference(_rows(shifted), [_rows(base)], "rouge1", n_bootstrap=200)
    assert d.value == pytest.approx(0.05) and d.n == 40
    assert d.low == pytest.approx(0.05) and d.high == pytest.approx(0.05)
    marginal = [bootstrap(lambda i, v=v: sum(v[j] for j in i) / len(i), 40, 200) for v in (base, shifted)]  # fmt: skip
    assert marginal[0].high > marginal[1].low  # compared by eye, the two would look alike


def test_independent_noise_gives_an_interval_around_zero():
    d = paired_difference(_rows(_spread(seed=1)), [_rows(_spread(seed=2))], "rouge1")
    assert d.low < 0 < d.high


def test_several_references_are_averaged_per_example_and_nan_examples_left_out():
    mine = _rows([1.0, 2.0, math.nan, 4.0])
    refs = [_rows([0.0, 1.0, 1.0, 1.0]), _rows([1.0, 1.0, 1.0, math.nan])]
    d = paired_difference(mine, refs, "rouge1", n_bootstrap=50)
    assert d.n == 2  # example 2 (undefined for mine) and 3 (undefined for one reference) dropped
    assert d.value == pytest.approx(((1.0 - 0.5) + (2.0 - 1.0)) / 2)


def test_runs_that_do_not_cover_the_same_examples_are_refused():
    with pytest.raises(DpsLensError, match="different examples: 2 against 1"):
        paired_difference(_rows([1.0, 2.0]), [_rows([1.0, 2.0]), _rows([1.0])], "rouge1")


def test_compare_methods_takes_every_metric_of_the_task_and_names_the_reference():
    runs = {
        name: [{"rouge1": v + shift, "rougeL": v, "meteor": v} for v in _spread(12)]
        for name, shift in (("dps", 0.1), ("r0", 0.0), ("r1", 0.0), ("plain", 0.0))
    }  # fmt: skip
    found = compare_methods(runs, [("dps", ["plain"]), ("dps", ["r0", "r1"])], "generation", 100)
    assert [(c.reference, c.metric) for c in found] == [
        ("plain", "rouge1"), ("plain", "rougeL"), ("plain", "meteor"),
        ("mean of r0, r1", "rouge1"), ("mean of r0, r1", "rougeL"), ("mean of r0, r1", "meteor"),
    ]  # fmt: skip
    assert found[0].excludes_zero and not found[1].excludes_zero
    table = comparisons_markdown(found)
    assert table.splitlines()[0] == (
        "| method | against | n | Δ rouge1 [95% CI] | Δ rougeL [95% CI] | Δ meteor [95% CI] |"
    )
    assert (
        "| dps | plain | 12 | **+0.1000 [+0.1000, +0.1000]** | +0.0000 [+0.0000, +0.0000] |"
        in table
    )
    assert len(table.splitlines()) == 4  # header, rule, one row per (method, reference)
    with pytest.raises(DpsLensError, match="no runs named cad"):
        compare_methods(runs, [("cad", ["plain"])], "generation")
