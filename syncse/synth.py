"""SynCSE data synthesis: prompt pools, the partial and scratch pipelines, filters, drop report.

- **partial**: each unlabeled sentence (NLI premises by default) gets one positive and one hard
  negative from two chat calls; each call samples one of the paper's four instructions and
  `n_exemplars` exemplars from that instruction's pool, as a multi-turn few-shot chat.
- **scratch**: one-shot calls ask for `sentences_per_call` sentences of a sampled genre about
  `n_topics` sampled topics (caption genres use the caption instructions); the answers are parsed
  into sentences, filtered, and annotated exactly like partial.

Every drop is counted by reason (`DROP_REASONS`). The paper's prompts are sent as they are;
`aids` (embedded backend only) adds a system prompt, JSON-schema output and resampling of
rejected outputs, which a 0.5B model needs to produce anything usable.

References:
    Zhang, He & Lan (2023), Contrastive Learning of Sentence Embeddings from Scratch,
    Tables 1, 10, 12, 15, 16 and Appendix B.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import yaml

from syncse.config import PARTIAL_SOURCES, LLMConfig, SamplingConfig, SynthConfig
from syncse.data import Triplet, nli_premises, wiki_sentences
from syncse.llm import BudgetExceeded, ChatClient, ChatRequest, ChatResult

logger = logging.getLogger(__name__)

SIDES = ("positive", "negative")
PIPELINES = ("partial", "scratch")
ANCHOR_REASONS = ("anchor_too_long", "anchor_too_short", "duplicate_anchor", "near_duplicate_anchor")
OUTPUT_REASONS = ("empty", "refusal", "explanation", "too_long", "copies_anchor", "request_failed", "budget")
DROP_REASONS = (
    *ANCHOR_REASONS,
    *(f"{side}_{reason}" for side in SIDES for reason in OUTPUT_REASONS),
    "positive_equals_negative",
    "shortfall",  # scratch: fewer usable generated sentences than requested
)

AID_SYSTEM = (
    "You are a careful writing assistant that edits single sentences. Follow the instruction "
    "below. Never copy the input unchanged, never explain, answer with one sentence only.\n\n"
)
AID_SCRATCH_SYSTEM = "You are a creative writer. Answer with the list of sentences only, no commentary.\n\n"
SENTENCE_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "sentence",
        "schema": {"type": "object", "properties": {"sentence": {"type": "string"}}, "required": ["sentence"]},
    },
}
SENTENCES_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "sentences",
        "schema": {
            "type": "object",
            "properties": {"sentences": {"type": "array", "items": {"type": "string"}}},
            "required": ["sentences"],
        },
    },
}


# --------------------------------------------------------------------------- pools


@dataclass(frozen=True)
class Exemplar:
    """One few-shot pair; `id` is `<instruction id>-<index>` (e.g. `pos2-07`)."""

    id: str
    input: str
    output: str


@dataclass(frozen=True)
class Instruction:
    """An annotation instruction (the paper's wording) with its own exemplar pool."""

    id: str
    text: str
    exemplars: tuple[Exemplar, ...]


@dataclass(frozen=True)
class Genre:
    """A scratch genre: the paper's description, whether it is caption-style, our examples."""

    id: str
    description: str
    caption: bool
    examples: tuple[str, ...]


@dataclass(frozen=True)
class PromptPools:
    """Everything the prompts are built from, loaded from `syncse/pools/*.yaml`."""

    positive: tuple[Instruction, ...]
    negative: tuple[Instruction, ...]
    scratch: dict[str, str]  # id -> template with {number}, {genre}, {topics}
    caption: dict[str, str]
    genres: tuple[Genre, ...]
    topics: tuple[str, ...]

    def instructions(self, side: str) -> tuple[Instruction, ...]:
        """The instructions of `side` (`positive` or `negative`)."""
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
        return self.positive if side == "positive" else self.negative


def load_pools() -> PromptPools:
    """Read the packaged prompt pools."""
    folder = resources.files("syncse") / "pools"
    annotation = yaml.safe_load((folder / "annotation.yaml").read_text(encoding="utf-8"))
    scratch = yaml.safe_load((folder / "scratch.yaml").read_text(encoding="utf-8"))
    inputs = annotation["inputs"]

    def instructions(kind: str) -> tuple[Instruction, ...]:
        return tuple(
            Instruction(iid, text, tuple(
                Exemplar(f"{iid}-{i:02d}", inputs[i], out) for i, out in enumerate(annotation["outputs"][iid])
            ))
            for iid, text in annotation["instructions"][kind].items()
        )

    genres = tuple(
        Genre(gid, g["description"], bool(g.get("caption", False)), tuple(g["examples"]))
        for gid, g in scratch["genres"].items()
    )
    return PromptPools(
        instructions("positive"), instructions("negative"), dict(scratch["instructions"]),
        dict(scratch["caption_instructions"]), genres, tuple(scratch["topics"]),
    )


# --------------------------------------------------------------------------- text


_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060\ufeff]")
_FENCE = re.compile(r"^```[\w-]*\s*|\s*```$")
_BULLET = re.compile(r"^\s*(?:\(?\d{1,3}[.):]|[-*\u2022\u2013]|#+)\s+")
_LABEL = re.compile(
    r"^(?:\*\*)?(?:paraphrase[d]?(?: sentence)?|rewritten(?: sentence)?|revised(?: sentence)?|output|answer|"
    r"result|sentence|new sentence|modified(?: sentence)?|positive|(?:hard )?negative)(?:\*\*)?\s*:\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"^(?:sure|certainly|of course|okay|ok|here (?:is|are)|here's)\b[^:\n]*[:\n]\s*", re.IGNORECASE)
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb`*"
_INNER_QUOTE = re.compile("[\"\u201c\u201d]")  # '"Stop," he said, "now."' is not wrapped in quotes
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]?\s+(?=[\"'\u201c\u2018(]?[A-Z0-9])")
_REFUSAL = re.compile(  # a model declining, not any sentence that says "I can't"
    r"\b(?:as an ai|as a language model|(?:i'?m|i am) sorry,? but|i apologi[sz]e,? but|"
    r"(?:i|we) (?:can ?not|can't|cannot|am unable to|'m unable to|won't|will not) (?:generate|create|provide|help|"
    r"assist|comply|fulfil+|produce|rewrite|paraphrase|do that|answer))",
    re.IGNORECASE,
)
_EXPLANATION = re.compile(
    r"^(?:here (?:is|are)|here's|sure\b|certainly\b|note\b|explanation\b|this (?:sentence|input|paraphrase|rewrite)\b|"
    r"the (?:input|original|paraphrased|rewritten|revised|modified|new) (?:sentence|text|version)\b)|"
    r"\b(?:input sentence|original sentence|paraphrased version|rewritten version)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOP = frozenset("a an the is are was were be been of to in on at and or".split())


def normalize(text: str) -> str:
    """NFC, no zero-width characters, single spaces."""
    return " ".join(_ZERO_WIDTH.sub("", unicodedata.normalize("NFC", text)).split())


_PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "``": '"', "''": '"'}


def detokenize(text: str) -> str:
    """Undo PTB-style tokenization of NLI/SentEval text (`a dog , -LRB- big -RRB- .` ->
    `a dog, (big).`): prompts read like the untokenized corpus the paper annotated."""
    for token, char in _PTB.items():
        text = text.replace(token, char)
    text = re.sub(r" ([.,;:!?%)\]}])", r"\1", text)
    text = re.sub(r"([(\[{$]) ", r"\1", text)
    text = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text, flags=re.IGNORECASE)
    return normalize(text)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, inner apostrophes)."""
    return [w.lower() for w in _WORD.findall(text)]


def stems(text: str) -> set[str]:
    """Crudely stemmed content words (`sleeps`, `sleeping` -> `sleep`), for copy detection."""
    out = set()
    for word in set(words(text)) - _STOP:
        suffix = next((x for x in ("ing", "ed", "es", "s") if word.endswith(x) and len(word) - len(x) >= 3), "")
        out.add(word[: len(word) - len(suffix)])
    return out


def loose_key(text: str) -> str:
    """Order-, inflection- and punctuation-insensitive key: equal keys are near-duplicates."""
    return " ".join(sorted(stems(text)))


def jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the two sentences' stemmed content words."""
    sa, sb = stems(a), stems(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def split_sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation followed by a capital or digit."""
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def strip_wrapping(text: str) -> str:
    """Remove fences, bullets/numbering, labels and wrapping quotes or bold marks
    (`"A dog runs."`, `**A dog runs.**`, `"A dog runs".` all give `A dog runs.`)."""
    text = _LABEL.sub("", _BULLET.sub("", _FENCE.sub("", text.strip()).strip())).strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES and not _INNER_QUOTE.search(text[1:-1]):
        text = text[1:-1].strip()
    if len(text) >= 3 and text[0] in _QUOTES and text[-2] in _QUOTES and text[-1] in ".!?":
        text = text[1:-2].strip() + text[-1]
    while text[-1:] in ("}", "]") and text.count(text[-1]) > text.count("{" if text[-1] == "}" else "["):
        text = text[:-1].rstrip()  # a stray closer left by half-written JSON: `... measures. }`
    return text


def _json_field(text: str, key: str) -> Any:
    """`key` of the first JSON object in `text`, or None."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    return value.get(key) if isinstance(value, dict) else None


def clean_annotation(text: str | None, anchor: str) -> str:
    """The usable sentence in a positive/negative answer ('' if none).

    Accepts JSON (`{"sentence": ...}`), fences, a "Here is...:" preamble, labels, quotes;
    keeps as many leading sentences as the anchor has.
    """
    if not text:
        return ""
    text = _FENCE.sub("", text.strip())
    value = _json_field(text, "sentence")
    if isinstance(value, str):
        text = value
    for line in text.split("\n"):
        line = strip_wrapping(_PREAMBLE.sub("", normalize(line)))
        if line and not line.endswith(":"):
            keep = max(1, len(split_sentences(anchor)))
            return " ".join(split_sentences(line)[:keep])
    return ""


def parse_sentences(text: str | None) -> list[str]:
    """Non-empty items of a scratch answer: a JSON `{"sentences": [...]}`, or one per line
    (numbering, bullets, quotes and fences removed). Headers and chatter are kept here and
    rejected, with a reason, by `sentence_reject_reason`."""
    if not text:
        return []
    value = _json_field(text, "sentences")
    items = [str(v) for v in value] if isinstance(value, list) else _FENCE.sub("", text.strip()).split("\n")
    return [s for s in (strip_wrapping(normalize(item)) for item in items) if s]


def sentence_reject_reason(sentence: str) -> str | None:
    """Why a parsed scratch item is not a sentence: `header` (ends with ':'), `refusal`,
    `explanation`; else None."""
    if sentence.endswith(":"):
        return "header"
    if _REFUSAL.search(sentence):
        return "refusal"
    if _EXPLANATION.match(sentence):
        return "explanation"
    return None


# --------------------------------------------------------------------------- filters


def output_reject_reason(output: str, anchor: str, refusal: str | None, cfg: SynthConfig) -> str | None:
    """Why a cleaned positive/negative is unusable (one of `OUTPUT_REASONS`), or None."""
    if refusal or (_REFUSAL.search(output) and not _REFUSAL.search(anchor)):
        return "refusal"
    if not output or not words(output):
        return "empty"
    if _EXPLANATION.search(output) and not _EXPLANATION.search(anchor):
        return "explanation"
    if len(output.split()) > cfg.max_words:
        return "too_long"
    if is_copy(output, anchor, cfg.copy_jaccard):
        return "copies_anchor"
    return None


def is_copy(a: str, b: str, threshold: float) -> bool:
    """One sentence is the other with at most a few words deleted: its stemmed content words are
    a subset of the other's, with Jaccard at or above `threshold`. A swapped word (a hard
    negative's small edit) is never a copy; inflection and word order do not matter."""
    sa, sb = stems(a), stems(b)
    return (sa <= sb or sb <= sa) and jaccard(a, b) >= threshold


class AnchorFilter:
    """Stateful anchor filter: length bounds, exact and near duplicates (loose key)."""

    def __init__(self, max_words: int, min_words: int = 1) -> None:
        self.max_words = max_words
        self.min_words = min_words
        self._exact: set[str] = set()
        self._loose: set[str] = set()

    def reject_reason(self, anchor: str) -> str | None:
        """Why `anchor` is dropped (one of `ANCHOR_REASONS`), else None (and remember it)."""
        n = len(anchor.split())
        if n > self.max_words:
            return "anchor_too_long"
        if n < self.min_words or not words(anchor):
            return "anchor_too_short"
        exact, loose = anchor.lower(), loose_key(anchor)
        if exact in self._exact:
            return "duplicate_anchor"
        if loose in self._loose:
            return "near_duplicate_anchor"
        self._exact.add(exact)
        self._loose.add(loose)
        return None


# --------------------------------------------------------------------------- prompts


def aids_enabled(llm: LLMConfig) -> bool:
    """Small-model aids are for the embedded backend only; the openai backend sends the paper's prompts."""
    return llm.backend == "embedded" and llm.aids


def _sampling(cfg: SamplingConfig, seed: int, attempt: int) -> dict[str, Any]:
    """Body fields for one call; a resample (attempt > 0) is a little hotter and reseeded."""
    params: dict[str, Any] = {
        "temperature": round(cfg.temperature + 0.2 * attempt, 3),
        "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens,
        "seed": seed + attempt,
    }
    if cfg.presence_penalty:
        params["presence_penalty"] = cfg.presence_penalty
    if cfg.frequency_penalty:
        params["frequency_penalty"] = cfg.frequency_penalty
    return params


def request_seed(*parts: object) -> int:
    """A per-request seed derived from the run seed and the request's identity (order-free)."""
    return random.Random(":".join(map(str, parts))).randrange(2**31)


def annotation_request(
    anchor: str, side: str, pools: PromptPools, cfg: SynthConfig, seed: int, aids: bool, block: int, attempt: int = 0
) -> tuple[ChatRequest, dict[str, Any]]:
    """The chat call for one side of one anchor, and its provenance.

    Messages: the sampled instruction as the system message, `n_exemplars` exemplars as
    user/assistant turns, then the anchor. With `aids`: a guiding system preamble and JSON
    answers. The instruction and exemplars depend only on (seed, side, block): anchors of one
    block (`SynthConfig.exemplar_block` consecutive anchors) share the few-shot prefix, and a
    resample keeps it and changes only the sampling seed.
    """
    rng = random.Random(f"{seed}:{side}:{block}")
    instruction = rng.choice(pools.instructions(side))
    shots = rng.sample(instruction.exemplars, min(cfg.n_exemplars, len(instruction.exemplars)))
    messages = [{"role": "system", "content": (AID_SYSTEM if aids else "") + instruction.text}]
    for shot in shots:
        answer = json.dumps({"sentence": shot.output}) if aids else shot.output
        messages += [{"role": "user", "content": shot.input}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": anchor})
    sampling_cfg = cfg.positive if side == "positive" else cfg.negative
    params = _sampling(sampling_cfg, request_seed(seed, side, anchor), attempt)
    if aids:
        params["response_format"] = SENTENCE_SCHEMA
    request = ChatRequest(tuple(messages), params)
    meta = {
        "instruction": instruction.id,
        "exemplars": [s.id for s in shots],
        "sampling": {k: v for k, v in params.items() if k != "response_format"},
        "prompt_hash": request.prompt_hash(),
        "attempt": attempt,
    }
    return request, meta


def scratch_request(
    call: int, pools: PromptPools, cfg: SynthConfig, seed: int, aids: bool
) -> tuple[ChatRequest, dict[str, Any]]:
    """Scratch call number `call`: genre, instruction and topics sampled; one-shot with our
    example sentences of the genre (the shot names its own topics)."""
    rng = random.Random(f"{seed}:scratch:{call}")
    genre = rng.choice(pools.genres)
    templates = pools.caption if genre.caption else pools.scratch
    instruction_id = rng.choice(sorted(templates))
    shot = rng.sample(genre.examples, min(cfg.shot_sentences, len(genre.examples)))
    shot_topics, topics = (rng.sample(pools.topics, cfg.n_topics) for _ in range(2))

    def ask(number: int, chosen: list[str]) -> str:
        return templates[instruction_id].format(number=number, genre=genre.description, topics=", ".join(chosen))

    answer = json.dumps({"sentences": shot}) if aids else "\n".join(f"{i}. {s}" for i, s in enumerate(shot, 1))
    messages = [
        {"role": "user", "content": ask(len(shot), shot_topics)},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": ask(cfg.sentences_per_call, topics)},
    ]
    if aids:
        messages.insert(0, {"role": "system", "content": AID_SCRATCH_SYSTEM.strip()})
    params = _sampling(cfg.scratch, request_seed(seed, "scratch", call), 0)
    if aids:
        params["response_format"] = SENTENCES_SCHEMA
    request = ChatRequest(tuple(messages), params)
    meta = {
        "genre": genre.id,
        "topics": topics,
        "instruction": instruction_id,
        "sampling": {k: v for k, v in params.items() if k != "response_format"},
        "prompt_hash": request.prompt_hash(),
    }
    return request, meta


# --------------------------------------------------------------------------- pipelines


@dataclass
class SynthResult:
    """Triplets kept, drops by reason, rejected samples for the report, and metrics."""

    triplets: list[Triplet]
    drops: Counter[str]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def drop_report(self) -> list[dict[str, Any]]:
        """Rows (reason, count, share of requested) for every reason with a drop, largest first."""
        requested = max(1, int(self.metrics.get("requested", 0)))
        return [
            {"reason": reason, "count": count, "share": round(count / requested, 3)}
            for reason, count in self.drops.most_common()
            if count
        ]


@dataclass
class SideState:
    """State of one side of one anchor across resamples."""

    output: str = ""
    reason: str | None = "empty"
    meta: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None


def _judge(result: ChatResult, anchor: str, cfg: SynthConfig) -> tuple[str, str | None]:
    """Cleaned output and its reject reason (None if usable)."""
    if result.error == "budget":
        return "", "budget"
    if result.error:
        return "", "request_failed"
    output = clean_annotation(result.content, anchor)
    return output, output_reject_reason(output, anchor, result.refusal, cfg)


def annotate(
    anchors: Sequence[str],
    client: ChatClient,
    cfg: SynthConfig,
    pools: PromptPools,
    seed: int,
    aids: bool,
    reject_retries: int,
    label: str,
) -> tuple[list[dict[str, SideState]], Counter[str]]:
    """Positive and negative for each anchor; with aids, rejected outputs are resampled up to
    `reject_retries` times (positive equal to negative counts as a negative reject).

    Returns per-anchor side states and the count of resamples by first reason.
    """
    states = [{side: SideState() for side in SIDES} for _ in anchors]
    resampled: Counter[str] = Counter()
    todo = _block_order([(i, side) for i in range(len(anchors)) for side in SIDES], cfg.exemplar_block)
    for attempt in range(1 + (reject_retries if aids else 0)):
        if not todo:
            break
        built = [
            annotation_request(anchors[i], side, pools, cfg, seed, aids, i // cfg.exemplar_block, attempt)
            for i, side in todo
        ]
        results = client.complete([r for r, _ in built], desc=f"{label} annotate (try {attempt + 1})")
        for (i, side), (_, meta), result in zip(todo, built, results):
            output, reason = _judge(result, anchors[i], cfg)
            states[i][side] = SideState(output, reason, meta, result.content)
        for state in states:
            pos, neg = state["positive"], state["negative"]
            if pos.reason is None and neg.reason is None and is_copy(pos.output, neg.output, cfg.copy_jaccard):
                neg.reason = "equals_positive"
        final = (None, "budget", "request_failed")
        todo = _block_order([(i, side) for i, s in enumerate(states) for side in SIDES if s[side].reason not in final],
                            cfg.exemplar_block)
        if attempt < reject_retries and aids:
            resampled.update(f"{side}_{states[i][side].reason}" for i, side in todo)
    return states, resampled


def _block_order(todo: list[tuple[int, str]], block: int) -> list[tuple[int, str]]:
    """Send calls block by block, and within a block side by side: calls sharing a few-shot
    prefix run back to back (KV reuse), and a budget stop leaves whole triplets behind
    (at most the block in progress is half done)."""
    return sorted(todo, key=lambda item: (item[0] // block, SIDES.index(item[1]), item[0]))


def _assemble(
    anchors: Sequence[str], states: list[dict[str, SideState]], source: str, extra: Sequence[dict[str, Any]], model: str
) -> tuple[list[Triplet], Counter[str], list[dict[str, Any]]]:
    """Triplets from side states; drops counted (first failing side wins) and sampled."""
    triplets, drops, rejected = [], Counter[str](), []
    for anchor, state, more in zip(anchors, states, extra):
        pos, neg = state["positive"], state["negative"]
        bad = next((side for side in SIDES if state[side].reason is not None), None)
        if bad is not None:
            reason = state[bad].reason
            key = "positive_equals_negative" if reason == "equals_positive" else f"{bad}_{reason}"
            drops[key] += 1
            rejected.append({"anchor": anchor, "side": bad, "output": state[bad].raw, "reason": key})
            continue
        meta = {"model": model, **more, "positive": pos.meta, "negative": neg.meta}
        triplets.append(Triplet(anchor, pos.output, neg.output, source, meta))
    return triplets, drops, rejected


def select_anchors(candidates: Sequence[str], n: int, filt: AnchorFilter) -> tuple[list[str], list[int], Counter[str]]:
    """The first `n` candidates, minus those the anchor filter drops (counted by reason)."""
    kept, index, drops = [], [], Counter[str]()
    for i, candidate in enumerate(candidates[:n]):
        anchor = normalize(candidate)
        reason = filt.reject_reason(anchor)
        if reason:
            drops[reason] += 1
        else:
            kept.append(anchor)
            index.append(i)
    return kept, index, drops


def check_config(cfg: SynthConfig, pools: PromptPools) -> None:
    """Reject settings the pipelines (or the pools' sizes) cannot honour, naming the key and the allowed range."""
    bounds = {
        "n_exemplars": (cfg.n_exemplars, 0, min(len(i.exemplars) for i in pools.positive + pools.negative)),
        "exemplar_block": (cfg.exemplar_block, 1, None),
        "n_topics": (cfg.n_topics, 1, len(pools.topics)),
        "sentences_per_call": (cfg.sentences_per_call, 1, None),
        "shot_sentences": (cfg.shot_sentences, 1, min(len(g.examples) for g in pools.genres)),
        "max_words": (cfg.max_words, 1, None),
    }
    for key, (value, low, high) in bounds.items():
        if value < low or (high is not None and value > high):
            raise ValueError(f"synth.{key}: {value} outside the allowed range [{low}, {high or 'inf'}]")
    if not 0 < cfg.copy_jaccard <= 1:
        raise ValueError(f"synth.copy_jaccard: {cfg.copy_jaccard} outside the allowed range (0, 1]")
    if cfg.overgenerate < 1:
        raise ValueError(f"synth.overgenerate: {cfg.overgenerate} must be >= 1")


def synthesize(
    name: str, client: ChatClient, cfg: SynthConfig, llm: LLMConfig, seed: int, data_root: str
) -> SynthResult:
    """Run pipeline `name` (`partial` or `scratch`) end to end and return triplets and metrics."""
    if name not in PIPELINES:
        raise ValueError(f"unknown synthesis pipeline {name!r}; expected one of {PIPELINES}")
    started = time.perf_counter()
    pools = load_pools()
    check_config(cfg, pools)
    aids = aids_enabled(llm)
    if name == "partial":
        result = _partial(client, cfg, pools, seed, data_root, aids, llm.reject_retries)
    else:
        result = _scratch(client, cfg, pools, seed, aids, llm.reject_retries)
    missing = budget_missing(result)
    if missing:  # never train on a silently truncated set: fail the stage, keep what was paid for
        raise BudgetExceeded(client.budget.stop_message(f"synthesize {name}", missing, result.metrics["requested"]))
    result.metrics.update(run_metrics(result, client, time.perf_counter() - started))
    logger.info("%s: kept %d of %d requested; drops %s", name, len(result.triplets),
                result.metrics["requested"], dict(result.drops))
    return result


def _partial(
    client: ChatClient, cfg: SynthConfig, pools: PromptPools, seed: int, data_root: str, aids: bool, retries: int
) -> SynthResult:
    if cfg.partial_source not in PARTIAL_SOURCES:
        raise ValueError(f"synth.partial_source: unknown source {cfg.partial_source!r}; expected one of {PARTIAL_SOURCES}")
    pool = [detokenize(s) for s in (nli_premises(data_root) if cfg.partial_source == "nli" else wiki_sentences(data_root))]
    random.Random(f"{seed}:partial").shuffle(pool)
    anchors, _, drops = select_anchors(pool, cfg.n_partial, AnchorFilter(cfg.max_words))
    states, resampled = annotate(anchors, client, cfg, pools, seed, aids, retries, "partial")
    triplets, out_drops, rejected = _assemble(anchors, states, "partial", [{}] * len(anchors), client.model)
    result = SynthResult(triplets, drops + out_drops, rejected)
    result.metrics = {"requested": cfg.n_partial, **{f"resampled_{k}": v for k, v in resampled.items()}}
    return result


def _scratch(
    client: ChatClient, cfg: SynthConfig, pools: PromptPools, seed: int, aids: bool, retries: int
) -> SynthResult:
    calls = math.ceil(cfg.n_scratch * cfg.overgenerate / cfg.sentences_per_call)
    built = [scratch_request(call, pools, cfg, seed, aids) for call in range(calls)]
    results = client.complete([r for r, _ in built], desc="scratch generate")
    candidates, provenance, sentence_drops = [], [], Counter[str]()
    parsed = [(meta, sentence) for (_, meta), result in zip(built, results) for sentence in parse_sentences(result.content)]
    shots = {loose_key(example) for genre in pools.genres for example in genre.examples}
    for meta, sentence in parsed:
        reason = "copies_shot" if loose_key(sentence) in shots else sentence_reject_reason(sentence)
        if reason:
            sentence_drops[reason] += 1
            continue
        candidates.append(sentence)
        provenance.append({"scratch": meta})
    filt = AnchorFilter(cfg.max_words, min_words=2)
    anchors, index, anchor_drops = select_anchors(candidates, len(candidates), filt)
    sentence_drops += anchor_drops
    anchors, index = anchors[: cfg.n_scratch], index[: cfg.n_scratch]
    states, resampled = annotate(anchors, client, cfg, pools, seed, aids, retries, "scratch")
    extra = [provenance[i] for i in index]
    triplets, drops, rejected = _assemble(anchors, states, "scratch", extra, client.model)
    drops["shortfall"] = cfg.n_scratch - len(anchors)
    result = SynthResult(triplets, drops, rejected)
    result.metrics = {
        "requested": cfg.n_scratch,
        "generation_calls": calls,
        "generation_failed": sum(1 for r in results if r.error),
        "generation_budget": sum(1 for r in results if r.error == "budget"),
        "generated_sentences": len(parsed),
        **{f"sentences_dropped_{k}": v for k, v in sentence_drops.items()},
        **{f"resampled_{k}": v for k, v in resampled.items()},
    }
    return result


def budget_missing(result: SynthResult) -> int:
    """Rows lost because the budget cap stopped requests (scratch: also the sentences never generated)."""
    missing = result.drops.get("positive_budget", 0) + result.drops.get("negative_budget", 0)
    if result.metrics.get("generation_budget"):
        missing += result.drops.get("shortfall", 0)
    return missing


def run_metrics(result: SynthResult, client: ChatClient, wall_s: float) -> dict[str, float]:
    """The flat metrics: kept, dropped by every reason, tokens, cost, throughput."""
    stats, budget = client.stats, client.budget
    tokens = stats.prompt_tokens + stats.completion_tokens
    kept = len(result.triplets)
    return {
        "kept": kept,
        "yield": round(kept / max(1, int(result.metrics["requested"])), 4),
        **{f"dropped_{reason}": result.drops.get(reason, 0) for reason in DROP_REASONS},
        "requests": stats.requests,
        "cache_hits": stats.cache_hits,
        "http_attempts": stats.sent,
        "retries": stats.retries,
        "failed_requests": stats.failed,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": tokens,
        "paid_tokens": budget.paid_tokens,
        "cost_usd": round(budget.cost(stats.prompt_tokens, stats.completion_tokens), 6),
        "paid_usd": round(budget.paid_usd, 6),
        "budget_exhausted": int(budget.exhausted),
        "wall_s": round(wall_s, 2),
        "triplets_per_s": round(kept / wall_s, 4) if wall_s else 0.0,
        "tokens_per_s": round(tokens / wall_s, 2) if wall_s else 0.0,
    }


def sample_rows(triplets: Sequence[Triplet], n: int = 5) -> list[dict[str, Any]]:
    """The first `n` triplets as plain rows for display (anchor, positive, negative, instructions)."""
    return [
        {
            "anchor": t.anchor,
            "positive": t.positive,
            "negative": t.negative,
            "instructions": f"{t.meta['positive']['instruction']}/{t.meta['negative']['instruction']}",
        }
        for t in list(triplets)[:n]
    ]


def config_record(cfg: SynthConfig, llm: LLMConfig) -> dict[str, Any]:
    """The resolved synthesis config to save beside the triplets (no secrets: only the env var name)."""
    return {"synth": asdict(cfg), "llm": asdict(llm)}
