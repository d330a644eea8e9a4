"""Per-example metrics and bootstrap intervals for the LaMP tasks and the organism.

* generation (LaMP-4/5/7): ROUGE-1 and ROUGE-L F1 (``rouge-score``, no stemming, as LaMP's
  ``evaluate`` scripts), METEOR (nltk with an offline WordNet, see ``wordnet``);
* classification (LaMP-1/2): accuracy and macro-F1 over exact (case-folded) labels;
* regression (LaMP-3): MAE and RMSE of the first number in the output (no number: not scored,
  counted in ``unparsed``);
* dialogue (PersonaChat / ConvAI2): unigram F1 as ParlAI computes it (lower-cased, punctuation
  and the articles a, an, the removed; token counts overlapped) and ROUGE-L F1;
* organism: personalization rate (the first answer word is the user's favourite item).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.evaluation.wordnet import load_wordnet
from dps_lens.stats import bootstrap_interval

TASKS = ("generation", "classification", "regression", "dialogue", "organism")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def task_of(examples: Sequence[PreferenceExample]) -> str:
    """The task implied by the examples' metadata (LaMP number or organism ground truth)."""
    meta = examples[0].meta if examples else {}
    if "preferred" in meta:
        return "organism"
    if str(meta.get("task", "")).lower() == "personachat":
        return "dialogue"
    number = str(meta.get("task", "")).removeprefix("LaMP-")
    if number in ("1", "2"):
        return "classification"
    if number == "3":
        return "regression"
    return "generation"


@functools.cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def generation_scores(output: str, target: str) -> dict[str, float]:
    from nltk.translate.meteor_score import meteor_score

    rouge = _rouge().score(target, output)
    meteor = meteor_score([words(target)], words(output), wordnet=load_wordnet())
    return {
        "rouge1": rouge["rouge1"].fmeasure,
        "rougeL": rouge["rougeL"].fmeasure,
        "meteor": float(meteor),
    }


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(r"[^\w\s]")


def parlai_tokens(text: str) -> list[str]:
    """ParlAI's answer normalisation: lower-case, punctuation and articles removed, split on
    whitespace."""
    return _ARTICLES.sub(" ", _PUNCTUATION.sub(" ", text.lower())).split()


def unigram_f1(output: str, target: str) -> float:
    """ParlAI's unigram F1 of ``output`` against ``target`` (0 when either is empty after
    normalisation)."""
    mine, gold = Counter(parlai_tokens(output)), Counter(parlai_tokens(target))
    common = sum((mine & gold).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(mine.values()), common / sum(gold.values())
    return 2 * precision * recall / (precision + recall)


def dialogue_scores(output: str, target: str) -> dict[str, float]:
    return {
        "f1": unigram_f1(output, target),
        "rougeL": _rouge().score(target, output)["rougeL"].fmeasure,
    }


def first_word(text: str) -> str:
    """The first word (or punctuation mark) of ``text``, lower-cased; "" for none."""
    found = words(text)
    return found[0] if found else ""


def personalized(answer: str, example: PreferenceExample) -> bool:
    """Whether the first word of ``answer`` is the user's favourite item ``meta["preferred"]``
    (case-folded): the organism's personalization criterion."""
    return first_word(answer) == str(example.meta["preferred"]).lower()


def per_example(task: str, output: str, example: PreferenceExample) -> dict[str, float]:
    """Metric values of one output (``nan`` where a value is undefined)."""
    if task == "generation":
        return generation_scores(output, example.target)
    if task == "dialogue":
        return dialogue_scores(output, example.target)
    if task == "classification":
        return {"accuracy": float(output.strip().lower() == example.target.strip().lower())}
    if task == "regression":
        found = _NUMBER.search(output)
        error = abs(float(found.group()) - float(example.target)) if found else math.nan
        return {"abs_error": error}
    if task == "organism":
        return {"personalized": float(personalized(output, example))}
    raise DpsLensError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")


@dataclass(frozen=True)
class Estimate:
    """A corpus statistic with a seeded bootstrap percentile interval over examples."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """``statistic(indices)`` on all ``n`` examples, and its interval over resampled indices
    (``dps_lens.stats.bootstrap_interval``)."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    low, high = bootstrap_interval(
        lambda draws: torch.tensor([statistic(row) for row in draws.numpy()], dtype=torch.float64),
        n,
        n_bootstrap,
        confidence,
        seed,
    )
    return Estimate(float(statistic(np.arange(n))), float(low), float(high), n)


def mean_estimate(values: Sequence[float], n_bootstrap: int = 1000, seed: int = 0) -> Estimate:
    """The mean of ``values`` (NaN left out) with its bootstrap interval."""
    kept = np.array([v for v in values if not math.isnan(v)], dtype=float)
    return bootstrap(lambda i: float(kept[i].mean()), len(kept), n_bootstrap, seed)


def summarize_task(
    task: str,
    rows: Sequence[Mapping[str, Any]],
    outputs: Sequence[str],
    examples: Sequence[PreferenceExample],
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Corpus metrics of one method (means of per-example values, F1, RMSE) with intervals."""

    def mean_of(key: str) -> Estimate:
        values = np.array([row[key] for row in rows], dtype=float)
        kept = values[~np.isnan(values)]
        return bootstrap(lambda i: float(kept[i].mean()), len(kept), n_bootstrap, seed)

    if task == "generation":
        return {key: mean_of(key) for key in ("rouge1", "rougeL", "meteor")}
    if task == "dialogue":
        return {key: mean_of(key) for key in ("f1", "rougeL")}
    if task == "organism":
        return {"personalization": mean_of("personalized")}
    if task == "classification":
        from sklearn.metrics import f1_score

        predicted = np.array([o.strip().lower() for o in outputs])
        gold = np.array([e.target.strip().lower() for e in examples])
        f1 = bootstrap(
            lambda i: float(
                # zero_division: scikit-learn infers its type from the default "warn"; 0 is valid
                f1_score(gold[i], predicted[i], average="macro", zero_division=0)  # pyright: ignore[reportArgumentType]
            ),
            len(gold),
            n_bootstrap,
            seed,
        )
        return {"accuracy": mean_of("accuracy"), "f1": f1}
    if task == "regression":
        errors = np.array([row["abs_error"] for row in rows], dtype=float)
        kept = errors[~np.isnan(errors)]
        rmse = bootstrap(
            lambda i: float(np.sqrt((kept[i] ** 2).mean())), len(kept), n_bootstrap, seed
        )
        unparsed = float(np.isnan(errors).sum())
        return {
            "mae": mean_of("abs_error"),
            "rmse": rmse,
            "unparsed": Estimate(unparsed, unparsed, unparsed, len(errors)),
        }
    raise DpsLensError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
