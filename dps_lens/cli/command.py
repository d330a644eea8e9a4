"""Commands as config dataclasses: each command module registers a dataclass (its flags, generated
by simple_parsing from the fields and their comments) and the function that runs it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import simple_parsing

from dps_lens.cli.help import CommandParser

RunCommand = Callable[[Any, argparse.Namespace], None]


@dataclass(frozen=True)
class Command:
    """``dps-lens <path...>``: ``config`` is parsed from the flags and passed to ``run``.
    ``extend`` may add flags that are not fields of ``config`` (e.g. registry-derived ones).
    ``data_parallel``: the command shares its work across ranks when launched by torchrun."""

    path: tuple[str, ...]
    help: str
    config: type
    run: RunCommand
    extend: Callable[[simple_parsing.ArgumentParser], None] | None = None
    data_parallel: bool = False
    description: str = ""  # a paragraph for --help (default: help)
    examples: tuple[str, ...] = ()  # example invocations shown at the end of --help


COMMANDS: dict[tuple[str, ...], Command] = {}


def command(
    *path: str,
    config: type,
    help: str,
    extend: Callable[[simple_parsing.ArgumentParser], None] | None = None,
    data_parallel: bool = False,
    description: str = "",
    examples: tuple[str, ...] = (),
) -> Callable[[RunCommand], RunCommand]:
    """Decorator registering ``run(config, namespace)`` as ``dps-lens <path>``, its flags generated
    from the dataclass ``config``; ``description`` and ``examples`` go into its ``--help``."""

    def register(run: RunCommand) -> RunCommand:
        COMMANDS[path] = Command(
            path, help, config, run, extend, data_parallel, description, examples
        )
        return run

    return register


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The ``dps-lens`` parser with a sub-command per registered command path."""
    parser = argparse.ArgumentParser(prog="dps-lens", description=description)
    subparsers = {"required": True, "parser_class": CommandParser}
    groups: dict[tuple[str, ...], Any] = {(): parser.add_subparsers(dest="command", **subparsers)}
    parents: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for path, spec in COMMANDS.items():
        for depth in range(1, len(path)):
            prefix = path[:depth]
            if prefix not in parents:
                parents[prefix] = groups[prefix[:-1]].add_parser(
                    prefix[-1], help=f"{prefix[-1]} commands"
                )
                groups[prefix] = parents[prefix].add_subparsers(dest="_".join(prefix), **subparsers)
        sub = groups[path[:-1]].add_parser(
            path[-1],
            help=spec.help,
            description=spec.description or spec.help,
            add_option_string_dash_variants=simple_parsing.DashVariant.DASH,
            add_config_path_arg=False,
            examples=spec.examples,
        )
        sub.add_arguments(spec.config, dest="config")
        if spec.extend is not None:
            spec.extend(sub)
        sub.set_defaults(_command=spec)
    return parser
