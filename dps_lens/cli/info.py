"""``dps-lens info``: a model's layers, heads, KV heads, d_head and context."""

from __future__ import annotations

import argparse

from dps_lens.cli.command import command
from dps_lens.cli.options import ModelOptions


@command(
    "info",
    help="print a model's layers, heads, KV heads, d_head and context",
    examples=("dps-lens info --model organism-planted",),
    config=ModelOptions,
)
def run(config: ModelOptions, namespace: argparse.Namespace) -> None:
    from dps_lens.models import model_info

    for key, value in model_info(config.load()).as_dict().items():
        print(f"{key:<13}{value}")
