"""The pools carry the paper's prompts and our examples; requests are the paper's chats, seeded,
and the scratch one-shot is sampled per call with the topics its sentences are about."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import pytest

from syncse import synth
from syncse.config import LLMConfig, SynthConfig
from syncse.llm import ChatRequest

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


def derived_seed(*identity: object) -> int:
    """The sampling seed a request must carry, derived here as documented (not by the library):
    a generator seeded with the ':'-joined run seed and request identity draws it below 2**31.
    The banked study cache is keyed on these values, so they may not drift."""
    return random.Random(":".join(str(part) for part in identity)).randrange(2**31)


@pytest.fixture(scope="module")
def pools() -> synth.PromptPools:
    return synth.load_pools()


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
    assert [i.id for i in pools.positive + pools.negative if i.omits] == ["pos4"]  # "Feel free to omit ..."


def test_every_genre_has_30_topic_tagged_examples_of_its_own(pools: synth.PromptPools) -> None:
    """The paper's 30 example sentences per genre, written for this project, each tagged with a
    topic from the paper's list; a genre's examples are about many topics, none is repeated."""
    sentences = [e.text for g in pools.genres for e in g.examples]
    assert len(sentences) == len(set(sentences))
    for genre in pools.genres:
        assert len(genre.examples) >= 30, genre.id
        assert {e.topic for e in genre.examples} <= set(pools.topics)
        assert len({e.topic for e in genre.examples}) >= 12, genre.id
        assert all(2 <= len(e.text.split()) <= 32 for e in genre.examples)
        assert genre.shot_pool(10) == genre.examples[:10] and genre.shot_pool(0) == genre.examples


def test_caption_prompts_we_wrote_are_marked(pools: synth.PromptPools) -> None:
    """The paper quotes the start of one caption prompt; the rest of that one and the others are ours."""
    assert pools.caption_written_by == {"caption1": "paper+us", "caption2": "us", "caption3": "us", "caption4": "us"}
    quoted = ("Please randomly generate {number} diverse sentences in the style of {genre}, similar to image captions "
              "in the Flickr30k dataset, covering a wide range of subjects, actions, contexts, and settings")
    assert pools.caption["caption1"].startswith(quoted)
    assert not any(t.startswith(quoted) for cid, t in pools.caption.items() if cid != "caption1")


@pytest.mark.parametrize(("side", "top_p", "texts"), [("positive", 0.9, PAPER_POSITIVE), ("negative", 0.95, PAPER_NEGATIVE)])
def test_annotation_prompt_is_the_papers_few_shot_chat(pools: synth.PromptPools, side: str, top_p: float,
                                                       texts: list[str]) -> None:
    request, meta = synth.annotation_request("A boy kicks a ball.", side, pools, SynthConfig(), 42, aids=False, block=0)
    messages = request.messages
    assert messages[0] == {"role": "system", "content": texts[int(meta["instruction"][3]) - 1]}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * 5 + ["user"]
    assert messages[-1]["content"] == "A boy kicks a ball."
    assert len(set(meta["exemplars"])) == 5 and all(e.startswith(meta["instruction"]) for e in meta["exemplars"])
    seed = derived_seed(42, side, "A boy kicks a ball.")
    assert request.params == {"temperature": 1.0, "top_p": top_p, "max_tokens": 96, "seed": seed}
    assert meta["sampling"] == request.params
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
        assert request.params == {"temperature": 1.3, "top_p": 1.0, "max_tokens": 640, "seed": derived_seed(42, "scratch", call),
                                  "presence_penalty": 0.3, "frequency_penalty": 0.3}
    assert seen_caption and seen_plain


def shot_of(request: ChatRequest) -> list[str]:
    """The one-shot answer's sentences."""
    return synth.parse_sentences(request.messages[-2]["content"])


def test_the_papers_scratch_one_shot_is_sampled_per_call_and_names_its_own_topics(pools: synth.PromptPools) -> None:
    """Paper profile: 10 of the genre's 30 sentences per call, and the topics the question of the
    shot names are topics those sentences are tagged with."""
    cfg = SynthConfig(sentences_per_call=20, shot_sentences=10, shot_pool=0, shot_topics="shot")
    genres = {g.id: g for g in pools.genres}
    shots_by_genre: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    used: Counter[str] = Counter()
    for call in range(120):
        request, meta = synth.scratch_request(call, pools, cfg, 42, aids=False)
        genre = genres[meta["genre"]]
        topic_of = {e.text: e.topic for e in genre.examples}
        shot = shot_of(request)
        assert len(shot) == len(set(shot)) == 10 and set(shot) <= set(topic_of)
        shot_topics = list(dict.fromkeys(topic_of[s] for s in shot))
        assert meta["shot_topics"] == shot_topics[:6] and len(meta["shot_topics"]) == min(6, len(shot_topics))
        if not genre.caption:
            assert ", ".join(meta["shot_topics"]) in request.messages[0]["content"]
        assert "20" in request.messages[-1]["content"] and len(meta["topics"]) == 6
        shots_by_genre[genre.id].add(tuple(shot))
        used.update(shot)
    assert sum(len(s) for s in shots_by_genre.values()) == 120  # no two calls share a shot
    assert any(pools.genres[0].examples[k].text in used for k in range(10, 30))  # beyond the study's ten
    assert len(used) > 400


def test_the_default_one_shot_keeps_the_studys_ten_and_independent_topics(pools: synth.PromptPools) -> None:
    cfg = SynthConfig()  # shot_pool 10, shot_topics sampled: the requests the study's cache holds
    for call in range(40):
        request, meta = synth.scratch_request(call, pools, cfg, 42, aids=True)
        genre = next(g for g in pools.genres if g.id == meta["genre"])
        shot = json.loads(request.messages[2]["content"])["sentences"]
        assert len(shot) == 5 and set(shot) <= {e.text for e in genre.examples[:10]}
        assert len(meta["shot_topics"]) == 6 and set(meta["shot_topics"]) <= set(pools.topics)


def test_a_repeated_anchor_gets_its_own_sample(pools: synth.PromptPools) -> None:
    """Premises repeat in the NLI rows (the paper annotates each row): a later occurrence is a new request."""
    first, _ = synth.annotation_request("A boy kicks a ball.", "positive", pools, SynthConfig(), 42, False, 0)
    again, _ = synth.annotation_request("A boy kicks a ball.", "positive", pools, SynthConfig(), 42, False, 0, repeat=1)
    same, _ = synth.annotation_request("A boy kicks a ball.", "positive", pools, SynthConfig(), 42, False, 0, repeat=0)
    assert same == first and again.messages == first.messages
    assert (first.params["seed"], again.params["seed"]) == (derived_seed(42, "positive", "A boy kicks a ball."),
                                                            derived_seed(42, "positive", "A boy kicks a ball.", 1))
