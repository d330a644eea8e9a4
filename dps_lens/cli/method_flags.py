"""Flags for the parameters of every registered steering method, generated from their config
dataclasses: one flag per distinct field name (``--gamma``, ``--mode``, ``--alpha``, ...), applied
to every selected method that has that field. A field that the command itself also has (such as
``seed``) takes the command's value."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

import simple_parsing
from simple_parsing.docstring import get_attribute_docstring

from dps_lens.errors import DpsLensError
from dps_lens.steering.methods import STEERING_METHODS, MethodConfig, get_method, method_names

DEST = "method_params"


def _union_fields(skip: set[str]) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, type, field kwargs) of every method parameter, first definition wins."""
    seen: dict[str, tuple[str, Any, dict[str, Any]]] = {}
    for name in method_names():
        cls = STEERING_METHODS[name]
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in seen or field.name in skip:
                continue
            doc = get_attribute_docstring(cls, field.name)
            help_text = f"{doc.comment_inline or doc.docstring_below} (methods: %s)".strip()
            kind = hints[field.name]
            if kind is bool:
                spec = (field.name, bool, {"default": False, "help": help_text})
            else:
                spec = (field.name, kind | None, {"default": None, "help": help_text})
            seen[field.name] = spec
    return list(seen.values())


def add_method_flags(parser: simple_parsing.ArgumentParser, command_fields: set[str]) -> None:
    """Add one flag per method parameter (except those named in ``command_fields``)."""
    specs = _union_fields(command_fields)
    users = {
        name: ", ".join(
            m
            for m in method_names()
            if name in {f.name for f in dataclasses.fields(STEERING_METHODS[m])}
        )
        for name, _, _ in specs
    }
    fields = [
        (name, kind, simple_parsing.field(default=kw["default"], help=kw["help"] % users[name]))
        for name, kind, kw in specs
    ]
    parser.add_arguments(dataclasses.make_dataclass("MethodParameters", fields), dest=DEST)


def method_configs(
    names: list[str], namespace: argparse.Namespace, command_config: object
) -> dict[str, MethodConfig]:
    """The config of every method in ``names``, with the parameters given on the command line."""
    given = {k: v for k, v in vars(getattr(namespace, DEST)).items() if v not in (None, False)}
    configs = {}
    for name in names:
        cls = get_method(name)
        params = {}
        for field in dataclasses.fields(cls):
            if hasattr(command_config, field.name):
                params[field.name] = getattr(command_config, field.name)
            elif field.name in given:
                params[field.name] = given[field.name]
        try:
            configs[name] = cls(**params)
        except TypeError as exc:
            raise DpsLensError(f"method {name!r}: {exc}") from None
    return configs
