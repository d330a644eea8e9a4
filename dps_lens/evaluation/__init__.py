"""Evaluation: LaMP metrics, coherence, latency, and a runner comparing decoding methods."""

from dps_lens.evaluation.coherence import output_nll
from dps_lens.evaluation.metrics import Estimate, bootstrap, per_example, summarize_task, task_of
from dps_lens.evaluation.paired import (
    PairedComparison,
    compare_methods,
    comparisons_markdown,
    paired_difference,
)
from dps_lens.evaluation.runner import (
    EvalConfig,
    MethodResult,
    evaluate_methods,
    markdown_table,
    table_rows,
)

__all__ = [
    "Estimate",
    "EvalConfig",
    "MethodResult",
    "PairedComparison",
    "bootstrap",
    "compare_methods",
    "comparisons_markdown",
    "evaluate_methods",
    "markdown_table",
    "output_nll",
    "paired_difference",
    "per_example",
    "summarize_task",
    "table_rows",
    "task_of",
]
