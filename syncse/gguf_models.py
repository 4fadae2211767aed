"""GGUF decoder files as training bases: their header, and the dense folder they are loaded from.

transformers opens a GGUF by parsing all of its metadata (the tokenizer's 49k-entry arrays
included) on each of five reads, config, tokenizer and weights, about 25 s a load on 2 cores. A
GGUF base is therefore dequantized once into a plain float32 HF folder, which then loads in about a
second (`dense_folder`), and its layer count is read from the header alone (`gguf_layer_count`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModel, AutoTokenizer, GgufConfig

logger = logging.getLogger(__name__)

# GGUF metadata value types (the GGUF spec): struct formats of the scalars; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def dense_folder(file: Path, num_layers: int | None = None) -> Path:
    """`file` dequantized once (its first `num_layers` blocks, or all) into a float32 HF folder
    (weights, config, tokenizer) under `$SYNCSE_CACHE/models/gguf-dense/`, then reused.

    Keyed by the file's sha256, the layer count and the transformers version (which dequantizes and
    converts the tokenizer): another file, truncation or converter gets its own folder. Written in
    a staging folder and renamed: complete or absent, never half-written.
    """
    with file.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    layers = num_layers or "all"
    cache = Path(os.environ.get("SYNCSE_CACHE", ".cache")) / "models" / "gguf-dense"
    folder = cache / f"{file.stem}-{layers}L-{digest}-transformers-{transformers.__version__}"
    if (folder / "config.json").is_file():
        return folder
    logger.info("dequantizing %s (layers: %s) into %s, once", file, layers, folder)
    truncated = {} if num_layers is None else {"num_hidden_layers": num_layers}
    model = AutoModel.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32,
                                      quantization_config=GgufConfig(gguf_file=file.name, dequantize=True), **truncated)
    tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{folder.name}."))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, folder)
    except OSError:
        if not (folder / "config.json").is_file():  # not a concurrent conversion that finished first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def gguf_layer_count(file: Path) -> int:
    """Number of transformer blocks in a GGUF file (v2+), read from its metadata header as far as
    `<architecture>.block_count`: the tokenizer's arrays after it are never parsed."""
    with Path(file).open("rb") as f:
        magic, version, _tensors, n_keys = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF" or version < 2:
            raise ValueError(f"{file}: not a GGUF v2+ file (magic {magic!r}, version {version})")
        architecture = None
        for _ in range(n_keys):
            key = _string(f)
            value = _value(f, struct.unpack("<I", f.read(4))[0])
            if key == "general.architecture":
                architecture = value
            elif architecture is not None and key == f"{architecture}.block_count":
                return int(value)
    raise ValueError(f"{file}: no block_count in the GGUF metadata")


def _string(f: Any) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode("utf-8", errors="replace")


def _value(f: Any, kind: int) -> Any:
    """One metadata value; an array is skipped (None): no key read here holds one."""
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
        else:
            for _ in range(count):
                _value(f, item)
        return None
    if kind not in _SCALARS:
        raise ValueError(f"unknown GGUF metadata type {kind}")
    fmt = _SCALARS[kind]
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
