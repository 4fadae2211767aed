"""Prompts match the paper; parsing and filters survive hostile outputs; pipelines lose nothing."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncse import synth
from syncse.config import LLMConfig, SynthConfig
from syncse.data import read_triplets, write_triplets
from syncse.llm import BudgetExceeded, open_client
from syncse.testing import FakeOpenAIServer

PAPER_POSITIVE = [
    "Please paraphrase the input sentence or phrase, providing an alternative expression with the same meaning.",
    "Rewrite the following sentence or phrase using different words and sentence structure while preserving its original meaning.",
    "Create a sentence or phrase that is also true, assuming the provided input sentence or phrase is true.",
    "Please provide a concise paraphrase of the input sentence or phrase, maintaining the core meaning while altering the words and sentence structure. Feel free to omit some of the non-essential details like adjectives or adverbs.",
]
PAPER_NEGATIVE = [
    "Revise the provided sentence by swapping, changing, or contradicting some details in order to express a different meaning, while maintaining the general context and structure.",
    "Generate a slightly modified version of the provided sentence to express an opposing or alternate meaning by changing one or two specific elements, while maintaining the overall context and sentence structure.",
    "Transform the input sentence by adjusting, altering, or contradicting its original meaning to create a logical and sensible output sentence with a different meaning from the input sentence.",
    "Generate a sentence that conveys a altering, contrasting or opposite idea to the given input sentence, while ensuring the new sentence is logical, realistic, and grounded in common sense.",
]
ANCHORS = [f"A {animal} is {verb} near the {place}." for animal in ("dog", "cat", "horse", "goat")
           for verb in ("sleeping", "running") for place in ("river", "barn", "road")]
KEY = "sk-synth-SECRET-42"


@pytest.fixture(scope="module")
def pools() -> synth.PromptPools:
    return synth.load_pools()


# --------------------------------------------------------------------------- prompts


def test_pools_carry_the_papers_instructions_and_enough_exemplars(pools: synth.PromptPools) -> None:
    assert [i.text for i in pools.positive] == PAPER_POSITIVE
    assert [i.text for i in pools.negative] == PAPER_NEGATIVE
    for instruction in pools.positive + pools.negative:
        assert len(instruction.exemplars) >= 18
        assert all(e.input != e.output for e in instruction.exemplars)
    assert len(pools.genres) == 21 and len(pools.topics) == len(set(pools.topics)) == 37
    assert {g.id for g in pools.genres if g.caption} == {"captions", "image_descriptions", "video_descriptions"}
    assert len(pools.scratch) == 4 and len(pools.caption) >= 1
    assert all("{number}" in t and "{genre}" in t for t in [*pools.scratch.values(), *pools.caption.values()])


@pytest.mark.parametrize(("side", "top_p", "texts"), [("positive", 0.9, PAPER_POSITIVE), ("negative", 0.95, PAPER_NEGATIVE)])
def test_annotation_prompt_is_the_papers_few_shot_chat(pools: synth.PromptPools, side: str, top_p: float,
                                                       texts: list[str]) -> None:
    request, meta = synth.annotation_request("A boy kicks a ball.", side, pools, SynthConfig(), 42, aids=False, block=0)
    messages = request.messages
    assert messages[0] == {"role": "system", "content": texts[int(meta["instruction"][3]) - 1]}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * 5 + ["user"]
    assert messages[-1]["content"] == "A boy kicks a ball."
    assert len(set(meta["exemplars"])) == 5 and all(e.startswith(meta["instruction"]) for e in meta["exemplars"])
    assert request.params == {"temperature": 1.0, "top_p": top_p, "max_tokens": 96, "seed": request.params["seed"]}
    assert meta["prompt_hash"] == request.prompt_hash()


def test_aids_add_system_guidance_and_json_schema(pools: synth.PromptPools) -> None:
    request, _ = synth.annotation_request("A boy kicks a ball.", "negative", pools, SynthConfig(), 42, aids=True, block=0)
    assert request.messages[0]["content"].startswith(synth.AID_SYSTEM)
    assert request.params["response_format"] == synth.SENTENCE_SCHEMA
    assert json.loads(request.messages[2]["content"])["sentence"]
    assert synth.aids_enabled(LLMConfig(backend="embedded")) and not synth.aids_enabled(LLMConfig(backend="openai"))


def test_sampling_is_seeded_and_blocks_share_a_prefix(pools: synth.PromptPools) -> None:
    cfg = SynthConfig()
    a = synth.annotation_request("A boy kicks a ball.", "positive", pools, cfg, 42, False, 3)
    b = synth.annotation_request("A boy kicks a ball.", "positive", pools, cfg, 42, False, 3)
    c = synth.annotation_request("A girl kicks a ball.", "positive", pools, cfg, 42, False, 3)
    assert a == b and a[0].messages[:-1] == c[0].messages[:-1]
    prefixes = {json.dumps(synth.annotation_request("x", "positive", pools, cfg, 42, False, k)[0].messages[:-1])
                for k in range(8)}
    assert len(prefixes) > 1
    retry, meta = synth.annotation_request("A boy kicks a ball.", "positive", pools, cfg, 42, False, 3, attempt=1)
    assert retry.messages == a[0].messages and meta["sampling"]["seed"] == a[1]["sampling"]["seed"] + 1


def test_scratch_prompt_matches_the_paper(pools: synth.PromptPools) -> None:
    cfg = SynthConfig(sentences_per_call=20, shot_sentences=5)
    seen_caption = seen_plain = False
    for call in range(40):
        request, meta = synth.scratch_request(call, pools, cfg, 42, aids=False)
        genre = next(g for g in pools.genres if g.id == meta["genre"])
        ask = request.messages[-1]["content"]
        assert [m["role"] for m in request.messages] == ["user", "assistant", "user"]
        assert "20" in ask and genre.description in ask and len(meta["topics"]) == 6
        assert (meta["instruction"] in pools.caption) == genre.caption
        if not genre.caption:
            assert all(topic in ask for topic in meta["topics"])
            seen_plain = True
        else:
            seen_caption = True
        assert len(synth.parse_sentences(request.messages[1]["content"])) == 5
        assert request.params == {"temperature": 1.3, "top_p": 1.0, "max_tokens": 640, "seed": request.params["seed"],
                                  "presence_penalty": 0.3, "frequency_penalty": 0.3}
    assert seen_caption and seen_plain


# --------------------------------------------------------------------------- parsing and filters


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
    assert synth.clean_annotation(raw, "A dog sleeps.") == expected


def test_clean_annotation_keeps_as_many_sentences_as_the_anchor() -> None:
    assert synth.clean_annotation("One man runs. Two men walk. Three sit.", "A man runs. Men walk.") == "One man runs. Two men walk."


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("I'm sorry, but I can't help with that.", "refusal"),
        ("As an AI language model, I cannot generate this.", "refusal"),
        ("", "empty"),
        ("...", "empty"),
        ("This sentence describes a dog sleeping.", "explanation"),
        ("The original sentence is about a dog.", "explanation"),
        ("word " * 33, "too_long"),
        ("A dog sleeps.", "copies_anchor"),
        ("a DOG sleeps!", "copies_anchor"),
        ("A dog is sleeping.", "copies_anchor"),
        ("A puppy is resting.", None),
    ],
)
def test_output_filters(output: str, reason: str | None) -> None:
    assert synth.output_reject_reason(output, "A dog sleeps.", None, SynthConfig()) == reason


def test_copy_means_deleting_a_few_words_not_swapping_one() -> None:
    anchor = "Several bikers are going down one side of a four lane road past brown and peach buildings."
    swapped = "Several bikers are going down one side of a four lane road past green and peach buildings."
    trimmed = "Several bikers are going down one side of a four lane road past brown buildings."
    assert not synth.is_copy(swapped, anchor, 0.8) and synth.is_copy(trimmed, anchor, 0.8)
    assert not synth.is_copy("Bikers ride on a road.", anchor, 0.8)


def test_ordinary_i_cant_is_not_a_refusal() -> None:
    cfg = SynthConfig()
    assert synth.output_reject_reason("I am unable to find my keys.", "I can't find my keys.", None, cfg) is None
    assert synth.sentence_reject_reason("I can't believe it's Friday already!") is None
    assert synth.sentence_reject_reason("I can not generate a paraphrased sentence.") == "refusal"
    assert synth.output_reject_reason("Fine.", "A dog sleeps.", "I won't do that", cfg) == "refusal"


def test_parse_sentences_from_lists_json_and_fences() -> None:
    text = "Sure! Here are 3 sentences:\n\n1. Birds fly south.\n2) \"Why is the sky blue?\"\n* Stop!\n\n```"
    assert synth.parse_sentences(text) == ["Sure! Here are 3 sentences:", "Birds fly south.", "Why is the sky blue?", "Stop!"]
    assert synth.parse_sentences('{"sentences": ["A.", " B b. ", ""]}') == ["A.", "B b."]
    assert synth.sentence_reject_reason("Sure! Here are 3 sentences:") == "header"
    assert synth.sentence_reject_reason("Here are some sentences") == "explanation"
    assert synth.sentence_reject_reason("I'm sorry, I cannot do that.") == "refusal"
    assert synth.sentence_reject_reason("Birds fly south.") is None


def test_anchor_filter_drops_long_duplicate_and_near_duplicate() -> None:
    filt = synth.AnchorFilter(max_words=8, min_words=2)
    verdicts = [filt.reject_reason(s) for s in [
        "A man plays the guitar.", "a man plays the guitar.", "The man plays a guitar!", "Guitar.",
        "one two three four five six seven eight nine", "A woman plays the guitar.",
    ]]
    assert verdicts == [None, "duplicate_anchor", "near_duplicate_anchor", "anchor_too_short", "anchor_too_long", None]


def test_detokenize_ptb_text() -> None:
    assert synth.detokenize("He does n't like the -LRB- red -RRB- car , right ?") == "He doesn't like the (red) car, right?"


def test_bad_config_names_key_and_range(pools: synth.PromptPools) -> None:
    synth.check_config(SynthConfig(shot_sentences=10, n_exemplars=18), pools)  # the paper's sizes fit the pools
    with pytest.raises(ValueError, match=r"synth.exemplar_block: 0 outside"):
        synth.check_config(SynthConfig(exemplar_block=0), pools)
    with pytest.raises(ValueError, match=r"synth.shot_sentences: 11 outside the allowed range \[1, 10\]"):
        synth.check_config(SynthConfig(shot_sentences=11), pools)
    with pytest.raises(ValueError, match="expected one of"):
        synth.synthesize("wiki", None, SynthConfig(), LLMConfig(), 42, "data")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- pipelines (fake server)


def side_of(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    return "positive" if any(t in system for t in PAPER_POSITIVE) else "negative"


def responder(body: dict[str, Any]) -> str:
    """A well-behaved fake LLM: numbered lists for scratch, rewrites for annotation."""
    last = body["messages"][-1]["content"]
    if body["messages"][0]["role"] == "user":  # scratch: one-shot, no system message
        n = int(re.search(r"\b(\d+)\b", last).group(1))
        topic = body.get("seed", 0)
        return "Here are the sentences:\n" + "\n".join(f"{i}. Sentence {i} about topic {topic} is here." for i in range(1, n + 1))
    anchor = last.rstrip(".")
    return f'"In other words, {anchor.lower()}, truly."' if side_of(body) == "positive" else f"It is false that {anchor.lower()}."


def hostile_faults(key: str, attempt: int) -> str:
    """Transient faults on first attempts; a few bodies are refused for good."""
    value = int(key[:8], 16)
    if value % 11 == 0:
        return "refusal" if value % 2 else "api_refusal"
    if attempt == 0:
        return ("429", "500", "timeout", "malformed_json", "malformed_shape", "ok", "ok")[value % 7]
    return "ok"


def fake_llm(server: FakeOpenAIServer, cache: Path, **kwargs: Any) -> LLMConfig:
    return LLMConfig(backend="openai", model="fake-model", base_url=server.base_url, api_key_env="SYNCSE_TEST_KEY",
                     cache_dir=str(cache), backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=0.5, progress=False,
                     **kwargs)


def run(name: str, llm: LLMConfig, cfg: SynthConfig) -> synth.SynthResult:
    with open_client(llm) as client:
        return synth.synthesize(name, client, cfg, llm, 42, "unused")


def accounted(result: synth.SynthResult) -> None:
    """Every requested anchor is kept once or dropped once; nothing is duplicated."""
    anchors = [t.anchor for t in result.triplets]
    assert len(anchors) == len(set(anchors))
    assert result.metrics["kept"] + sum(result.drops.values()) == result.metrics["requested"]
    assert set(result.metrics) >= {f"dropped_{r}" for r in synth.DROP_REASONS}
    assert all(isinstance(v, (int, float)) for v in result.metrics.values())


def test_partial_through_faults_loses_nothing_and_reruns_from_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(synth, "nli_premises", lambda root: ANCHORS + ANCHORS[:3] + ["word " * 40])
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    cfg = SynthConfig(n_partial=len(ANCHORS) + 4)
    with FakeOpenAIServer(responder, hostile_faults, timeout_sleep_s=1.0, api_key=KEY) as server:
        llm = fake_llm(server, tmp_path / "cache")
        first = run("partial", llm, cfg)
        attempts = sum(server.log.attempts.values())
        second = run("partial", llm, cfg)
        assert sum(server.log.attempts.values()) == attempts  # the rerun paid nothing
    accounted(first)
    assert first.drops["duplicate_anchor"] == 3 and first.drops["anchor_too_long"] == 1
    refused = first.drops["positive_refusal"] + first.drops["negative_refusal"]
    assert refused == server.log.served["refusal"] + server.log.served["api_refusal"] > 0
    assert first.metrics["retries"] > 0 and first.metrics["failed_requests"] == 0
    assert second.metrics["cache_hits"] == second.metrics["requests"]
    assert [asdict_row(t) for t in second.triplets] == [asdict_row(t) for t in first.triplets]
    kept = first.triplets[0]
    assert kept.positive.startswith("In other words") and kept.negative.startswith("It is false")
    assert {"model", "positive", "negative"} <= set(kept.meta)
    assert {"instruction", "exemplars", "sampling", "prompt_hash"} <= set(kept.meta["positive"])
    out = tmp_path / "triplets.jsonl"
    write_triplets(out, first.triplets)
    assert read_triplets(out) == first.triplets
    metrics = json.dumps(first.metrics) + json.dumps(synth.config_record(cfg, llm))
    assert KEY not in out.read_text() + metrics + caplog.text


def asdict_row(t: Any) -> tuple[str, str, str | None]:
    return (t.anchor, t.positive, t.negative)


def test_one_budget_across_stages_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap bounds what both stages and every resumed run pay together (the ledger beside the
    cache); reaching it fails the stage with what was spent, what is missing and how to go on."""
    monkeypatch.setattr(synth, "nli_premises", lambda root: ANCHORS)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_partial=len(ANCHORS), n_scratch=12, sentences_per_call=5, exemplar_block=4)
    with FakeOpenAIServer(responder, api_key=KEY) as server:
        with pytest.raises(BudgetExceeded) as stopped:
            run("partial", fake_llm(server, tmp_path, max_budget_tokens=1500, max_in_flight=1), cfg)
        message = str(stopped.value)
        assert re.search(r"paying 1,[5-9]\d\d tokens", message) and "ledger.jsonl" in message
        assert re.search(rf"\d+ of {len(ANCHORS)} requested rows are missing", message)
        assert "llm.max_budget_usd" in message and "cached and reused" in message
        sent = sum(server.log.attempts.values())
        with pytest.raises(BudgetExceeded, match="synthesize scratch"):  # a new process, the other stage: same total
            run("scratch", fake_llm(server, tmp_path, max_budget_tokens=1500, max_in_flight=1), cfg)
        assert sum(server.log.attempts.values()) == sent  # nothing more was sent
        result = run("partial", fake_llm(server, tmp_path, max_budget_tokens=10**6), cfg)  # the cap raised: go on
    accounted(result)
    assert result.metrics["kept"] == len(ANCHORS) and result.metrics["cache_hits"] > 0
    assert max(server.log.attempts.values()) == 1  # what was paid for was never asked again
    ledger = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    paid = sum(server.log.attempts.values())
    assert len(ledger) == paid and len({entry["key"] for entry in ledger}) == paid  # one line per paid response


