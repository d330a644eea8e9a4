"""The unit of data: one user's task input, their profile, and their gold output."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


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
    def from_dict(cls, row: dict[str, Any]) -> PreferenceExample:
        return cls(
            user_id=str(row["user_id"]),
            input=str(row["input"]),
            profile=[str(item) for item in row.get("profile", [])],
            target=str(row["target"]),
            meta=dict(row.get("meta", {})),
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
