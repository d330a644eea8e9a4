"""``dps-lens directions``: every head's profile direction for the head shift, saved beside a head
set (``directions.safetensors``)."""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simple_parsing import field, flag

from dps_lens.cli.command import command
from dps_lens.cli.options import DataOptions, ModelOptions
from dps_lens.errors import DpsLensError


@dataclass(frozen=True, kw_only=True)
class DirectionsConfig(ModelOptions, DataOptions):
    heads: Path = field(required=True)  # the head set's directory (dps-lens discover --out)
    # discovery: the examples the head set was scored on (found in --data by their ids, checked
    # by hash); data: the examples that --data, --users and --n-examples select
    examples_from: Literal["discovery", "data"] = "discovery"
    template: str = "history"  # prompt template: history or chat (default: the scan's)
    max_length: int | None = None  # token limit per example (default: the scan's)
    batch_size: int = 8  # examples per forward pass
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars


@command(
    "directions",
    help="every head's profile direction (head shift), saved beside a head set",
    description=(
        "For every head, the unit direction of the mean difference of its hook_z vector with the "
        "profile minus without it at the answer positions, and the spread of the projections on "
        "it; written as directions.safetensors into the head set's directory, where head_shift "
        "reads it. By default on the examples the head set was scored on."
    ),
    examples=(
        "dps-lens directions --model organism-planted --data discovery.jsonl --heads runs/pcs",
    ),
    config=DirectionsConfig,
)
def run(config: DirectionsConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.data import discovery_examples
    from dps_lens.interventions import head_directions
    from dps_lens.scoring import HeadScores

    if config.data is None:
        raise DpsLensError("directions needs --data FILE")
    if not config.heads.is_dir():
        raise DpsLensError(f"--heads {config.heads} is not a directory; give a discover --out")
    template, max_length = config.template, config.max_length
    if config.examples_from == "discovery":
        scores = HeadScores.load(config.heads)
        examples = discovery_examples(config.examples(), scores.example_ids, scores.data_hash)
        template = scores.config.get("template", template)
        max_length = scores.config.get("max_length") if max_length is None else max_length
    else:
        examples = config.examples()
    model = config.load()
    found = head_directions(
        model, examples, template, max_length, config.batch_size, config.progress
    )
    path = found.save(config.heads)
    print(
        f"directions of {found.directions.shape[0] * found.directions.shape[1]} heads from "
        f"{found.n_examples} examples ({found.n_positions} answer positions) -> {path}"
    )
