"""``dps-lens evaluate``: compare decoding methods on the same held-out users (table + outputs)."""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import simple_parsing
from simple_parsing import flag

from dps_lens import distributed
from dps_lens.cli.command import command
from dps_lens.cli.decoding import build_decoding
from dps_lens.cli.method_flags import add_method_flags
from dps_lens.cli.options import DataOptions, DecodeOptions, ModelOptions
from dps_lens.errors import DpsLensError
from dps_lens.outdir import claim_output


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig(ModelOptions, DataOptions, DecodeOptions):
    # comma-separated method specs: NAME, NAME(param=value,...) or LABEL=NAME(...)
    methods: str = "plain,cad,dps,dps_shared_prefill,random_heads"
    # all users, or one side of a seeded user-disjoint split
    users: Literal["all", "discovery", "evaluation"] = "evaluation"
    # generation, classification, regression or organism (default: from the data)
    task: str | None = None
    # output directory (per-method JSONL, results.csv, results.md)
    out: Path = Path("runs/evaluate")
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars


def _extend(parser: simple_parsing.ArgumentParser) -> None:
    add_method_flags(parser, command_fields=set(EvaluateConfig.__dataclass_fields__))


@command(
    "evaluate",
    data_parallel=True,
    help="compare decoding methods on held-out users (table + outputs)",
    description=(
        "Decode every chosen method on the same held-out users and score the outputs (LaMP "
        "metrics, coherence, latency), with bootstrap intervals and paired differences against "
        "plain; resumable per batch."
    ),
    examples=(
        "dps-lens evaluate --model organism-planted --data users.jsonl --heads runs/pcs --k 3 "
        "--methods plain,no_profile,dps,cad --stop . --out runs/eval",
        "dps-lens evaluate ... --methods 'plain,fixed=dps(gamma=1),dps(adaptive=true,beta=0.1)'",
    ),
    extend=_extend,
    config=EvaluateConfig,
)
def run(config: EvaluateConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.evaluation import (
        EvalConfig,
        comparisons_markdown,
        evaluate_methods,
        markdown_table,
        task_of,
    )
    from dps_lens.evaluation.runner import compare_results

    if config.data is None:
        raise DpsLensError("evaluate needs --data FILE")
    with claim_output(config.out):
        examples = config.examples()
        model = config.load()
        decoding = build_decoding(config.methods, config, namespace, model, examples)
        eval_config = EvalConfig(
            task=config.task,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            template=config.template,
            max_length=config.max_length,
            seed=config.seed,
            extra_stop_ids=decoding.stop,
        )
        started = time.perf_counter()
        results = evaluate_methods(
            model, examples, decoding.steerings, eval_config, config.out, config.progress
        )
        if not distributed.current().is_main:  # under torchrun, rank 0 reports
            return
        print(markdown_table(results), end="")
        comparisons = compare_results(
            results, None, eval_config.task or task_of(examples), eval_config
        )
        if comparisons:
            print(
                "\nPaired differences (same examples):\n" + comparisons_markdown(comparisons),
                end="",
            )
        benefit = [c for c in comparisons if (c.method, c.reference) == ("plain", "no_profile")]
        if benefit:
            print(
                "The profile's benefit (plain − no_profile): "
                + ", ".join(f"Δ {c.metric} {c.difference}" for c in benefit)
            )
        print(f"{len(examples)} examples in {time.perf_counter() - started:.1f} s -> {config.out}")
