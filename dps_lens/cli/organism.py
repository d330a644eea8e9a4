"""``dps-lens organism train|data|validate``: the bundled model organisms."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simple_parsing import field, flag

from dps_lens.checks import check_positive
from dps_lens.cli.command import command
from dps_lens.outdir import claim_output

Organism = Literal["organism-free", "organism-planted", "organism-groups", "organism-generic"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    name: Organism = field(required=True)  # the organism to train
    out: Path | None = None  # output directory (default: the package's bundled copy)
    steps: int | None = None  # override the step count
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars

    def __post_init__(self) -> None:
        check_positive("--steps", self.steps)


@command(
    "organism",
    "train",
    help="train an organism (seeded, reproducible)",
    examples=("dps-lens organism train --name organism-planted --out runs/organism",),
    config=TrainConfig,
)
def train(config: TrainConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.organism.bundled import organism_weights_dir
    from dps_lens.organism.train import ORGANISMS, train_organism

    organism = ORGANISMS[config.name]
    if config.steps is not None:
        organism = dataclasses.replace(organism, steps=config.steps)
    out = config.out or organism_weights_dir(config.name)
    with claim_output(out):
        card = train_organism(organism, out, progress=config.progress)
    rates = card["personalization"]
    print(
        f"{config.name}: final loss {card['final_train_loss']} nats in {card['train_seconds']} s; "
        f"personalization {rates['full']:.3f} (no profile {rates['no_profile']:.3f}) -> {out}"
    )


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    out: Path = field(required=True)  # JSONL file to write
    split: Literal["train", "discovery", "evaluation"] = "discovery"  # which users of the world
    users: int = 40  # number of users
    queries_per_user: int = 2  # examples per user
    seed: int = 0  # world seed
    grouped: bool = False  # the two-group world of organism-groups
    sign_offs: bool = False  # the sign-off world of organism-generic

    def __post_init__(self) -> None:
        check_positive("--users", self.users)
        check_positive("--queries-per-user", self.queries_per_user)


@command(
    "organism",
    "data",
    help="write world examples as JSONL (for discover)",
    examples=("dps-lens organism data --split evaluation --users 100 --out users.jsonl",),
    config=DataConfig,
)
def data(config: DataConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.data import write_jsonl
    from dps_lens.organism.world import SIGN_OFFS, World, WorldConfig

    sign_offs = SIGN_OFFS if config.sign_offs else ()
    world = World(WorldConfig(seed=config.seed, grouped=config.grouped, sign_offs=sign_offs))
    examples = world.split_examples(
        config.split, config.users, queries_per_user=config.queries_per_user
    )
    write_jsonl(config.out, examples)
    print(f"wrote {len(examples)} examples of {config.users} {config.split} users -> {config.out}")


@dataclass(frozen=True, kw_only=True)
class ValidateConfig:
    model: str = "organism-planted"  # an organism (or a model trained on the world)
    out: Path = Path("runs/validate")  # output directory (report.json, report.md)
    discovery_users: int = 60  # users whose examples are scored
    evaluation_users: int = 150  # held-out users for the personalization rates
    random_draws: int = 10  # random head sets per K
    seed: int = 0  # seed of the random draws

    def __post_init__(self) -> None:
        for name in ("discovery_users", "evaluation_users", "random_draws"):
            check_positive(f"--{name.replace('_', '-')}", getattr(self, name))


@command(
    "organism",
    "validate",
    help="ground-truth report: PCS precision and personalization rates",
    examples=("dps-lens organism validate --model organism-planted --out runs/validate",),
    config=ValidateConfig,
)
def validate(config: ValidateConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.models import load_model
    from dps_lens.organism.validate import report_markdown, validate_organism, write_report

    with claim_output(config.out):
        report = validate_organism(
            load_model(config.model, device="cpu"),
            n_discovery_users=config.discovery_users,
            n_evaluation_users=config.evaluation_users,
            n_random=config.random_draws,
            seed=config.seed,
            progress=True,
        )
        write_report(report, config.out)
    print(report_markdown(report))
    print(f"validated in {report['seconds']} s -> {config.out}")
