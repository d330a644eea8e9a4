import json
import math

import numpy as np
import pytest
import torch

from dps_lens.data import PreferenceExample
from dps_lens.data.encoding import EncodedExample, collate
from dps_lens.errors import DpsLensError
from dps_lens.evaluation import (
    EvalConfig,
    bootstrap,
    evaluate_methods,
    output_nll,
    per_example,
    summarize_task,
    task_of,
)
from dps_lens.evaluation.wordnet import wordnet_root
from dps_lens.organism.world import World
from dps_lens.scoring.loss import target_nll
from dps_lens.steering import methods


def _has_wordnet() -> bool:
    try:
        wordnet_root()
    except DpsLensError:
        return False
    return True


needs_wordnet = pytest.mark.skipif(
    not _has_wordnet(), reason="no offline WordNet (apt-get install wordnet-base)"
)


def _example(target: str, **meta) -> PreferenceExample:
    return PreferenceExample("u", "x", ["p"], target, meta)


@needs_wordnet
def test_generation_metrics_score_overlap_and_synonyms():
    same = per_example("generation", "The dog runs fast", _example("the dog runs fast"))
    assert same["rouge1"] == pytest.approx(1.0) and same["rougeL"] == pytest.approx(1.0)
    assert same["meteor"] > 0.95
    synonym = per_example("generation", "the hound runs fast", _example("the dog runs fast"))
    unrelated = per_example("generation", "the table runs fast", _example("the dog runs fast"))
    assert synonym["rouge1"] == unrelated["rouge1"] == pytest.approx(0.75)
    assert synonym["meteor"] > unrelated["meteor"] + 0.2  # WordNet: hound is a synonym of dog


def test_classification_accuracy_and_macro_f1():
    examples = [_example(label) for label in ["a", "a", "b", "b"]]
    outputs = ["A", "b", "b", "b "]
    rows = [per_example("classification", o, e) for o, e in zip(outputs, examples, strict=True)]
    summary = summarize_task("classification", rows, outputs, examples, n_bootstrap=50)
    assert summary["accuracy"].value == pytest.approx(0.75)
    assert summary["f1"].value == pytest.approx((2 / 3 + 0.8) / 2)


def test_regression_mae_rmse_and_unparsed_outputs():
    examples = [_example(t) for t in ["1", "3", "5"]]
    outputs = ["rating: 2", "3.0 stars", "no idea"]
    rows = [per_example("regression", o, e) for o, e in zip(outputs, examples, strict=True)]
    summary = summarize_task("regression", rows, outputs, examples, n_bootstrap=50)
    assert summary["mae"].value == pytest.approx(0.5)
    assert summary["rmse"].value == pytest.approx(math.sqrt(0.5))
    assert summary["unparsed"].value == 1


def test_task_is_inferred_from_the_examples(examples):
    assert task_of(examples) == "organism"
    assert task_of([_example("t", task="LaMP-2")]) == "classification"
    assert task_of([_example("t", task="LaMP-3")]) == "regression"
    assert task_of([_example("t", task="LaMP-7")]) == "generation"


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(0).normal(size=200)
    first = bootstrap(lambda i: float(values[i].mean()), 200, n_bootstrap=300, seed=1)
    assert first == bootstrap(lambda i: float(values[i].mean()), 200, n_bootstrap=300, seed=1)
    assert first.low < first.value < first.high
    assert first.high - first.low == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.3)


def test_output_nll_is_the_target_nll_of_prompt_plus_output(tiny_llama):
    prompts, outputs = [[1, 5, 6, 7], [1, 9]], [[10, 11], []]
    values = output_nll(tiny_llama, prompts, outputs)
    batch = collate([EncodedExample([1, 5, 6, 7, 10, 11], 4, 0)], 0)
    with torch.no_grad():
        expected = target_nll(tiny_llama(batch.tokens), batch)
    assert values[0] == pytest.approx(float(expected[0]), abs=1e-5)
    assert math.isnan(values[1])


def test_runner_writes_tables_and_resumes_finished_methods(planted, tmp_path, monkeypatch):
    examples = World().split_examples("evaluation", 12, queries_per_user=1)
    stop = tuple(planted.tokenizer.convert_tokens_to_ids([".", "!"]))
    config = EvalConfig(max_new_tokens=4, extra_stop_ids=stop, n_bootstrap=100)
    chosen = {"plain": methods.plain(), "dps": methods.dps(planted, planted.planted_spec.heads)}
    results = evaluate_methods(planted, examples, chosen, config, out=tmp_path)
    by_name = {r.name: r for r in results}
    rate = {name: r.metrics["personalization"].value for name, r in by_name.items()}
    assert rate["dps"] > rate["plain"]
    assert "| dps | 12 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.csv").read_text().startswith("method,n,personalization,")
    lines = (tmp_path / "methods" / "dps.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 12 and {"output", "target", "coherence_nll", "personalized"} <= set(rows[0])

    def fail(*args, **kwargs):
        raise AssertionError("a finished method was generated again")

    monkeypatch.setattr("dps_lens.evaluation.runner.generate", fail)
    again = evaluate_methods(planted, examples, chosen, config, out=tmp_path)
    assert [r.metrics for r in again] == [r.metrics for r in results]
    changed = {"dps": methods.dps(planted, planted.planted_spec.heads, gamma=2.0)}
    with pytest.raises(AssertionError, match="generated again"):
        evaluate_methods(planted, examples, changed, config, out=tmp_path)
