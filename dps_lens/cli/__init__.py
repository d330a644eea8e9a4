"""``dps-lens``: the command line over the package API, one module per command.

Each command is a config dataclass whose fields are its flags (simple_parsing); the steering
commands also get one flag per parameter of the registered methods. Input problems exit with
status 2 and a one-line ``error:`` message naming the fix.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dps_lens.cli import demo, discover, evaluate, fetch, figures, info, organism, steer, study  # noqa: F401  (register)
from dps_lens.cli.command import COMMANDS, build_parser
from dps_lens.errors import DpsLensError

__all__ = ["COMMANDS", "build_parser", "main"]

DESCRIPTION = "Find the attention heads that carry user preferences and steer generation with them."


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dps-lens`` with ``argv`` (default: the process arguments); the exit status."""
    try:
        namespace = build_parser(DESCRIPTION).parse_args(argv)
        namespace._command.run(namespace.config, namespace)
    except DpsLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is checkpointed; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 0
