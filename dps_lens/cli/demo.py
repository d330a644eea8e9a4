"""``dps-lens demo``: the whole workflow on the bundled planted organism, in seconds."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from simple_parsing import flag

from dps_lens.cli.command import command


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    out: Path = Path("figures/demo")  # output directory (scores, ranked heads, heatmap)
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars


@command(
    "demo",
    help="the whole workflow on the bundled default, in seconds",
    description=(
        "Score every head of the bundled planted organism on discovery users, print the top heads "
        "with their intervals, check them against the planted truth and print personalization "
        "rates on held-out users."
    ),
    examples=("dps-lens demo", "dps-lens demo --out runs/demo --no-progress"),
    config=DemoConfig,
)
def run(config: DemoConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.demo import run_demo

    result = run_demo(config.out, progress=config.progress)
    print(f"done in {result['seconds']} s; scores, ranked heads and heatmap in {result['out']}")