def test_responses_without_usage_are_charged_from_a_local_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "nli_premises", lambda root: ANCHORS)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with FakeOpenAIServer(responder, api_key=KEY, usage=False) as server, pytest.raises(BudgetExceeded):
        run("partial", fake_llm(server, tmp_path, max_budget_tokens=1500, max_in_flight=1),
            SynthConfig(n_partial=len(ANCHORS), exemplar_block=4))
    ledger = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert ledger and all(e["estimated"] and e["prompt_tokens"] > 20 and e["completion_tokens"] > 0 for e in ledger)


def test_scratch_generates_parses_and_annotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_scratch=12, sentences_per_call=5, overgenerate=1.5)
    with FakeOpenAIServer(responder, hostile_faults, timeout_sleep_s=1.0, api_key=KEY) as server:
        result = run("scratch", fake_llm(server, tmp_path), cfg)
    accounted(result)
    assert result.metrics["generation_calls"] == 4 and result.metrics["sentences_dropped_header"] >= 3
    assert all(t.source == "scratch" and "genre" in t.meta["scratch"] for t in result.triplets)
    assert result.drop_report() == sorted(result.drop_report(), key=lambda row: -row["count"])


def test_scratch_drops_copies_of_the_shot_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  pools: synth.PromptPools) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    example = pools.genres[0].examples[0]
    with FakeOpenAIServer(lambda body: f"1. {example}\n2. A brand new sentence appears here.", api_key=KEY) as server:
        result = run("scratch", fake_llm(server, tmp_path), SynthConfig(n_scratch=1, sentences_per_call=2))
    assert result.metrics["sentences_dropped_copies_shot"] == 1 and result.drops["shortfall"] == 0
    assert [r["anchor"] for r in result.rejected] + [t.anchor for t in result.triplets] == [
        "A brand new sentence appears here."]


