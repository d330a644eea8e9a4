"""Data parallelism under ``torchrun``: every rank takes its share of the work units, rank 0 writes.

Launched by ``torchrun --nproc_per_node N -m dps_lens discover ...`` (or ``srun torchrun`` under
SLURM), the command joins the process group torchrun describes in its environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``): gloo on CPU, nccl when the ranks use CUDA. Work
units are numbered in one order on every rank and unit ``u`` belongs to rank ``u mod N``, so each
unit is computed exactly as a single process computes it (same batch, same padding) and the
merged results are those of one process. Ranks exchange finished results with
``all_gather_object``; each rank checkpoints its own units, so a killed rank loses only the unit
it was computing.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from dps_lens.errors import DpsLensError

T = TypeVar("T")

TIMEOUT_MINUTES = 60  # a rank waits this long for the others at a merge before failing


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world_size`` (0 of 1 when alone)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes results and shows progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def owns(self, unit: int) -> bool:
        """Whether work unit number ``unit`` (in the order every rank enumerates) is this rank's."""
        return unit % self.world_size == self.rank

    def all_gather(self, value: T) -> list[T]:
        """``value`` of every rank, in rank order (``[value]`` when alone)."""
        if not self.is_distributed:
            return [value]
        gathered: list[T | None] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return [v for v in gathered if v is not None]

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. until rank 0 has written a file others read)."""
        if self.is_distributed:
            dist.barrier()

    def min(self, value: int) -> int:
        """The smallest ``value`` over the ranks (e.g. a batch size every rank can afford)."""
        return min(self.all_gather(value))

    def merge(self, value: T, combine: Callable[[list[T]], T]) -> T:
        """``combine`` of every rank's ``value``: the same result on every rank."""
        return combine(self.all_gather(value)) if self.is_distributed else value

    @contextlib.contextmanager
    def working_on(self, unit: Callable[[], str]) -> Iterator[None]:
        """Under torchrun, an error in the block becomes one line naming this rank and the work
        unit (``unit()`` describes it); alone, errors pass unchanged."""
        try:
            yield
        except Exception as exc:
            if not self.is_distributed:
                raise
            raise DpsLensError(
                f"rank {self.rank} of {self.world_size} failed on {unit()}: {exc}"
            ) from exc

    def rank_path(self, path: Path) -> Path:
        """This rank's own file or folder beside ``path`` (``path`` itself when alone)."""
        if not self.is_distributed:
            return path
        return path.with_name(f"{path.stem}.rank{self.rank}-of-{self.world_size}{path.suffix}")


def rank_siblings(path: Path) -> list[Path]:
    """``path`` and every rank's file of it, from any world size, that exist."""
    found = sorted(path.parent.glob(f"{path.stem}.rank*-of-*{path.suffix}"))
    return [p for p in [path, *found] if p.exists()]


def current() -> Ranks:
    """The process group this process belongs to (rank 0 of 1 outside ``torchrun``)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: str) -> str:
    """The device of this rank: ``cuda`` and ``auto`` on a GPU machine become ``cuda:LOCAL_RANK``
    (one GPU per rank); anything else stays as given."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def init_from_env(device: str) -> Ranks:
    """Join the group torchrun set up (gloo on CPU, nccl on CUDA); rank 0 of 1 when not launched
    by torchrun. A process group already joined is kept."""
    if not launched_by_torchrun() or dist.is_initialized():
        return current()
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise DpsLensError(
                f"WORLD_SIZE is set but {name} is not: launch with torchrun "
                "(torchrun --nproc_per_node N -m dps_lens ...), or unset WORLD_SIZE"
            )
    cuda = rank_device(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES),
    )
    return current()


def shutdown() -> None:
    """Leave the process group (after the last merge), if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
