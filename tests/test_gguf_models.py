"""GGUF bases: the dense folder they load from, and their header's layer count."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import gguf
import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.modules import Transformer
from transformers import GgufConfig

from syncse.encoders import _PLAIN_TEXT, assemble, load_encoder, parse_spec
from syncse.gguf_models import dense_folder, gguf_layer_count

SENTENCES = ["A man is playing a guitar.", "Two dogs run through a field of snow."]


def test_gguf_is_dequantized_once_into_a_folder_that_encodes_identically(tmp_path, monkeypatch) -> None:
    """The dense folder a GGUF spec loads from gives the very embeddings of transformers' own GGUF
    loading, is built once (a second load does not convert), and is named by the layer count."""
    monkeypatch.setenv("SYNCSE_CACHE", str(tmp_path))
    base = parse_spec("gguf:smollm2-135m:1")
    direct = Transformer(base.path, max_seq_length=32, model_kwargs={
        "gguf_file": base.gguf_file, "dtype": torch.float32,
        "quantization_config": GgufConfig(gguf_file=base.gguf_file, dequantize=True)},
        processor_kwargs={"gguf_file": base.gguf_file}, config_kwargs={"gguf_file": base.gguf_file, "num_hidden_layers": 1},
        **_PLAIN_TEXT)
    texts = [*SENTENCES, "short", "a much longer sentence " * 8]  # padding inside the batch
    expected = assemble(direct, "mean").encode(texts)
    folder = dense_folder(Path(base.path) / str(base.gguf_file), 1)
    assert folder.parent == tmp_path / "models" / "gguf-dense" and "-1L-" in folder.name
    assert np.array_equal(load_encoder("gguf:smollm2-135m:1", max_seq_length=32).encode(texts), expected)
    with patch("syncse.gguf_models.AutoModel.from_pretrained", side_effect=AssertionError("converted twice")):
        assert dense_folder(Path(base.path) / str(base.gguf_file), 1) == folder
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_gguf_layer_count_reads_the_header_as_the_gguf_library_does(tmp_path) -> None:
    base = parse_spec("gguf:smollm2-135m")
    file = Path(base.path) / str(base.gguf_file)
    reader = gguf.GGUFReader(file)
    assert gguf_layer_count(file) == int(reader.fields["llama.block_count"].contents()) == 30
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + bytes(20))
    with pytest.raises(ValueError, match="not a GGUF v2"):
        gguf_layer_count(tmp_path / "bad.gguf")
