"""Per-batch checkpoints of decoding work: a run killed mid-way loses at most one batch.

A checkpoint is a JSONL file: a header line ``{"key", "batches"}`` (the identity of the work and
its planned batches of input indices), then one line per finished batch ``{"batch", "seconds",
"rows"}``, each row a JSON object with an ``index`` and the checkpoint's ``fields``. Lines are
flushed and fsynced as they are written; a resumed run reads them back and skips those batches.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dps_lens.errors import DataFormatError


def partial_path(path: Path) -> Path:
    """The checkpoint of an unfinished method: ``<name>.partial.jsonl`` beside ``<name>.jsonl``."""
    return path.with_name(f"{path.stem}.partial.jsonl")


@dataclass
class BatchCheckpoint:
    """Finished batches of one piece of work (``done[batch] = (seconds, rows)``); every row holds
    ``index`` and ``fields``."""

    path: Path | None
    key: str
    plan: list[list[int]]
    fields: tuple[str, ...]
    done: dict[int, tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)

    def load(self, repair: bool = True) -> None:
        """Read the finished batches; a damaged last line (a write cut short) is dropped with a
        warning, a checkpoint of other settings is started over, anything else is an error.
        ``repair=False`` (another rank's file) reads what is sound and changes nothing."""
        if self.path is None or not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline
        good_bytes = 0
        records: list[tuple[int, Any]] = []
        for line_no, raw in enumerate(complete, 1):
            try:
                records.append((line_no, json.loads(raw.decode("utf-8"))))
            except (json.JSONDecodeError, UnicodeDecodeError):
                if line_no < len(complete) or tail:
                    raise DataFormatError(
                        f"{self.path}:{line_no}: damaged checkpoint line; delete {self.path} "
                        "to recompute the method"
                    ) from None
                tail = raw
                break
            good_bytes += len(raw) + 1
        if tail and repair:
            warnings.warn(
                f"{self.path}: dropping a damaged last line (a write cut short); its batch is "
                "recomputed",
                stacklevel=3,
            )
            with self.path.open("r+b") as handle:
                handle.truncate(good_bytes)
        if not records:
            return
        header = records[0][1]
        if not isinstance(header, dict) or header.get("key") != self.key:
            if not repair:
                return
            warnings.warn(
                f"{self.path} was written for other settings or data; starting the method over",
                stacklevel=3,
            )
            self.path.unlink()
            return
        if header.get("batches") != self.plan:
            raise DataFormatError(
                f"{self.path}:1: planned batches differ from this run's; delete {self.path} to "
                "recompute the method"
            )
        for line_no, record in records[1:]:
            self._accept(line_no, record)

    def _accept(self, line_no: int, record: Any) -> None:
        where = f"{self.path}:{line_no}"
        fix = f"delete {self.path} to recompute the method"
        if not isinstance(record, dict) or not {"batch", "seconds", "rows"} <= set(record):
            raise DataFormatError(f"{where}: expected a batch record; {fix}")
        batch, rows = record["batch"], record["rows"]
        if not isinstance(batch, int) or not 0 <= batch < len(self.plan) or batch in self.done:
            raise DataFormatError(f"{where}: unknown or repeated batch {batch!r}; {fix}")
        required = {"index", *self.fields}
        if not isinstance(rows, list) or not all(
            isinstance(row, dict) and required <= set(row) for row in rows
        ):
            raise DataFormatError(f"{where}: rows lack {', '.join(sorted(required))}; {fix}")
        if [row["index"] for row in rows] != self.plan[batch]:
            raise DataFormatError(f"{where}: rows are not the inputs of batch {batch}; {fix}")
        self.done[batch] = (float(record["seconds"]), rows)

    def append(self, batch: int, seconds: float, rows: list[dict[str, Any]]) -> None:
        """Record a finished batch; on disk (flushed and fsynced) before this returns."""
        record = {"batch": batch, "seconds": seconds, "rows": rows}
        rows = json.loads(json.dumps(rows))  # exactly what a resumed run reads back
        self.done[batch] = (seconds, rows)
        if self.path is None:
            return
        lines = []
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lines.append(json.dumps({"key": self.key, "batches": self.plan}))
        lines.append(json.dumps(record))
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self, n: int) -> list[dict[str, Any]]:
        """All ``n`` rows in input order, without their ``index``."""
        by_index = {row["index"]: row for _, rows in self.done.values() for row in rows}
        return [{k: v for k, v in by_index[i].items() if k != "index"} for i in range(n)]

    @property
    def seconds(self) -> float:
        """Wall time of every finished batch."""
        return sum(batch_seconds for batch_seconds, _ in self.done.values())
