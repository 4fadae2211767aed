"""Cleaning as named filters (`synth.filters`): each a small unit with one signature, a
`Candidate` in, a drop reason (or None: keep) out. The pipelines count every reason.

A candidate is a text at one stage of a pipeline:

| stage | text | reference |
|---|---|---|
| `item` | a line parsed from a scratch generation answer | - |
| `anchor` | a sentence about to be annotated (premise, or kept scratch item) | - |
| `positive`, `negative` | a cleaned annotation | its anchor |
| `pair` | the negative of a triplet whose two sides passed | its positive |

| filter | drops (reason) | paper |
|---|---|---|
| `failed` | failed generations: refusals, empty answers (`empty`, `refusal`), scratch header lines (`header`) | yes |
| `explanation` | commentary instead of a sentence (`explanation`) | no |
| `max_words` | over `synth.max_words` words (`anchor_too_long`, `too_long`) | yes (32) |
| `min_words` | an anchor without a word; a generated sentence of one word (`anchor_too_short`) | no |
| `copy` | an output that copies its anchor (`copies_anchor`), a negative that copies its positive (`equals_positive`), a scratch sentence that copies one of our example sentences (`copies_shot`) | no |
| `duplicate` | an anchor seen before (`duplicate_anchor`); partial then reads distinct premises | no |
| `near_duplicate` | an anchor equal to an earlier one up to order, inflection, stop words (`near_duplicate_anchor`) | no |
| `margin` | a triplet whose judge (`synth.margin_judge`) scores cos(anchor, positive) - cos(anchor, negative) below `synth.margin` (`margin`); judges whole triplets, once, after assembly (`syncse.synth.margin`); opt-in | no |

Filters apply in `SYNTH_FILTERS` order whatever the order of the list; the first reason wins.
`TRIPLET_FILTERS` (`margin`) are not `Filter`s: the pipelines run them over the assembled triplets.
Stateful filters (duplicates) remember an anchor only once every filter has kept it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from syncse.config import SYNTH_FILTERS, SynthConfig
from syncse.synth.margin import REASON as MARGIN
from syncse.synth.pools import SIDES, PromptPools
from syncse.synth.text import jaccard, loose_key, stems, words

STAGES = ("item", "anchor", *SIDES, "pair")
ANCHOR_REASONS = ("anchor_too_long", "anchor_too_short", "duplicate_anchor", "near_duplicate_anchor")
OUTPUT_REASONS = ("empty", "refusal", "explanation", "too_long", "copies_anchor", "request_failed", "budget")
ITEM_REASONS = ("header", "refusal", "explanation", "copies_shot", "anchor_too_short")  # scratch: sentences_dropped_*
DROP_REASONS = (
    *ANCHOR_REASONS,
    *(f"{side}_{reason}" for side in SIDES for reason in OUTPUT_REASONS),
    "positive_equals_negative",
    "shortfall",  # fewer usable anchors than requested (scratch: generated sentences; partial: the pool)
    MARGIN,  # the `margin` filter (syncse.synth.margin)
    "self_check_positive", "self_check_negative", "self_check_unparsed",  # syncse.synth.selfcheck, after its retries
)

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
_NEGATIONS = frozenset("not no never nobody nothing none neither nor nowhere without cannot".split())


@dataclass(frozen=True)
class Candidate:
    """One text a filter judges (see the module's table of stages).

    `omits`: generated under an instruction that allows dropping details (positive 4);
    `refusal`: the API's own refusal field, if it set one; `reorders`: generated under an
    instruction that asks for the reference's words in another order (our role swap).
    """

    stage: str
    text: str
    reference: str = ""
    omits: bool = False
    refusal: str | None = None
    reorders: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown candidate stage {self.stage!r}; expected one of {STAGES}")


class Filter:
    """A named filter: `__call__` gives the drop reason or None; `accept` sees every kept candidate."""

    name = ""

    def __init__(self, cfg: SynthConfig, pools: PromptPools) -> None:
        self.cfg = cfg

    def __call__(self, candidate: Candidate) -> str | None:
        raise NotImplementedError

    def accept(self, candidate: Candidate) -> None:
        """Remember a candidate every filter kept (stateful filters only)."""


class Failed(Filter):
    """Failed generations, the paper's only cleaning: refusals, empty answers, list headers."""

    name = "failed"

    def __call__(self, c: Candidate) -> str | None:
        if c.stage == "item":
            return "header" if c.text.endswith(":") else "refusal" if _REFUSAL.search(c.text) else None
        if c.stage not in SIDES:
            return None
        if c.refusal or (_REFUSAL.search(c.text) and not _REFUSAL.search(c.reference)):
            return "refusal"
        return None if words(c.text) else "empty"


class Explanation(Filter):
    """Commentary about the sentence instead of a sentence (`This sentence describes...`)."""

    name = "explanation"

    def __call__(self, c: Candidate) -> str | None:
        if c.stage == "item":
            return "explanation" if _EXPLANATION.match(c.text) else None
        if c.stage in SIDES and _EXPLANATION.search(c.text) and not _EXPLANATION.search(c.reference):
            return "explanation"
        return None


class MaxWords(Filter):
    """Anchors and outputs over `synth.max_words` words (the paper's 32-word filter)."""

    name = "max_words"

    def __call__(self, c: Candidate) -> str | None:
        if len(c.text.split()) <= self.cfg.max_words:
            return None
        return "anchor_too_long" if c.stage == "anchor" else "too_long" if c.stage in SIDES else None


class MinWords(Filter):
    """An anchor without a word, or a generated (scratch) sentence of a single word."""

    name = "min_words"

    def __call__(self, c: Candidate) -> str | None:
        least = {"item": 2, "anchor": 1}.get(c.stage)
        if least is None:
            return None
        return "anchor_too_short" if len(c.text.split()) < least or not words(c.text) else None


class Copy(Filter):
    """An output that copies its anchor, a negative that copies its positive, a scratch sentence
    that copies one of the example sentences its call could have shown (see `is_copy`)."""

    name = "copy"

    def __init__(self, cfg: SynthConfig, pools: PromptPools) -> None:
        super().__init__(cfg, pools)
        self.shots = {loose_key(e.text) for genre in pools.genres for e in genre.shot_pool(cfg.shot_pool)}

    def __call__(self, c: Candidate) -> str | None:
        if c.stage == "item":
            return "copies_shot" if loose_key(c.text) in self.shots else None
        if c.stage == "anchor" or not is_copy(c.text, c.reference, self.cfg.copy_jaccard, c.omits, c.reorders):
            return None
        return "equals_positive" if c.stage == "pair" else "copies_anchor"


class Duplicate(Filter):
    """An anchor seen before (case-insensitive)."""

    name = "duplicate"
    reason = "duplicate_anchor"

    def __init__(self, cfg: SynthConfig, pools: PromptPools) -> None:
        super().__init__(cfg, pools)
        self.seen: set[str] = set()

    def key(self, text: str) -> str:
        """What two anchors share when this filter calls them the same."""
        return text.lower()

    def __call__(self, c: Candidate) -> str | None:
        return self.reason if c.stage == "anchor" and self.key(c.text) in self.seen else None

    def accept(self, c: Candidate) -> None:
        if c.stage == "anchor":
            self.seen.add(self.key(c.text))


class NearDuplicate(Duplicate):
    """An anchor equal to an earlier one up to word order, inflection, punctuation and stop words."""

    name = "near_duplicate"
    reason = "near_duplicate_anchor"

    def key(self, text: str) -> str:
        return loose_key(text)


FILTERS: dict[str, type[Filter]] = {f.name: f for f in (Failed, Explanation, MaxWords, MinWords, Copy, Duplicate, NearDuplicate)}
TRIPLET_FILTERS = (MARGIN,)  # named in synth.filters, run over assembled triplets (syncse.synth.pipelines)


class Filters:
    """The filters named in `synth.filters`, fresh (no memory), in `SYNTH_FILTERS` order."""

    def __init__(self, cfg: SynthConfig, pools: PromptPools) -> None:
        unknown = sorted(set(cfg.filters) - set(FILTERS) - set(TRIPLET_FILTERS))
        if unknown:
            raise ValueError(f"synth.filters: unknown filter {unknown[0]!r}; allowed: {list(SYNTH_FILTERS)}")
        self.names = [name for name in SYNTH_FILTERS if name in cfg.filters]
        self.units = [FILTERS[name](cfg, pools) for name in self.names if name in FILTERS]

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def reason(self, candidate: Candidate) -> str | None:
        """The first filter's drop reason, or None (then every filter remembers the candidate)."""
        for unit in self.units:
            reason = unit(candidate)
            if reason:
                return reason
        for unit in self.units:
            unit.accept(candidate)
        return None


def negations(text: str) -> set[str]:
    """The negation words in `text` (`not`, `never`, `isn't`, ...)."""
    return {w for w in words(text) if w in _NEGATIONS or w.endswith("n't")}


def is_copy(text: str, reference: str, threshold: float, omits: bool = False, reorders: bool = False) -> bool:
    """`text` says what `reference` says in (nearly) the same words.

    A copy: the same stemmed content words (order, inflection, punctuation and stop words do not
    matter), or the reference with a few words inserted or deleted (Jaccard at or above `threshold`).
    Never a copy: a swapped word (a hard negative's small edit); an added or removed negation
    (`A man is not sleeping`); a deletion under an instruction that asks for one (`omits`:
    positive 4's "omit some of the non-essential details"); the same words in another order under
    an instruction that asks for a swap (`reorders`: `A cat chases a dog` from `A dog chases a cat`).
    """
    st, sr = stems(text), stems(reference)
    if st == sr:
        return not reorders or words(text) == words(reference)
    if negations(text) != negations(reference):
        return False
    if st < sr:
        return not omits and jaccard(text, reference) >= threshold
    return sr < st and jaccard(text, reference) >= threshold
