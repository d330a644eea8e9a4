"""``dps-lens audit``: what each steering method does to the output, against plain, on the same
users (step divergence, profile lift, the heads' profile attention share)."""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import simple_parsing
from simple_parsing import flag

from dps_lens.cli.command import command
from dps_lens.cli.decoding import build_decoding
from dps_lens.cli.method_flags import add_method_flags
from dps_lens.cli.options import DataOptions, DecodeOptions, ModelOptions
from dps_lens.errors import DpsLensError
from dps_lens.outdir import claim_output


@dataclass(frozen=True, kw_only=True)
class AuditConfig(ModelOptions, DataOptions, DecodeOptions):
    # comma-separated method specs: NAME, NAME(param=value,...) or LABEL=NAME(...); plain and
    # no_profile are always added
    methods: str = "dps,reference,attention_emphasis,head_shift,amplify"
    # all users, or one side of a seeded user-disjoint split
    users: Literal["all", "discovery", "evaluation"] = "evaluation"
    # generation, classification, regression or organism (default: from the data)
    task: str | None = None
    # discovery scores shown beside each head's attention share (default: --heads, if it has them)
    scores: Path | None = None
    out: Path = Path("runs/audit")  # output directory (audit.json, audit.md, outputs)
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars


def _extend(parser: simple_parsing.ArgumentParser) -> None:
    add_method_flags(parser, command_fields=set(AuditConfig.__dataclass_fields__))


@command(
    "audit",
    help="what each steering method does to the output: divergence, profile lift, attention",
    description=(
        "Run every chosen method (plus plain and no_profile) on the same users, then measure "
        "against plain: KL and flipped argmaxes when teacher-forced on plain's output, the share "
        "of output words taken from the profile (against the gold outputs'), and every head's "
        "attention on the profile. Writes audit.json, audit.md and attention_share.json."
    ),
    examples=(
        "dps-lens audit --model organism-planted --data users.jsonl --heads runs/pcs "
        "--methods 'dps,attention_emphasis(alpha=0.01),amplify(alpha=1)' --stop . --out runs/audit",
    ),
    extend=_extend,
    config=AuditConfig,
)
def run(config: AuditConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.evaluation import EvalConfig
    from dps_lens.evaluation.audit import audit_methods
    from dps_lens.scoring import HeadScores
    from dps_lens.scoring.head_scores import META_FILE

    if config.data is None:
        raise DpsLensError("audit needs --data FILE")
    source = config.scores or config.heads
    with claim_output(config.out):
        examples = config.examples()
        model = config.load()
        decoding = build_decoding(config.methods, config, namespace, model, examples)
        scores = None
        if source is not None and (Path(source) / META_FILE).exists():
            scores = HeadScores.load(source)
        elif config.scores is not None:
            raise DpsLensError(f"--scores {config.scores} holds no saved head scores")
        eval_config = EvalConfig(
            task=config.task,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            template=config.template,
            max_length=config.max_length,
            seed=config.seed,
            extra_stop_ids=decoding.stop,
        )
        report = audit_methods(
            model, examples, decoding.steerings, eval_config, config.out, config.progress, scores
        )
    print(report["markdown"], end="")
    print(f"-> {config.out}")
