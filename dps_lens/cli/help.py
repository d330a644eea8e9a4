"""``--help`` a person can read: options grouped by purpose, word metavars, each default said once,
and example invocations at the end.

simple_parsing adds a command's flags when it first parses or prints help; ``CommandParser``
then regroups them by the option group (dataclass) that declares each field and gives each a
metavar from the field's type (``N``, ``FLOAT``, ``PATH``, ``N|auto``, ...). ``HelpFormatter``
prints a default only where the help text does not already say it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union

import simple_parsing
from simple_parsing.helpers.custom_actions import BooleanOptionalAction

GROUP_TITLES: dict[str, str] = {
    "ModelOptions": "model",
    "DataOptions": "data",
    "DecodeOptions": "decoding",
    "ScanConfig": "scan",
    "LampStudyConfig": "study sizes and settings",
    "MethodParameters": "method parameters (each applies to the chosen methods that take it)",
}
"""Titles of the option groups, by the dataclass that declares the fields; a command's own fields
are "options"."""

METAVARS: dict[str, str] = {
    "ScanConfig.method": "METHOD",
    "model": "NAME|PATH",
    "device": "DEVICE",
    "dtype": "DTYPE",
    "device_map": "MAP",
    "max_memory": "JSON",
    "method": "SPEC",
    "methods": "SPECS",
    "batch_size": "N",
    "template": "TEMPLATE",
    "mode": "MODE",
    "format": "FORMAT",
    "stop": "TOKEN",
    "prompt": "TEXT",
    "task": "TASK",
    "clusters": "K|auto",
    "encoder": "ENCODER",
    "layers": "L,L,...",
    "premature_layers": "LAYERS",
    "epsilon": "NATS|PCT%",
}
"""Metavars of fields whose type alone does not say what they take."""


def _base(kind: Any) -> Any:
    """``kind`` without ``None`` (an optional field's value type)."""
    if typing.get_origin(kind) in (Union, UnionType):
        options = [o for o in typing.get_args(kind) if o is not NoneType]
        return options[0] if len(options) == 1 else kind
    return kind


def type_metavar(name: str, kind: Any, owner: str = "") -> str | None:
    """A word for what the field ``name`` (of the dataclass ``owner``) of type ``kind`` takes;
    None for a flag or choices."""
    for key in (f"{owner}.{name}", name):
        if key in METAVARS:
            return METAVARS[key]
    kind = _base(kind)
    origin = typing.get_origin(kind)
    if kind is bool:
        return None
    if origin is Literal:
        return "|".join(map(str, typing.get_args(kind)))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        return type_metavar(name, args[0]) if args else "VALUE"
    return {int: "N", float: "FLOAT", Path: "PATH", str: "TEXT"}.get(kind, "VALUE")


def _declaring_class(config: type, name: str) -> type:
    """The base-most dataclass in ``config``'s MRO that declares the field ``name``."""
    for cls in reversed(config.__mro__):
        if name in getattr(cls, "__annotations__", {}) and dataclasses.is_dataclass(cls):
            return cls
    return config


_LITERAL_PERCENT = re.compile(r"%(?!\(\w+\)s)")  # a % that is no argparse placeholder


def _is_flag(action: argparse.Action) -> bool:
    return isinstance(action, BooleanOptionalAction)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Options as ``--name WORD``, flags as ``--flag, --no-flag``, each default once."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace(" (default: %(default)s)", "")  # a flag's own suffix
        text = _LITERAL_PERCENT.sub("%%", text)  # argparse %-formats what this returns
        default = action.default
        if _is_flag(action):
            return text + (" (default: on)" if default is True else "")
        empty = default is None or default is False or default in ([], (), argparse.SUPPRESS)
        if "default" not in text.lower() and not empty and not action.required:
            shown = default.as_posix() if isinstance(default, Path) else default
            text += f" (default: {shown})".replace("%", "%%")
        return text

    def _format_args(self, action: argparse.Action, default_metavar: str | None) -> str:
        if action.choices is not None:
            metavar = "{" + ",".join(map(str, action.choices)) + "}"
        elif isinstance(action.metavar, str):
            metavar = action.metavar
        else:
            metavar = default_metavar or action.dest.rpartition(".")[2].upper()
        if action.nargs in ("+", "*"):
            return f"{metavar} [{metavar} ...]"
        return metavar

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if _is_flag(action):
            return ", ".join(action.option_strings)
        return super()._format_action_invocation(action)

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        """``usage: dps-lens CMD --required WORD ... [options]``: the flags are listed below.
        (argparse also asks, with an empty prefix, for the prefix of sub-commands' names.)"""
        if prefix == "":
            return self._prog
        required = [a for a in actions if a.option_strings and a.required]
        words = [f"{a.option_strings[-1]} {self._format_args(a, a.dest.upper())}" for a in required]
        text = " ".join([self._prog, *words, "[options]"])
        return f"{prefix or 'usage: '}{text}\n\n"


class CommandParser(simple_parsing.ArgumentParser):
    """A sub-command's parser: simple_parsing's flags, regrouped and named for people."""

    def __init__(self, *args: Any, examples: Sequence[str] = (), **kwargs: Any) -> None:
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, epilog=epilog, **kwargs)

    def _preprocessing(self, args: Sequence[str] = (), namespace: Any = None) -> None:
        done = self._preprocessing_done
        super()._preprocessing(args, namespace)
        if not done:
            self._regroup()

    def _regroup(self) -> None:
        """One argument group per option group, in the order the flags came; word metavars."""
        wrappers = {w.dest: w.dataclass for w in self._wrappers}
        grouped: dict[str, list[argparse.Action]] = {}
        for action in self._actions:
            if not action.option_strings or action.dest == "help":
                continue
            owner, _, name = action.dest.rpartition(".")
            config = wrappers.get(owner)
            if config is None:
                continue
            declaring = _declaring_class(config, name)
            kind = typing.get_type_hints(declaring).get(name)
            if isinstance(action, BooleanOptionalAction):
                self._dash_negative(action)
            elif action.choices is None:
                action.metavar = type_metavar(name, kind, declaring.__name__) or action.metavar
            title = GROUP_TITLES.get(declaring.__name__, "options")
            grouped.setdefault(title, []).append(action)
        for group in list(self._action_groups):  # simple_parsing's one group per dataclass
            if group is not self._optionals and group is not self._positionals:
                self._action_groups.remove(group)
        for title, actions in grouped.items():
            group = self._optionals if title == "options" else self.add_argument_group(title)
            group._group_actions.extend(actions)

    def _dash_negative(self, action: BooleanOptionalAction) -> None:
        """``--no-flag`` rather than simple_parsing's ``--noflag`` for a flag's negative form."""
        renamed = {}
        for old in action.negative_option_strings:
            if old.startswith("--no") and not old.startswith("--no-"):
                renamed[old] = "--no-" + old[len("--no") :]
        if not renamed:
            return
        for old, new in renamed.items():
            self._option_string_actions.pop(old, None)
            self._option_string_actions[new] = action
        action.negative_option_strings = [renamed.get(o, o) for o in action.negative_option_strings]
        action.option_strings = [renamed.get(o, o) for o in action.option_strings]
