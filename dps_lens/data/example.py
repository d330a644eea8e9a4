"""The unit of data: one user's task input, their profile, and their gold output."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dps_lens.errors import DataFormatError


def as_text(value: Any, name: str, where: str) -> str:
    """``value`` as text: a string, or a number (written as text); ``null``, booleans, lists and
    objects raise ``DataFormatError`` naming ``where`` and the field ``name``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    shown = "null" if value is None else type(value).__name__
    raise DataFormatError(f"{where}: '{name}' must be a string, got {shown}; give its text")


@dataclass(frozen=True)
class PreferenceExample:
    """``(x, u, y*)``: task ``input`` x, user ``profile`` u (history items, oldest first), gold ``target`` y*.

    Prompt truncation drops profile items from the front of the list, so put the items
    you most want kept (the newest or most relevant) last.
    """

    user_id: str
    input: str
    profile: list[str]
    target: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any], where: str = "example") -> PreferenceExample:
        """Read a ``to_dict`` row; a missing, null or mistyped field raises ``DataFormatError``
        naming ``where`` (e.g. ``file:line``), so that ``null`` is never read as the text "None"."""
        missing = [key for key in ("user_id", "input", "target") if key not in row]
        if missing:
            raise DataFormatError(f"{where}: missing field(s) {', '.join(missing)}")
        profile = row.get("profile", [])
        if not isinstance(profile, list):
            raise DataFormatError(f"{where}: 'profile' must be a list of strings")
        meta = row.get("meta", {})
        if not isinstance(meta, dict):
            raise DataFormatError(
                f"{where}: 'meta' must be a JSON object, got {type(meta).__name__}"
            )
        return cls(
            user_id=as_text(row["user_id"], "user_id", where),
            input=as_text(row["input"], "input", where),
            profile=[as_text(item, f"profile[{i}]", where) for i, item in enumerate(profile)],
            target=as_text(row["target"], "target", where),
            meta=dict(meta),
        )

    def without_profile(self) -> PreferenceExample:
        return PreferenceExample(self.user_id, self.input, [], self.target, dict(self.meta))


@dataclass(frozen=True)
class ExampleRef:
    """Which example a row of saved scores belongs to: its position in the scored data and its
    user. Saved as the text ``"<index>:<user_id>"``."""

    index: int
    user_id: str

    def __str__(self) -> str:
        return f"{self.index}:{self.user_id}"

    @classmethod
    def parse(cls, text: str) -> ExampleRef:
        """Read ``"<index>:<user_id>"`` (the user id may itself contain ``:``)."""
        index, sep, user_id = str(text).partition(":")
        if not sep or not index.isdigit():
            raise ValueError(f"example id {text!r} is not <index>:<user_id>")
        return cls(int(index), user_id)

    @classmethod
    def of(cls, examples: Sequence[PreferenceExample]) -> list[ExampleRef]:
        """One reference per example, in order."""
        return [cls(i, example.user_id) for i, example in enumerate(examples)]


def data_hash(examples: Sequence[PreferenceExample]) -> str:
    """SHA-256 of the examples' canonical JSON: the identity of a dataset in saved results."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.to_dict(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def user_ids(examples: Iterable[PreferenceExample]) -> list[str]:
    """Distinct user ids in first-seen order."""
    return list(dict.fromkeys(example.user_id for example in examples))
