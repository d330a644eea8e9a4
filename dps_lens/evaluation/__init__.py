"""Evaluation: LaMP metrics, coherence, latency, a runner comparing decoding methods, and the
audit of what each method does to the output."""

from dps_lens.evaluation.audit import audit_markdown, audit_methods, step_divergence
from dps_lens.evaluation.coherence import output_nll
from dps_lens.evaluation.lift import content_words, profile_lift
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
    "audit_markdown",
    "audit_methods",
    "bootstrap",
    "compare_methods",
    "comparisons_markdown",
    "content_words",
    "evaluate_methods",
    "markdown_table",
    "output_nll",
    "paired_difference",
    "per_example",
    "profile_lift",
    "step_divergence",
    "summarize_task",
    "table_rows",
    "task_of",
]
