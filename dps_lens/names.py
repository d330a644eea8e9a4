"""Names people recognise: a model's own name and a dtype's short form, for reports, tables and
figure legends (``SmolLM2-135M-Instruct · bf16``, not a folder name)."""

from __future__ import annotations

import json
import re
from pathlib import Path

_QUANT_TAG = re.compile(r"[.-](?:I?Q\d[\w]*|F16|F32|BF16)$", re.IGNORECASE)
_HUB_FOLDER = re.compile(r"^[^_]+__(?P<name>.+?)(?:-GGUF)?$", re.IGNORECASE)
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def model_display_name(model_id: str) -> str:
    """The model's own name from its id: a GGUF checkpoint's file name without its quantization
    tag (``SmolLM2-135M-Instruct.Q4_1.gguf`` → ``SmolLM2-135M-Instruct``), an HF folder's
    ``_name_or_path`` (its last part), a hub id's last part; else the id's last part, a hub
    download folder's ``org__`` prefix and ``-GGUF`` suffix dropped."""
    path = Path(model_id).expanduser()
    if path.exists():
        ggufs = [path] if path.suffix == ".gguf" else sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _QUANT_TAG.sub("", ggufs[0].stem) or ggufs[0].stem
        config = path / "config.json"
        if config.is_file():
            try:
                named = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                named = None
            if isinstance(named, str) and named.strip() and not Path(named).is_absolute():
                return Path(named).name
    return name_from_id(model_id)


def name_from_id(model_id: str) -> str:
    """A model's name from its id alone (no files read): the last part, a hub download folder's
    ``org__`` prefix and ``-GGUF`` suffix dropped."""
    last = Path(model_id.rstrip("/")).name or model_id
    found = _HUB_FOLDER.match(last)
    return found["name"] if found else _QUANT_TAG.sub("", last.removesuffix(".gguf"))


def dtype_label(dtype: str) -> str:
    """``bf16``, ``fp16`` or ``fp32`` for a torch dtype's name (others as they are)."""
    name = str(dtype).removeprefix("torch.")
    return _DTYPES.get(name, name)


def run_name(model_name: str, dtype: str) -> str:
    """``SmolLM2-135M-Instruct · bf16``: a model and its weights' dtype."""
    return f"{model_name} · {dtype_label(dtype)}"
