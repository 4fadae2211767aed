"""SynCSE data synthesis, one concern per module:

- `pools`: the prompt pools (`syncse/pools/*.yaml`): the paper's instructions, our exemplars,
  our targeted negative instructions, genres with topic-tagged example sentences, topics.
- `text`: normalise, detokenise, read the usable sentence(s) out of a model's answer.
- `filters`: cleaning as named filters (`synth.filters`), a candidate in, a drop reason out.
- `margin`: the opt-in `margin` filter: an encoder judges the assembled triplets (GCSE-style).
- `requests`: the chat requests (annotation, scratch generation, the self-check's judge call) and their provenance.
- `selfcheck`: the self-check (`synth.self_check`): a judge scores each pair 0-5, failing sides are regenerated.
- `pipelines`: partial and scratch end to end, the drop report and the metrics.

- **partial**: each unlabeled sentence (NLI premises by default) gets one positive and one hard
  negative from two chat calls; each call samples one of the paper's four instructions and
  `n_exemplars` exemplars from that instruction's pool, as a multi-turn few-shot chat.
- **scratch**: one-shot calls ask for `sentences_per_call` sentences of a sampled genre about
  `n_topics` sampled topics (caption genres use the caption instructions); the answers are parsed
  into sentences, filtered, and annotated exactly like partial.

References:
    Zhang, He & Lan (2023), Contrastive Learning of Sentence Embeddings from Scratch,
    Tables 1, 10, 12, 15, 16 and Appendix B.
"""

from syncse.synth.filters import DROP_REASONS, FILTERS, Candidate, Filters, is_copy
from syncse.synth.pipelines import (
    PIPELINES,
    SynthResult,
    annotate,
    budget_missing,
    check_config,
    config_record,
    drawing_order,
    partial_pool,
    run_metrics,
    sample_rows,
    select_anchors,
    synthesize,
)
from syncse.synth.pools import SIDES, Example, Exemplar, Genre, Instruction, PromptPools, load_pools
from syncse.synth.requests import (
    AID_SCRATCH_SYSTEM,
    AID_SYSTEM,
    SENTENCE_SCHEMA,
    SENTENCES_SCHEMA,
    aids_enabled,
    annotation_request,
    request_seed,
    scratch_request,
)
from syncse.synth.text import clean_annotation, detokenize, loose_key, normalize, parse_sentences

__all__ = [
    "AID_SCRATCH_SYSTEM", "AID_SYSTEM", "DROP_REASONS", "FILTERS", "PIPELINES", "SENTENCES_SCHEMA", "SENTENCE_SCHEMA",
    "SIDES", "Candidate", "Example", "Exemplar", "Filters", "Genre", "Instruction", "PromptPools", "SynthResult",
    "aids_enabled", "annotate", "annotation_request", "budget_missing", "check_config", "clean_annotation",
    "config_record", "detokenize", "is_copy", "load_pools", "loose_key", "normalize", "parse_sentences",
    "drawing_order", "partial_pool", "request_seed", "run_metrics", "sample_rows", "scratch_request", "select_anchors", "synthesize",
]
