import json
import math

import numpy as np
import pytest
import torch

from dps_lens.data import PreferenceExample
from dps_lens.data.encoding import EncodedExample, collate
from dps_lens.errors import DataFormatError, DpsLensError
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
    paired = (tmp_path / "paired.csv").read_text().splitlines()
    assert paired[0].startswith("method,reference,metric,difference,low,high,n")
    assert len(paired) == 2 and paired[1].startswith("dps,plain,personalized,")
    gain = float(paired[1].split(",")[3])
    assert gain == pytest.approx(rate["dps"] - rate["plain"])  # the same examples: means subtract
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


def _setup(planted):
    examples = World().split_examples("evaluation", 10, queries_per_user=1)
    stop = tuple(planted.tokenizer.convert_tokens_to_ids([".", "!"]))
    config = EvalConfig(max_new_tokens=4, batch_size=4, extra_stop_ids=stop, n_bootstrap=50)
    chosen = {"plain": methods.plain(), "dps": methods.dps(planted, planted.planted_spec.heads)}
    return examples, config, chosen


def _outputs(results):
    """Everything but the timings, which differ between runs."""
    return [
        (
            r.name,
            r.metrics,
            [{k: v for k, v in row.items() if k != "seconds_per_token"} for row in r.rows],
        )
        for r in results
    ]


class _Counting:
    """Wraps the runner's ``generate``: counts calls and raises ``KeyboardInterrupt`` on one."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        from dps_lens.evaluation import runner

        self.real, self.calls, self.interrupt_at = runner.generate, [], interrupt_at

    def __call__(self, model, inputs, steering, **kwargs):
        self.calls.append(steering.name)
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        return self.real(model, inputs, steering, **kwargs)


def test_an_interrupted_method_resumes_from_its_last_finished_batch(planted, tmp_path, monkeypatch):
    examples, config, chosen = _setup(planted)
    whole = evaluate_methods(planted, examples, chosen, config, out=tmp_path / "whole")
    out = tmp_path / "resumed"
    # 10 examples in batches of 4: 3 batches per method; stop in dps's second batch
    interrupted = _Counting(interrupt_at=5)
    monkeypatch.setattr("dps_lens.evaluation.runner.generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_methods(planted, examples, chosen, config, out=out)
    partial = out / "methods" / "dps.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 2  # the header and dps's first batch
    assert (out / "methods" / "plain.jsonl").exists() and not (
        out / "methods" / "dps.jsonl"
    ).exists()
    resumed = _Counting()
    monkeypatch.setattr("dps_lens.evaluation.runner.generate", resumed)
    again = evaluate_methods(planted, examples, chosen, config, out=out)
    assert resumed.calls == ["dps", "dps"]  # neither plain nor dps's first batch recomputed
    assert _outputs(again) == _outputs(whole)
    assert not partial.exists()
    assert (out / "methods" / "dps.jsonl").read_text().count("\n") == len(examples)


def test_a_damaged_checkpoint_line(planted, tmp_path, monkeypatch):
    examples, config, chosen = _setup(planted)
    chosen = {"dps": chosen["dps"]}
    whole = evaluate_methods(planted, examples, chosen, config)
    monkeypatch.setattr("dps_lens.evaluation.runner.generate", _Counting(interrupt_at=3))
    with pytest.raises(KeyboardInterrupt):
        evaluate_methods(planted, examples, chosen, config, out=tmp_path)
    partial = tmp_path / "methods" / "dps.partial.jsonl"
    good = partial.read_text()
    partial.write_text(good + good.splitlines()[-1][:40])  # a write cut short by kill -9
    resumed = _Counting()
    monkeypatch.setattr("dps_lens.evaluation.runner.generate", resumed)
    with pytest.warns(UserWarning, match="dropping a damaged last line"):
        again = evaluate_methods(planted, examples, chosen, config, out=tmp_path)
    assert len(resumed.calls) == 1 and _outputs(again) == _outputs(whole)

    monkeypatch.setattr("dps_lens.evaluation.runner.generate", _Counting(interrupt_at=3))
    (tmp_path / "methods" / "dps.jsonl").unlink()
    with pytest.raises(KeyboardInterrupt):
        evaluate_methods(planted, examples, chosen, config, out=tmp_path)
    lines = partial.read_text().splitlines()
    partial.write_text("\n".join([lines[0], "{broken", *lines[2:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"dps\.partial\.jsonl:2: damaged checkpoint line"):
        evaluate_methods(planted, examples, chosen, config, out=tmp_path)
    partial.write_text(lines[0].replace('"key": "', '"key": "0') + "\n" + lines[1] + "\n")
    monkeypatch.setattr("dps_lens.evaluation.runner.generate", resumed := _Counting())
    with pytest.warns(UserWarning, match="other settings or data; starting the method over"):
        again = evaluate_methods(planted, examples, chosen, config, out=tmp_path)
    assert len(resumed.calls) == 3 and _outputs(again) == _outputs(whole)


KILLED_RUN = """
import sys, time
from dps_lens.data import load_jsonl
from dps_lens.evaluation import EvalConfig, evaluate_methods, runner
from dps_lens.models import load_model
from dps_lens.steering import methods

model = load_model("organism-planted", device="cpu")
real = runner.generate
calls = []

def generate(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the first batch is on disk: wait here to be killed
        time.sleep(3600)
    return real(*args, **kwargs)

runner.generate = generate
stop = tuple(model.tokenizer.convert_tokens_to_ids([".", "!"]))
config = EvalConfig(max_new_tokens=4, batch_size=4, extra_stop_ids=stop, n_bootstrap=50)
steering = {"dps": methods.dps(model, model.planted_spec.heads)}
evaluate_methods(model, load_jsonl(sys.argv[1]), steering, config, out=sys.argv[2])
"""


def test_kill_9_during_a_method_loses_at_most_the_batch_in_progress(planted, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import time

    from dps_lens.data import write_jsonl

    examples, config, chosen = _setup(planted)
    chosen = {"dps": chosen["dps"]}
    data = write_jsonl(tmp_path / "examples.jsonl", examples)
    out = tmp_path / "run"
    partial = out / "methods" / "dps.partial.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, str(data), str(out)], env=env, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, not a timing check
        while not (partial.exists() and partial.read_text().count("\n") >= 2):
            if process.poll() is not None:
                pytest.fail(f"the run ended before it was killed: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("no batch was checkpointed")
            time.sleep(0.2)
    finally:
        process.kill()  # SIGKILL
        process.wait()
    resumed = _Counting()
    monkeypatch.setattr("dps_lens.evaluation.runner.generate", resumed)
    again = evaluate_methods(planted, examples, chosen, config, out=out)
    assert len(resumed.calls) == 2  # of 3 planned batches
    assert _outputs(again) == _outputs(evaluate_methods(planted, examples, chosen, config))
