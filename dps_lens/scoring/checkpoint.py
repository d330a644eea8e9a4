"""The checkpoint of a scan: per-example values, clean losses and which cells are done.

Saved after every forward pass (atomic writes), so a killed scan resumes without recomputing a
finished cell; a damaged checkpoint is moved aside with a warning and the scan starts afresh.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from dps_lens._io import atomic_write, atomic_write_json
from dps_lens.errors import DpsLensError, NonFiniteLossError

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


class ScanCheckpoint:
    """The partial per-example scores of one scan, stored in ``directory``."""

    def __init__(self, directory: Path | None, key: str, shape: tuple[int, int, int]):
        self.directory, self.key = directory, key
        self.per_example = torch.full(shape, float("nan"))
        self.clean_loss = torch.full((shape[0],), float("nan"))
        self.done = torch.zeros(shape, dtype=torch.bool)
        self._earlier, self._started = 0.0, time.perf_counter()
        if directory is not None and (directory / CHECKPOINT_META).exists():
            self._restore(directory)
        self.seconds = self._earlier  # compute time of this scan, earlier interrupted runs included
        self._finished_before = self._finished()

    def _finished(self) -> int:
        """How many cells and clean losses are done."""
        return int(self.done.sum()) + int((~torch.isnan(self.clean_loss)).sum())

    def _restore(self, directory: Path) -> None:
        try:
            meta = json.loads((directory / CHECKPOINT_META).read_text(encoding="utf-8"))
            key = meta.get("key") if isinstance(meta, dict) else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._set_aside(directory, f"unreadable {CHECKPOINT_META} ({exc})")
            return
        if key != self.key:
            raise DpsLensError(
                f"{directory} holds a checkpoint of a different scan (other model, data or settings); "
                "delete it or choose another --out directory"
            )
        try:
            tensors = load_file(directory / CHECKPOINT_TENSORS)
            per_example, clean_loss = tensors["per_example"], tensors["clean_loss"]
            done = tensors["done"].bool()
        except (OSError, SafetensorError, KeyError) as exc:
            self._set_aside(directory, f"unreadable {CHECKPOINT_TENSORS} ({exc})")
            return
        if (
            per_example.shape != self.per_example.shape
            or done.shape != self.done.shape
            or (clean_loss.shape != self.clean_loss.shape)
        ):
            self._set_aside(directory, "tensors of the wrong shape")
            return
        self.per_example, self.clean_loss, self.done = per_example, clean_loss, done
        self._earlier = float(meta.get("seconds", 0.0))

    def absorb(self, per_example: Tensor, clean_loss: Tensor, done: Tensor) -> None:
        """Take the cells and clean losses that another checkpoint (another rank's, or an earlier
        run's with another number of ranks) finished and this one has not."""
        new = done & ~self.done
        self.per_example[new] = per_example[new]
        self.done |= new
        losses = torch.isnan(self.clean_loss) & ~torch.isnan(clean_loss)
        self.clean_loss[losses] = clean_loss[losses]
        self._finished_before = self._finished()  # absorbed, not computed here

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(per_example, clean_loss, done)``, the state ``absorb`` takes."""
        return self.per_example, self.clean_loss, self.done

    def _set_aside(self, directory: Path, why: str) -> None:
        """Move a damaged checkpoint out of the way (kept for inspection) and start afresh."""
        aside = directory.with_name(f"{directory.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        directory.rename(aside)
        warnings.warn(
            f"checkpoint in {directory} is damaged ({why}); moved to {aside}, starting afresh",
            stacklevel=3,
        )

    def save(self) -> None:
        """Write the checkpoint; this run's time counts only once it has computed something, so
        rerunning a finished scan rewrites the same files."""
        if self._finished() != self._finished_before:
            self.seconds = self._earlier + time.perf_counter() - self._started
        if self.directory is None:
            return
        tensors = {
            "per_example": self.per_example,
            "clean_loss": self.clean_loss,
            "done": self.done.to(torch.uint8),
        }
        atomic_write(self.directory / CHECKPOINT_TENSORS, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(
            self.directory / CHECKPOINT_META, {"key": self.key, "seconds": self.seconds}
        )


def check_finite(losses: Tensor, what: Callable[[int], str], checkpoint: ScanCheckpoint) -> None:
    """Raise ``NonFiniteLossError`` (after saving the checkpoint) if some loss is NaN or inf;
    ``what(i)`` names row ``i``."""
    bad = torch.nonzero(~torch.isfinite(losses)).flatten()
    if len(bad):
        checkpoint.save()
        kept = (
            f"; partial results are kept in {checkpoint.directory}" if checkpoint.directory else ""
        )
        raise NonFiniteLossError(
            f"non-finite loss ({float(losses[bad[0]])}) for {what(int(bad[0]))}: load the model "
            f"with dtype float32 (--dtype float32) or check the example's text{kept}"
        )