def test_scratch_reports_shortfall_when_generation_is_thin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with FakeOpenAIServer(lambda body: "Sure:\n1. Only one sentence here.", api_key=KEY) as server:
        result = run("scratch", fake_llm(server, tmp_path), SynthConfig(n_scratch=6, sentences_per_call=3))
    accounted(result)
    assert result.drops["shortfall"] == 5


# --------------------------------------------------------------------------- embedded backend (real model)


def test_embedded_smollm_really_generates_triplets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xllamacpp")
    monkeypatch.setattr(synth, "nli_premises", lambda root: ANCHORS[::5])
    llm = LLMConfig(model="smollm2-135m", cache_dir=str(tmp_path / "cache"), model_dir=str(tmp_path), progress=False)
    cfg = replace(SynthConfig(n_partial=4, exemplar_block=4), n_exemplars=3)
    result = run("partial", llm, cfg)
    accounted(result)
    assert result.metrics["completion_tokens"] > 0 and result.triplets
    assert Counter(t.source for t in result.triplets) == {"partial": len(result.triplets)}


def test_notebook_runs_through_jupytext_and_papermill(tmp_path: Path) -> None:
    """The DVC command, on the tiny SmolLM2 model: triplets, metrics and config come out."""
    import shutil
    import subprocess
    import sys

    import yaml

    repo = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["llm"].update(model="smollm2-135m", cache_dir=str(tmp_path / "cache"), model_dir=str(tmp_path), progress=False)
    raw["synth"].update(n_scratch=3, sentences_per_call=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    bin_dir = Path(sys.executable).parent
    jupytext, papermill = (shutil.which(tool, path=str(bin_dir)) or tool for tool in ("jupytext", "papermill"))
    cmd = (f"{jupytext} --to ipynb --set-kernel python3 -o - {repo / 'notebooks/synthesize.py'} | "
           f"{papermill} --cwd . - out.ipynb -p name scratch")
    done = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics/synth/scratch.json").read_text())
    assert metrics["requested"] == 3 and metrics["kept"] == len(read_triplets(tmp_path / "artifacts/synth/scratch.jsonl"))
    assert "drop" in (tmp_path / "out.ipynb").read_text().lower()
