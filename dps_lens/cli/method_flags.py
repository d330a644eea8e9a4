"""The steering methods of a command line: which methods run, and with which parameters.

``--methods`` (``--method`` for ``steer``) lists method specs, comma-separated: a registered name
(``dps``), a name with parameters (``dps(gamma=0.5,beta=0.1)``), either with a label of its own
(``fixed=dps(gamma=1)``; default label: the spec as written). Several specs may run one method
with different settings. Besides, every parameter of the registered methods is a flag of its own,
generated from their config dataclasses (``--gamma``, ``--alpha``, ...), applied to every chosen
method that has the field and does not set it in its spec. A flag that no chosen method takes is
an error naming the methods that do. A field the command itself also has (such as ``seed``) takes
the command's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union

import simple_parsing
from simple_parsing.docstring import get_attribute_docstring

from dps_lens.errors import DpsLensError
from dps_lens.steering.methods import STEERING_METHODS, MethodConfig, get_method, method_names

DEST = "method_params"
_SPEC = re.compile(r"^(?:(?P<label>[\w.@+-]+)=)?(?P<name>\w+)(?:\((?P<params>[^()]*)\))?$")


def _takers(field_name: str) -> list[str]:
    """The registered methods that have the parameter ``field_name``."""
    return [
        m
        for m in method_names()
        if field_name in {f.name for f in dataclasses.fields(STEERING_METHODS[m])}
    ]


def _union_fields(skip: set[str]) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, type, field kwargs) of every method parameter; the help says, per method, what the
    parameter means there."""
    seen: dict[str, tuple[str, Any, dict[str, Any]]] = {}
    helps: dict[str, dict[str, list[str]]] = {}
    for name in method_names():
        cls = STEERING_METHODS[name]
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in skip:
                continue
            doc = get_attribute_docstring(cls, field.name)
            text = (doc.comment_inline or doc.docstring_below or doc.comment_above or "").strip()
            helps.setdefault(field.name, {}).setdefault(text, []).append(name)
            if field.name in seen:
                continue
            kind = hints[field.name]
            if kind is bool:
                seen[field.name] = (field.name, bool, {"default": False})
            else:
                seen[field.name] = (field.name, kind | None, {"default": None})
    specs = []
    for name, kind, kwargs in seen.values():
        meanings = helps[name]
        if len(meanings) == 1:
            ((text, users),) = meanings.items()
            help_text = f"{text} (methods: {', '.join(users)})"
        else:
            help_text = "; ".join(f"{', '.join(users)}: {text}" for text, users in meanings.items())
        specs.append((name, kind, {**kwargs, "help": help_text}))
    return specs


def add_method_flags(parser: simple_parsing.ArgumentParser, command_fields: set[str]) -> None:
    """Add one flag per method parameter (except those named in ``command_fields``)."""
    fields = [
        (name, kind, simple_parsing.field(default=kw["default"], help=kw["help"]))
        for name, kind, kw in _union_fields(command_fields)
    ]
    parser.add_arguments(dataclasses.make_dataclass("MethodParameters", fields), dest=DEST)


def _split(text: str) -> list[str]:
    """Comma-separated items, commas inside parentheses kept."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise DpsLensError(f"--methods {text!r}: unbalanced or nested parentheses")
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if depth:
        raise DpsLensError(f"--methods {text!r}: a parenthesis is not closed")
    items.append(current.strip())
    return [item for item in items if item]


def _convert(method: str, name: str, text: str, kind: Any) -> Any:
    """A spec's parameter text as the field's type (``none`` for an optional one)."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (Union, UnionType) else (kind,)
    if NoneType in options and text.lower() in ("none", "off", "null"):
        return None
    for option in (o for o in options if o is not NoneType):
        if option is bool:
            if text.lower() in ("true", "yes", "on", "1"):
                return True
            if text.lower() in ("false", "no", "0"):
                return False
        elif typing.get_origin(option) is Literal:
            if text in typing.get_args(option):
                return text
        elif option in (int, float, str, Path):
            try:
                return option(text)
            except ValueError:
                continue
    raise DpsLensError(f"method {method!r}: {name}={text!r} is not a valid value for {kind}")


def parse_method_specs(text: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """``--methods`` text as ``{label: (method name, parameters)}``, in order."""
    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in _split(text):
        found = _SPEC.match(item.replace(" ", ""))
        if found is None:
            raise DpsLensError(
                f"method spec {item!r} is not NAME, NAME(param=value,...) or LABEL=NAME(...)"
            )
        name, raw = found["name"], found["params"]
        label = found["label"] or item.replace(" ", "")
        cls = get_method(name)  # raises, naming the registered methods
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        params: dict[str, Any] = {}
        for pair in (p for p in (raw or "").split(",") if p):
            key, sep, value = pair.partition("=")
            if not sep or key not in fields:
                takes = ", ".join(fields) or "no parameters"
                raise DpsLensError(f"method {name!r} has no parameter {key!r}; it takes {takes}")
            params[key] = _convert(name, key, value, hints[key])
        if label in specs:
            raise DpsLensError(f"--methods names {label!r} twice; give each spec its own LABEL=")
        specs[label] = (name, params)
    if not specs:
        raise DpsLensError("--methods names no method; give at least one")
    return specs


def method_configs(
    specs: str, namespace: argparse.Namespace, command_config: object
) -> dict[str, MethodConfig]:
    """The config of every method spec in ``specs`` (label → config), with the parameters of the
    spec, then of the flags, then the method's defaults."""
    parsed = parse_method_specs(specs)
    given = {k: v for k, v in vars(getattr(namespace, DEST)).items() if v not in (None, False)}
    chosen = {name for name, _ in parsed.values()}
    for flag in given:
        if not any(flag in {f.name for f in dataclasses.fields(get_method(m))} for m in chosen):
            others = {
                m: [f.name for f in dataclasses.fields(get_method(m))] for m in sorted(chosen)
            }
            taken = "; ".join(
                f"{m} takes {', '.join('--' + p.replace('_', '-') for p in ps) or 'no flags'}"
                for m, ps in others.items()
            )
            raise DpsLensError(
                f"--{flag.replace('_', '-')} applies to {', '.join(_takers(flag))}, not to the "
                f"chosen methods ({taken}); drop it or choose a method that takes it"
            )
    configs = {}
    for label, (name, inline) in parsed.items():
        cls = get_method(name)
        params: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in inline:
                params[field.name] = inline[field.name]
            elif hasattr(command_config, field.name):
                params[field.name] = getattr(command_config, field.name)
            elif field.name in given:
                params[field.name] = given[field.name]
        try:
            configs[label] = cls(**params)
        except TypeError as exc:
            raise DpsLensError(f"method {name!r}: {exc}") from None
    return configs
