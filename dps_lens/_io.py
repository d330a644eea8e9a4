"""Atomic file writes: a reader never sees a half-written file, even after kill -9."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` (its return value is ignored) then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_report(directory: str | Path, name: str, obj: Any, markdown: str) -> None:
    """``name.json`` and its Markdown rendering ``name.md`` in ``directory`` (each atomic): the
    pair the docs tables are included from and re-rendered against."""
    atomic_write_json(Path(directory) / f"{name}.json", obj)
    atomic_write_text(Path(directory) / f"{name}.md", markdown)


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Write ``model``'s parameters and buffers to a safetensors file, atomically, whose bytes
    depend on the weights alone.

    A tensor that is the same memory as one earlier in the state dict (tied embeddings) is left out,
    as ``save_pretrained`` leaves it out; the metadata is ``{"format": "pt"}`` only, because
    safetensors writes several metadata keys in a random order.
    """
    from safetensors.torch import save_file

    kept: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    for name, tensor in model.state_dict().items():
        same_memory = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride())
        if same_memory not in seen:
            seen.add(same_memory)
            kept[name] = tensor.detach().contiguous()
    return atomic_write(path, lambda tmp: save_file(kept, tmp, metadata={"format": "pt"}))
