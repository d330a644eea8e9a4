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
from dps_lens.data.example import PreferenceExample, as_text
from dps_lens.errors import DataFormatError, DpsLensError

FORMATS = ("auto", "jsonl", "lamp-dps", "lamp", "personachat")


def profile_item_text(item: Any, where: str = "profile item") -> str:
    """One LaMP profile item (a string or ``{text, title}``) as text (LaMP's own phrasing for
    items that have a title); ``null`` or another type raises ``DataFormatError`` naming ``where``."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        shown = "null" if item is None else type(item).__name__
        raise DataFormatError(
            f"{where}: a profile item must be a string or an object with 'text'/'title', got {shown}"
        )
    text = as_text(item.get("text", ""), "text", where).strip()
    title = as_text(item.get("title", ""), "title", where).strip()
    if title and text:
        return f'"{title}" is the title for "{text}"'
    return title or text


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DpsLensError(f"{path} is a directory; pass a data file inside it")
    if not path.exists():
        raise DpsLensError(f"data file {path} does not exist")


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line; a line that is not UTF-8 raises naming it."""
    _check_file(path)
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(
                    f"{path}:{line_no}: not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1}); convert the file to UTF-8"
                ) from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, line in _text_lines(path):
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
    return [
        PreferenceExample.from_dict(row, f"{path}:{line_no}") for line_no, row in _jsonl_rows(path)
    ]


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
        where = f"{path}:{line_no}"
        _require(row, ("source", "target", key), where)
        if not isinstance(row[key], list):
            raise DataFormatError(f"{where}: '{key}' must be a list of profile items")
        items = [profile_item_text(item, f"{where}: {key}[{i}]") for i, item in enumerate(row[key])]
        question_id = f"{id_prefix}{index}"
        examples.append(
            PreferenceExample(
                user_id=f"{task}/{question_id}",
                input=as_text(row["source"], "source", where),
                profile=items[::-1],
                target=as_text(row["target"], "target", where),
                meta={"task": task, "question_id": question_id, "retriever": retriever},
            )
        )
    return examples


def _read_json(path: Path) -> Any:
    _check_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(
            f"{path}:{line_no}: not UTF-8 text (byte {raw[exc.start]:#04x}); convert the file to UTF-8"
        ) from None
    try:
        return json.loads(text)
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
    if (
        not isinstance(rows, list)
        or not isinstance(golds_doc, dict)
        or not isinstance(golds_doc.get("golds"), list)
    ):
        raise DataFormatError(
            f"{questions} / {outputs}: expected a list of questions and an object with 'golds'"
        )
    golds = {}
    for index, gold in enumerate(golds_doc["golds"]):
        where = f"{outputs}: gold #{index}"
        if not isinstance(gold, dict):
            raise DataFormatError(f"{where}: expected an object with 'id' and 'output'")
        _require(gold, ("id", "output"), where)
        golds[as_text(gold["id"], "id", where)] = as_text(gold["output"], "output", where)
    task = as_text(golds_doc.get("task", _task_of(questions)[0]), "task", str(outputs))
    examples = []
    for index, row in enumerate(rows):
        where = f"{questions}: question #{index}"
        if not isinstance(row, dict):
            raise DataFormatError(f"{where}: expected an object with 'id', 'input', 'profile'")
        _require(row, ("id", "input", "profile"), where)
        qid = as_text(row["id"], "id", where)
        if qid not in golds:
            raise DataFormatError(f"{outputs}: no gold output for question id {qid}")
        if not isinstance(row["profile"], list):
            raise DataFormatError(f"{where}: 'profile' must be a list of profile items")
        examples.append(
            PreferenceExample(
                user_id=f"{task}/{qid}",
                input=as_text(row["input"], "input", where),
                profile=[
                    profile_item_text(item, f"{where}: profile[{i}]")
                    for i, item in enumerate(row["profile"])
                ],
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
    for line_no, raw in _text_lines(path):
        line = raw.rstrip("\r\n")
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
                meta={"task": "PersonaChat", "dialogue": dialogue, "turn": len(turns)},
            )
        )
        turns.append((partner, reply))
    return examples


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path`` from its name and first record."""
    path = Path(path)
    _check_file(path)
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
    _check_file(path)
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
