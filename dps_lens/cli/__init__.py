"""``dps-lens``: the command line over the package API, one module per command.

Each command is a config dataclass whose fields are its flags (simple_parsing); the steering
commands also get one flag per parameter of the registered methods. Input problems exit with
status 2 and a one-line ``error:`` message naming the fix.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from dps_lens import distributed
from dps_lens.cli import (  # noqa: F401  (register)
    audit,
    demo,
    directions,
    discover,
    evaluate,
    fetch,
    figures,
    info,
    organism,
    steer,
    study,
)
from dps_lens.cli.command import COMMANDS, Command, build_parser
from dps_lens.errors import DpsLensError

__all__ = ["COMMANDS", "build_parser", "main"]

DESCRIPTION = "Find the attention heads that carry user preferences and steer generation with them."


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` on the command line: ``warning: <message>``, no source line."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dps-lens`` with ``argv`` (default: the process arguments); the exit status.
    Warnings are one ``warning:`` line each (Python's filters still show a repeat once)."""
    shown = warnings.showwarning
    warnings.showwarning = _one_line
    try:
        namespace = build_parser(DESCRIPTION).parse_args(argv)
        spec: Command = namespace._command
        if distributed.launched_by_torchrun():
            if not spec.data_parallel:
                parallel = [" ".join(c.path) for c in COMMANDS.values() if c.data_parallel]
                raise DpsLensError(
                    f"dps-lens {' '.join(spec.path)} runs as one process, not under torchrun "
                    f"(data-parallel commands: {', '.join(parallel)})"
                )
            distributed.init_from_env(getattr(namespace.config, "device", "auto"))
        spec.run(namespace.config, namespace)
    except DpsLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is checkpointed; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        warnings.showwarning = shown
        distributed.shutdown()
    return 0
