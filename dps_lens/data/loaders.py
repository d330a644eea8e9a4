"""Read personalization datasets into ``PreferenceExample`` lists.

Formats: official LaMP (``*_questions.json`` + ``*_outputs.json``), the DPS authors' LaMP JSONL
(``source``/``target``/``icr_profile``/``purple_profile``), ParlAI PersonaChat/ConvAI2 text, and
generic JSONL (one ``PreferenceExample`` dict per line). ``load_examples`` picks by content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dps_lens._io import atomic_write_text
from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DataFormatError, DpsLensError

FORMATS = ("auto", "jsonl", "lamp-dps", "lamp", "personachat")


def profile_item_text(item: dict[str, Any] | str) -> str:
    """One LaMP profile item as text (LaMP's own phrasing for items that have a title)."""
    if isinstance(item, str):
        return item
    text = str(item.get("text", "")).strip()
    title = str(item.get("title", "")).strip()
    if title and text:
        return f'"{title}" is the title for "{text}"'
    return title or text


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{line_no}: expected a JSON object per line")
            yield line_no, row


def _require(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in row]
    if missing:
        raise DataFormatError(f"{where}: missing field(s) {', '.join(missing)}")


def load_jsonl(path: str | Path) -> list[PreferenceExample]:
    """Generic JSONL: ``{"user_id", "input", "profile": [str], "target", "meta"?}`` per line."""
    path = Path(path)
    examples = []
    for line_no, row in _jsonl_rows(path):
        _require(row, ("user_id", "input", "target"), f"{path}:{line_no}")
        if not isinstance(row.get("profile", []), list):
            raise DataFormatError(f"{path}:{line_no}: 'profile' must be a list of strings")
        examples.append(PreferenceExample.from_dict(row))
    return examples


def write_jsonl(path: str | Path, examples: Iterable[PreferenceExample]) -> Path:
    """Write ``examples`` as generic JSONL (one ``to_dict`` row per line, atomic); ``load_jsonl`` reads it."""
    text = "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in examples)
    return atomic_write_text(path, text)


def _task_of(path: Path) -> tuple[str, str]:
    """(task name, LaMP question-id prefix) from a file name such as ``LaMP-7.dev300.jsonl``."""
    match = re.search(r"LaMP[-_](\d+)", path.name, flags=re.IGNORECASE)
    if match is None:
        return "LaMP", ""
    number = int(match.group(1))
    return f"LaMP-{number}", f"{number - 1}1"  # LaMP numbers its dev questions <task-1>1<row>


def load_lamp_dps(path: str | Path, retriever: str = "icr") -> list[PreferenceExample]:
    """The DPS authors' LaMP JSONL. Each row is one user (LaMP user-based split).

    ``retriever`` picks the ``icr`` or ``purple`` top-5 profile. The retrievers rank items most
    relevant first; they are stored reversed so truncation drops the least relevant first.
    The row's LaMP question id (``<task number - 1>1<row index>``) becomes the user id.
    """
    if retriever not in ("icr", "purple"):
        raise DpsLensError(f"unknown retriever {retriever!r}; use 'icr' or 'purple'")
    path = Path(path)
    task, id_prefix = _task_of(path)
    examples = []
    for index, (line_no, row) in enumerate(_jsonl_rows(path)):
        key = f"{retriever}_profile"
        _require(row, ("source", "target", key), f"{path}:{line_no}")
        items = [profile_item_text(item) for item in row[key]]
        question_id = f"{id_prefix}{index}"
        examples.append(
            PreferenceExample(
                user_id=f"{task}/{question_id}",
                input=str(row["source"]),
                profile=items[::-1],
                target=str(row["target"]),
                meta={"task": task, "question_id": question_id, "retriever": retriever},
            )
        )
    return examples


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def load_lamp(questions: str | Path, outputs: str | Path | None = None) -> list[PreferenceExample]:
    """Official LaMP: ``questions`` (list of ``{id, input, profile}``) + ``outputs`` (``{golds}``).

    ``outputs`` defaults to the sibling file with ``questions`` replaced by ``outputs``.
    The question id is the user id (one question per user in the user-based split).
    """
    questions = Path(questions)
    outputs = (
        Path(outputs)
        if outputs
        else questions.with_name(questions.name.replace("questions", "outputs"))
    )
    if not outputs.exists():
        raise DpsLensError(f"LaMP gold file {outputs} not found; pass the *_outputs.json path")
    rows = _read_json(questions)
    golds_doc = _read_json(outputs)
    if not isinstance(rows, list) or not isinstance(golds_doc, dict) or "golds" not in golds_doc:
        raise DataFormatError(
            f"{questions} / {outputs}: expected a list of questions and an object with 'golds'"
        )
    golds = {str(g["id"]): str(g["output"]) for g in golds_doc["golds"]}
    task = str(golds_doc.get("task", _task_of(questions)[0]))
    examples = []
    for index, row in enumerate(rows):
        _require(row, ("id", "input", "profile"), f"{questions}: question #{index}")
        qid = str(row["id"])
        if qid not in golds:
            raise DataFormatError(f"{outputs}: no gold output for question id {qid}")
        examples.append(
            PreferenceExample(
                user_id=f"{task}/{qid}",
                input=str(row["input"]),
                profile=[profile_item_text(item) for item in row["profile"]],
                target=golds[qid],
                meta={"task": task, "question_id": qid},
            )
        )
    return examples


def load_personachat(path: str | Path, history_turns: int = 2) -> list[PreferenceExample]:
    """ParlAI ConvAI2 text: each dialogue is a user; each turn an example.

    Profile = the ``your persona:`` lines; input = the last ``history_turns`` exchanges and the
    partner's new utterance; target = the persona owner's gold reply.
    """
    path = Path(path)
    examples: list[PreferenceExample] = []
    persona: list[str] = []
    turns: list[tuple[str, str]] = []
    dialogue = -1
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, 1):
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            number, _, text = line.partition(" ")
            if not number.isdigit():
                raise DataFormatError(f"{path}:{line_no}: expected '<n> <text>' (ParlAI format)")
            if number == "1":
                dialogue, persona, turns = dialogue + 1, [], []
            if text.startswith("your persona:"):
                persona.append(text.removeprefix("your persona:").strip())
                continue
            partner, tab, reply = text.partition("\t")
            if not tab:
                raise DataFormatError(f"{path}:{line_no}: turn line without a tab-separated reply")
            reply = reply.split("\t")[0]
            context = [
                f"{who}: {said}"
                for pair in turns[-history_turns:]
                if history_turns
                for who, said in zip(("Partner", "You"), pair, strict=True)
            ]
            examples.append(
                PreferenceExample(
                    user_id=f"personachat/{dialogue}",
                    input="\n".join([*context, f"Partner: {partner}", "You:"]),
                    profile=list(persona),
                    target=reply,
                    meta={"dialogue": dialogue, "turn": len(turns)},
                )
            )
            turns.append((partner, reply))
    return examples


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path`` from its name and first record."""
    path = Path(path)
    if path.suffix == ".txt":
        return "personachat"
    if path.suffix == ".json":
        return "lamp"
    for _, row in _jsonl_rows(path):
        if "source" in row and ("icr_profile" in row or "purple_profile" in row):
            return "lamp-dps"
        return "jsonl"
    raise DataFormatError(f"{path} holds no records")


def load_examples(path: str | Path, fmt: str = "auto", **kwargs: Any) -> list[PreferenceExample]:
    """Load ``path`` in format ``fmt`` (``auto`` detects it); raises ``DataFormatError`` with the line."""
    path = Path(path)
    if not path.exists():
        raise DpsLensError(f"data file {path} does not exist")
    if fmt not in FORMATS:
        raise DpsLensError(f"unknown data format {fmt!r}; use one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    loader = {
        "jsonl": load_jsonl,
        "lamp-dps": load_lamp_dps,
        "lamp": load_lamp,
        "personachat": load_personachat,
    }[fmt]
    examples = loader(path, **kwargs)
    if not examples:
        raise DpsLensError(f"{path} holds no examples")
    return examples
