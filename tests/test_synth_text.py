"""Reading model answers: the usable sentence survives hostile wrapping; PTB text is detokenized."""

from __future__ import annotations

import pytest

from syncse.synth.text import clean_annotation, detokenize, parse_sentences


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A cat naps.", "A cat naps."),
        ('"A cat naps."', "A cat naps."),
        ("\u201cA cat naps.\u201d", "A cat naps."),
        ('"A cat naps".', "A cat naps."),
        ("**A cat naps.**", "A cat naps."),
        ("```\nA cat naps.\n```", "A cat naps."),
        ("```json\n{\"sentence\": \"A cat naps.\"}\n```", "A cat naps."),
        ('{"sentence": "A cat naps."}', "A cat naps."),
        ("1. A cat naps.", "A cat naps."),
        ("- A cat naps.", "A cat naps."),
        ("Paraphrase: A cat naps.", "A cat naps."),
        ("Here is the paraphrased sentence:\n\nA cat naps.", "A cat naps."),
        ("Here is a rewrite: A cat naps.", "A cat naps."),
        ("A cat naps. It dreams of fish. Then it wakes.", "A cat naps."),
        ("A cat\u200b naps  in\tthe sun.", "A cat naps in the sun."),
        ("Cafe\u0301 au lait is served.", "Caf\u00e9 au lait is served."),
        ('"Stop," he said, "now."', '"Stop," he said, "now."'),
        ('{"sentence": "A cat naps in the sun. }"}', "A cat naps in the sun."),  # seen from Qwen 0.5B
        ("The set {a, b} is finite.", "The set {a, b} is finite."),
        ("", ""),
        ("```\n```", ""),
    ],
)
def test_clean_annotation_handles_hostile_outputs(raw: str, expected: str) -> None:
    assert clean_annotation(raw, "A dog sleeps.") == expected


def test_clean_annotation_keeps_as_many_sentences_as_the_anchor() -> None:
    assert clean_annotation("One man runs. Two men walk. Three sit.", "A man runs. Men walk.") == "One man runs. Two men walk."


def test_parse_sentences_from_lists_json_and_fences() -> None:
    text = "Sure! Here are 3 sentences:\n\n1. Birds fly south.\n2) \"Why is the sky blue?\"\n* Stop!\n\n```"
    assert parse_sentences(text) == ["Sure! Here are 3 sentences:", "Birds fly south.", "Why is the sky blue?", "Stop!"]
    assert parse_sentences('{"sentences": ["A.", " B b. ", ""]}') == ["A.", "B b."]
    assert parse_sentences("") == [] and parse_sentences(None) == []


def test_detokenize_ptb_text() -> None:
    assert detokenize("He does n't like the -LRB- red -RRB- car , right ?") == "He doesn't like the (red) car, right?"
