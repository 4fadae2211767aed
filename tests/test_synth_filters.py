"""Each named synthesis filter on hostile inputs; the copy rule keeps deletions that positive 4
asks for and one-word negations; the list is validated at load and the paper keeps only its own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from syncse.config import SYNTH_FILTERS, ConfigError, SynthConfig, load_params
from syncse.synth import filters as F
from syncse.synth import load_pools
from syncse.synth.filters import Candidate, Filters, is_copy

REPO = Path(__file__).resolve().parents[1]
POOLS = load_pools()
ANCHOR = "Several bikers are going down one side of a four lane road past brown and peach buildings."


def verdict(name: str, candidate: Candidate, cfg: SynthConfig | None = None) -> str | None:
    """The verdict of filter `name` alone (a fresh instance)."""
    return F.FILTERS[name](cfg or SynthConfig(), POOLS)(candidate)


def out(text: str, anchor: str = "A dog sleeps.", side: str = "positive", **kw: object) -> Candidate:
    return Candidate(side, text, anchor, **kw)  # type: ignore[arg-type]


def test_the_registry_is_the_declared_list_in_order() -> None:
    assert (*F.FILTERS, *F.TRIPLET_FILTERS) == SYNTH_FILTERS
    assert SynthConfig().filters == [f for f in SYNTH_FILTERS if f != "margin"]  # margin is opt-in


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (out("I'm sorry, but I can't help with that."), "refusal"),
        (out("As an AI language model, I cannot generate this."), "refusal"),
        (out("Fine.", refusal="I won't do that"), "refusal"),  # the API's own refusal field
        (out("I am unable to find my keys.", "I can't find my keys."), None),  # the anchor says it too
        (out(""), "empty"),
        (out("..."), "empty"),
        (out("\u200b"), "empty"),
        (out("A puppy is resting."), None),
        (Candidate("item", "Sure! Here are 3 sentences:"), "header"),
        (Candidate("item", "I can not generate a paraphrased sentence."), "refusal"),
        (Candidate("item", "I can't believe it's Friday already!"), None),
        (Candidate("anchor", ""), None),  # anchors are min_words' business
    ],
)
def test_failed_generations(candidate: Candidate, reason: str | None) -> None:
    assert verdict("failed", candidate) == reason


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (out("This sentence describes a dog sleeping."), "explanation"),
        (out("The original sentence is about a dog."), "explanation"),
        (out("A dog sleeps, says the original sentence.", "The original sentence was lost."), None),
        (Candidate("item", "Here are some sentences"), "explanation"),
        (Candidate("item", "Note that all of these are fictional."), "explanation"),
        (Candidate("item", "Birds fly south."), None),
    ],
)
def test_explanations(candidate: Candidate, reason: str | None) -> None:
    assert verdict("explanation", candidate) == reason


def test_max_and_min_words() -> None:
    cfg = SynthConfig(max_words=32)
    assert verdict("max_words", out("word " * 33), cfg) == "too_long"
    assert verdict("max_words", out("word " * 32), cfg) is None
    assert verdict("max_words", Candidate("anchor", "word " * 33), cfg) == "anchor_too_long"
    assert verdict("max_words", out("word " * 33, side="negative"), replace(cfg, max_words=40)) is None
    assert verdict("min_words", Candidate("item", "Guitar."), cfg) == "anchor_too_short"  # a generated one-word line
    assert verdict("min_words", Candidate("item", "Stop now!"), cfg) is None
    assert verdict("min_words", Candidate("anchor", "Wow!"), cfg) is None  # a premise of one word is a sentence
    assert verdict("min_words", Candidate("anchor", "... --"), cfg) == "anchor_too_short"
    assert verdict("min_words", out(""), cfg) is None  # outputs are failed's business


@pytest.mark.parametrize(
    ("text", "reference", "omits", "copy"),
    [
        ("A dog sleeps.", "A dog sleeps.", False, True),
        ("a DOG sleeps!", "A dog sleeps.", True, True),  # identical after normalisation: a copy under any instruction
        ("A dog is sleeping.", "A dog sleeps.", True, True),
        (ANCHOR.replace("brown", "green"), ANCHOR, False, False),  # a swapped word: a hard negative's edit
        (ANCHOR.replace("brown and peach", "brown"), ANCHOR, False, True),  # a deletion where none was asked
        (ANCHOR.replace("brown and peach", "brown"), ANCHOR, True, False),  # positive 4: "omit ... details"
        (ANCHOR.replace(" today", "") + " today", ANCHOR, False, True),  # one word inserted
        ("Bikers ride on a road.", ANCHOR, False, False),
        # one-word negations change the meaning: never a copy, in either direction
        ("A man is not sleeping.", "A man is sleeping.", False, False),
        ("A man in a blue shirt is not sleeping on a bench near the old harbor.",
         "A man in a blue shirt is sleeping on a bench near the old harbor.", False, False),
        ("The shop isn't open on Sundays.", "The shop is open on Sundays.", False, False),
        ("Nobody is swimming in the lake today.", "Somebody is swimming in the lake today.", False, False),
        ("A man is sleeping.", "A man is not sleeping.", True, False),
        ("A man never sleeps on the old bench by the harbor.", "A man never sleeps on the bench by the harbor.", False, True),
    ],
)
def test_copy_rule(text: str, reference: str, omits: bool, copy: bool) -> None:
    assert is_copy(text, reference, 0.8, omits) is copy


def test_copy_filter_keeps_concise_positives_and_negations_as_their_sides() -> None:
    anchor = "A young man in a red shirt is sleeping on a wooden bench in the park."
    concise = "A young man in a red shirt is sleeping on a bench in the park."
    assert verdict("copy", out(concise, anchor, omits=True)) is None  # positive 4: a legitimate concise paraphrase
    assert verdict("copy", out(concise, anchor)) == "copies_anchor"  # positive 1-3 asked for other words
    negated = "A young man in a red shirt is not sleeping on a wooden bench in the park."
    assert verdict("copy", out(negated, anchor, side="negative")) is None
    assert verdict("copy", Candidate("pair", negated, anchor)) is None  # the negative of a copied positive
    assert verdict("copy", Candidate("pair", "A young man is sleeping.", "A young man is sleeping!")) == "equals_positive"
    assert verdict("copy", out(anchor.upper(), anchor, side="negative")) == "copies_anchor"


def test_copy_filter_drops_scratch_lines_that_copy_an_example_the_call_could_show() -> None:
    genre = POOLS.genres[0]
    first, late = genre.examples[0].text, genre.examples[20].text
    assert verdict("copy", Candidate("item", f'"{first.upper()}"')) == "copies_shot"
    assert verdict("copy", Candidate("item", late), SynthConfig(shot_pool=10)) is None  # never shown
    assert verdict("copy", Candidate("item", late), SynthConfig(shot_pool=0)) == "copies_shot"


def test_duplicates_remember_only_kept_anchors() -> None:
    chain = Filters(replace(SynthConfig(), max_words=8), POOLS)
    anchors = ["A man plays the guitar.", "a man plays the guitar.", "The man plays a guitar!", "The man plays a guitar!",
               "one two three four five six seven eight nine", "A woman plays the guitar.", "?!"]
    assert [chain.reason(Candidate("anchor", a)) for a in anchors] == [
        None, "duplicate_anchor", "near_duplicate_anchor",
        "near_duplicate_anchor",  # the dropped near-duplicate was not remembered as an exact one
        "anchor_too_long", None, "anchor_too_short"]
    without = Filters(SynthConfig(filters=["duplicate"]), POOLS)
    assert [without.reason(Candidate("anchor", a)) for a in anchors[:3]] == [None, "duplicate_anchor", None]


def test_paper_filters_keep_what_only_aids_would_drop() -> None:
    chain = Filters(SynthConfig(filters=["max_words", "failed"]), POOLS)
    assert chain.names == ["failed", "max_words"]  # applied in the declared order, whatever the list's
    anchor = "A dog sleeps on the porch."
    for candidate in [out(anchor, anchor), out("This sentence describes a dog.", anchor),
                      Candidate("item", "Guitar."), Candidate("anchor", anchor), Candidate("anchor", anchor),
                      Candidate("pair", anchor, anchor), Candidate("item", POOLS.genres[0].examples[0].text)]:
        assert chain.reason(candidate) is None, candidate
    assert chain.reason(out("word " * 33, anchor)) == "too_long"
    assert chain.reason(out("I cannot rewrite that, sorry.", anchor)) == "refusal"


def test_every_reason_is_counted_in_the_drop_report() -> None:
    """Whatever a filter says at a stage lands on a key the pipelines count."""
    texts = ["", "...", "A dog sleeps.", "word " * 40, "Guitar.", "Sure, here you go:", "I'm sorry, but I can't do that.",
             "This sentence describes a dog.", POOLS.genres[0].examples[0].text, "A dog is not sleeping."]
    counted = {"item": set(F.ITEM_REASONS), "anchor": set(F.ANCHOR_REASONS), "pair": {"equals_positive"},
               **{side: set(F.OUTPUT_REASONS) for side in F.SIDES}}
    seen: set[tuple[str, str]] = set()
    for stage in F.STAGES:
        chain = Filters(SynthConfig(), POOLS)
        for text in texts * 2:
            reason = chain.reason(Candidate(stage, text, "A dog sleeps."))
            if reason:
                assert reason in counted[stage], (stage, reason)
                seen.add((stage, reason))
    assert {f"{s}_{r}" for s, r in seen if s in F.SIDES} <= set(F.DROP_REASONS)
    assert len(seen) >= 15


def test_a_candidate_stage_is_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown candidate stage 'output'; expected one of \('item', 'anchor'"):
        Candidate("output", "A dog sleeps.")


# --------------------------------------------------------------------------- params


def _load(tmp_path: Path, edit: dict[str, object], profile: str = "default"):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = profile
    for key, value in edit.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("synth.filters", ["failed", "jaccard"],
         r"synth\.filters\[1\]: unknown value 'jaccard'; allowed: \['failed', 'explanation', 'max_words', 'min_words', "
         r"'copy', 'duplicate', 'near_duplicate', 'margin'\]"),
        ("profiles.paper.synth.filters", ["dedup"], r"profiles\.paper\.synth\.filters\[0\]: unknown value 'dedup'"),
        ("synth.filters", "failed", r"synth\.filters: expected list, got str 'failed'"),
        ("synth.shot_topics", "random", r"synth\.shot_topics: unknown value 'random'; allowed: \['sampled', 'shot'\]"),
        ("synth.shot_pool", -1, r"synth\.shot_pool: -1 outside the allowed range \[0, inf\)"),
    ],
)
def test_bad_filter_settings_name_the_key_path(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, {key: value})


def test_an_unknown_filter_built_in_code_is_rejected_too() -> None:
    with pytest.raises(ValueError, match=r"synth\.filters: unknown filter 'jacard'; allowed: \['failed'"):
        Filters(SynthConfig(filters=["failed", "jacard"]), POOLS)


def test_the_paper_profile_cleans_as_the_paper_and_samples_its_one_shot(tmp_path: Path) -> None:
    paper = _load(tmp_path, {}, profile="paper").synth
    assert paper.filters == ["failed", "max_words"] and paper.max_words == 32
    assert (paper.shot_pool, paper.shot_topics, paper.shot_sentences, paper.sentences_per_call) == (0, "shot", 10, 20)
    assert paper.n_partial == 275_601
    default = _load(tmp_path, {}).synth
    assert default.filters == list(F.FILTERS)  # the embedded default keeps every cleaning aid, no opt-in control
    assert (default.shot_pool, default.shot_topics) == (10, "sampled")  # as the study's cache was made
