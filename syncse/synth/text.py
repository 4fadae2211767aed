"""Text handling for synthesis: normalise and detokenise sentences, compare them, and read the
usable sentence(s) out of a model's answer (JSON, fences, bullets, labels, quotes, preambles)."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

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
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOP = frozenset("a an the is are was were be been of to in on at and or".split())
_PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "``": '"', "''": '"'}


def normalize(text: str) -> str:
    """NFC, no zero-width characters, single spaces."""
    return " ".join(_ZERO_WIDTH.sub("", unicodedata.normalize("NFC", text)).split())


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
    judged, with a reason, by the filters (`syncse.synth.filters`)."""
    if not text:
        return []
    value = _json_field(text, "sentences")
    items = [str(v) for v in value] if isinstance(value, list) else _FENCE.sub("", text.strip()).split("\n")
    return [s for s in (strip_wrapping(normalize(item)) for item in items) if s]
