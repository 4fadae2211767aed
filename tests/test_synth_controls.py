"""Two quality controls of synthesis: targeted negatives (our instructions that name the edit, sampled
alongside the paper's four) and the self-check (a judge scores each pair 0-5; a failing side is
regenerated, then its triplet dropped). Off, neither changes a single request: the banked study
cache still replays."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncse import synth
from syncse.config import ConfigError, LLMConfig, SynthConfig, load_params
from syncse.llm import EMBEDDED_MODELS, BudgetExceeded, ChatClient, ChatRequest, open_client, sha256_json
from syncse.synth import pipelines
from syncse.synth.filters import Filters, is_copy
from syncse.synth.requests import JUDGE_SYSTEM, SCORE_SCHEMA, judge_request
from syncse.synth.selfcheck import parse_score, verdict
from syncse.testing import REFUSAL_TEXT, FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]
POOLS = synth.load_pools()
KEY = "sk-controls-SECRET-7"
EDITS = ("tneg_verb", "tneg_roles", "tneg_entity", "tneg_number", "tneg_place")

# Cache keys of the study profile's first partial requests (anchors 0, 1, 17, 33 of the shuffled NLI
# premises; exemplar blocks 0, 0, 1, 2), computed before the controls existed; every one of them
# is a response in the banked study cache (study-cache.dvc).
STUDY_KEYS = {
    (0, "positive"): "e6e417e751d7e1d06e4eb394a5e10e04de4269958d62a64c6119cc2f6385ff58",
    (0, "negative"): "647620a655f28c3362c37f5a34a75170ebb316f864a257197fd8cd87fcf4f2b7",
    (1, "positive"): "9017c9bc6f4cfc72df41a5ee9e13560e6c5e9dee7362108c7dd0c260d021c162",
    (1, "negative"): "1b731cb0216dbed748af5097e34625cc6a40a70a96b5446339fa451f142aa779",
    (17, "positive"): "0d2e4aa8393ba41f51296c08ff4ad576d66deb682c44d62aa7a76c87280196b6",
    (17, "negative"): "928441df8e9020377b232e869911037ad3ea82a59c9fef6a326a16c064914e57",
    (33, "positive"): "75de02c75ed4705649f5b92e6aab1f98e4b2e4b976fff0fa41ca16ef0275e076",
    (33, "negative"): "df915e5fb307ea2f19e5491de2d089ee71113556b32bc64beb99379fb1fc0c54",
}


# --------------------------------------------------------------------------- targeted negatives


def test_targeted_instructions_are_ours_name_one_edit_each_and_carry_exemplars() -> None:
    assert tuple(i.id for i in POOLS.targeted) == EDITS
    assert not {i.text for i in POOLS.targeted} & {i.text for i in POOLS.negative}  # the paper's four are untouched
    assert "written_by: us" in (REPO / "syncse/pools/targeted.yaml").read_text()
    for instruction in POOLS.targeted:
        assert len(instruction.exemplars) >= 8 and not instruction.omits
        assert all(e.input != e.output and e.id.startswith(instruction.id) for e in instruction.exemplars)
    assert [i.id for i in POOLS.targeted if i.reorders] == ["tneg_roles"]
    assert POOLS.by_id()["tneg_place"] is POOLS.targeted[-1] and POOLS.by_id()["neg1"] is POOLS.negative[0]


def test_a_role_swap_is_a_copy_only_unless_its_instruction_asks_for_one() -> None:
    """The copy filter reads words as a bag: a swap has the same bag, so it is kept only under `reorders`."""
    for shot in POOLS.by_id()["tneg_roles"].exemplars[:3]:
        assert is_copy(shot.output, shot.input, 0.8) and not is_copy(shot.output, shot.input, 0.8, reorders=True)
    assert is_copy("A dog chases a cat!", "A dog chases a cat.", 0.8, reorders=True)  # same order: still a copy


@pytest.fixture(scope="module")
def study_anchors(data_root: Path) -> tuple[list[str], Any]:
    """The study profile's first 40 partial anchors, as its synthesize stage picks them."""
    params = load_params(REPO / "params.yaml", profile="study")
    filters = Filters(params.synth, POOLS)
    pool = synth.drawing_order(params.synth, filters, params.seed, str(data_root))
    return synth.select_anchors(pool, 40, filters)[0], params


def test_hypotheses_extend_the_premises_drawing_order_without_changing_it(data_root: Path) -> None:
    """`nli+hypotheses` draws every premise exactly as `nli` does (so a bank's requests stay the same),
    then hypotheses that are no premise: the pool reaches past the 10,108 shipped premises."""
    params = load_params(REPO / "params.yaml", profile="scale")
    filters = Filters(params.synth, POOLS)
    premises, extended = (synth.drawing_order(replace(params.synth, partial_source=source), filters, params.seed,
                                              str(data_root)) for source in ("nli", "nli+hypotheses"))
    assert extended[:len(premises)] == premises and len(extended) > len(premises) + 5000
    assert not set(extended[len(premises):]) & set(premises)
    n = len(premises) + 1000  # more than the premises hold: every premise anchor, then hypotheses
    from_premises, from_extended = (synth.select_anchors(pool, n, Filters(params.synth, POOLS))[0]
                                    for pool in (premises, extended))
    assert from_extended[:len(from_premises)] == from_premises and len(from_extended) > len(from_premises) + 500


def study_keys(anchors: list[str], params: Any, cfg: SynthConfig) -> dict[tuple[int, str], tuple[str, str]]:
    """Cache key and instruction of the study's first request per (anchor, side) under `cfg`."""
    namespace = f"gguf-sha256:{EMBEDDED_MODELS[params.llm.model].sha256}"
    keys = {}
    for i, side in STUDY_KEYS:
        request, meta = synth.annotation_request(anchors[i], side, POOLS, cfg, params.seed, True, i // cfg.exemplar_block)
        keys[i, side] = sha256_json({"namespace": namespace, "body": request.body(params.llm.model)}), meta["instruction"]
    return keys


def test_with_the_controls_off_every_request_is_the_banked_one(study_anchors: tuple[list[str], Any]) -> None:
    anchors, params = study_anchors
    assert params.synth.targeted_negatives == 0 and not params.synth.self_check
    assert {k: key for k, (key, _) in study_keys(anchors, params, params.synth).items()} == STUDY_KEYS


def test_a_targeted_share_changes_only_the_negative_blocks_it_draws(study_anchors: tuple[list[str], Any]) -> None:
    """At 0.1 the draw picks blocks 0 and 1 (anchors 0, 1, 17), not block 2 (anchor 33): every other
    request keeps its cached response."""
    anchors, params = study_anchors
    keys = study_keys(anchors, params, replace(params.synth, targeted_negatives=0.1))
    changed = {k for k, (key, _) in keys.items() if key != STUDY_KEYS[k]}
    assert changed == {(0, "negative"), (1, "negative"), (17, "negative")}
    assert all(keys[k][1] in EDITS for k in changed) and keys[33, "negative"][1] in ("neg1", "neg2", "neg3", "neg4")
    everything = study_keys(anchors, params, replace(params.synth, targeted_negatives=1.0))
    assert all((instruction in EDITS) == (side == "negative") for (_, side), (_, instruction) in everything.items())


def test_the_share_is_the_share_of_negative_blocks_and_every_edit_is_drawn() -> None:
    cfg = SynthConfig(targeted_negatives=0.3, exemplar_block=1)
    drawn = Counter(synth.annotation_request("A dog runs.", "negative", POOLS, cfg, 42, True, block)[1]["instruction"]
                    for block in range(1000))
    targeted = sum(drawn[i] for i in EDITS)
    assert 250 <= targeted <= 350 and all(drawn[i] > 20 for i in EDITS)
    request, meta = synth.annotation_request("A dog runs.", "negative", POOLS, SynthConfig(targeted_negatives=1.0), 42,
                                             True, 0)
    instruction = POOLS.by_id()[meta["instruction"]]
    assert request.messages[0]["content"].endswith(instruction.text) and len(meta["exemplars"]) == 5
    assert {m["content"] for m in request.messages[1:-1:2]} <= {e.input for e in instruction.exemplars}


def test_targeted_settings_are_checked() -> None:
    synth.check_config(SynthConfig(n_exemplars=18), POOLS)  # the paper's four have 20 exemplars
    with pytest.raises(ValueError, match=r"synth.n_exemplars: 9 outside the allowed range \[0, 8\]"):
        synth.check_config(SynthConfig(n_exemplars=9, targeted_negatives=0.5), POOLS)  # ours have 8
    for profile in ("default", "paper", "study"):
        cfg = load_params(REPO / "params.yaml", profile=profile).synth
        assert cfg.targeted_negatives == 0 and not cfg.self_check and cfg.self_check_llm == {}


def test_every_control_key_reruns_synthesis() -> None:
    """dvc.yaml's synthesize stage declares each control's keys, so `dvc exp run -S` re-runs it."""
    import yaml

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["synthesize"]["do"]
    keys = ("targeted_negatives", "self_check", "self_check_llm", "self_check_min_positive",
            "self_check_max_negative", "self_check_retries")
    assert {f"synth.{k}" for k in keys} <= set(stage["params"])
    assert set(keys) <= set(SynthConfig.__dataclass_fields__)


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"targeted_negatives": 1.5}, r"synth\.targeted_negatives: 1\.5 outside the allowed range \[0, 1\]"),
        ({"self_check_min_positive": 6}, r"synth\.self_check_min_positive: 6\.0 outside the allowed range \[0, 5\]"),
        ({"self_check_retries": -1}, r"synth\.self_check_retries: -1 outside"),
        ({"self_check_llm": {"modle": "x"}}, r"synth\.self_check_llm\.modle: unknown key"),
        ({"self_check_llm": {"backend": "vllm"}}, r"synth\.self_check_llm\.backend: unknown value 'vllm'"),
    ],
)
def test_bad_control_settings_name_the_key(tmp_path: Path, overlay: dict[str, Any], message: str) -> None:
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["synth"].update(overlay)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_params(tmp_path / "params.yaml")


# --------------------------------------------------------------------------- self-check units


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("4", 4.0), (" 0 ", 0.0), ("5.", 5.0), ("3.5", 3.5), ("4/5", 4.0), ("Score: 2", 2.0), ('{"score": 1}', 1.0),
        ("7", None), ("-1", None), ("three", None), ("", None), (None, None), (REFUSAL_TEXT, None), ("NaN", None),
        ('{"score": 9}', None), ('{"rating": 4}', None), ("true", None), ("4 because they match", None),
        ("[3]", None), ("5/5 but 2", None),
    ],
)
def test_judge_answers_are_read_strictly(answer: str | None, score: float | None) -> None:
    assert parse_score(answer) == score


def test_thresholds_are_multicsrs_and_inclusive() -> None:
    cfg = SynthConfig()
    assert [verdict("positive", s, cfg) for s in (3.0, 2.5, 5.0)] == [None, "self_check", None]
    assert [verdict("negative", s, cfg) for s in (3.0, 3.5, 0.0)] == [None, "self_check", None]
    assert verdict("negative", None, cfg) == verdict("positive", None, cfg) == "self_check_unparsed"
    with pytest.raises(ValueError, match="expected one of"):
        verdict("pair", 3.0, cfg)


def test_the_judge_call_is_short_greedy_and_schema_bound_with_aids() -> None:
    plain, aided = judge_request("A dog runs.", "A cat sleeps.", False), judge_request("A dog runs.", "A cat sleeps.", True)
    assert plain.messages == ({"role": "system", "content": JUDGE_SYSTEM},
                              {"role": "user", "content": "Sentence 1: A dog runs.\nSentence 2: A cat sleeps."})
    assert plain.params == {"temperature": 0.0, "max_tokens": 16}
    assert aided.params["response_format"] == SCORE_SCHEMA


# --------------------------------------------------------------------------- pipelines (fake server)

ANIMALS = ("dog", "cat", "horse", "goat", "duck")
ANCHORS = [f"A {animal} is sleeping near the {place}." for animal in ANIMALS for place in ("river", "barn")]
JUNK = ("three", "7", "-1", "", REFUSAL_TEXT)


def attempt_of(body: dict[str, Any]) -> int:
    """A resample is 0.2 hotter per attempt (syncse.synth.requests._sampling)."""
    return round((body["temperature"] - 1.0) / 0.2)


def scripted(body: dict[str, Any]) -> str:
    """Annotations that carry their attempt; a judge that scores by the anchor's animal:
    dog passes, cat's first positive fails, horse's negatives always look like paraphrases,
    goat gets junk, duck's first negative cannot be read."""
    system = body["messages"][0]["content"]
    last = body["messages"][-1]["content"]
    if system == JUDGE_SYSTEM:
        anchor, text = re.match(r"Sentence 1: (.*)\nSentence 2: (.*)", last).groups()
        animal, positive = anchor.split()[1], text.startswith("In other words")
        take = int(re.search(r"take (\d)", text).group(1))
        if animal == "goat":
            return JUNK[take % len(JUNK)]
        if animal == "cat" and positive:
            return "2" if take == 0 else "5"
        if animal == "duck" and not positive:
            return "three" if take == 0 else "1"
        if animal == "horse" and not positive:
            return "5"
        return "4" if positive else "1"
    anchor = last.rstrip(".").lower()
    take = attempt_of(body)
    if any(i.text == system for i in POOLS.positive):
        return f"In other words, {anchor}, take {take}."
    if system == POOLS.by_id()["tneg_roles"].text:  # swap the animal and the place
        words = last.rstrip(".").split()
        words[1], words[-1] = words[-1], words[1]
        return " ".join(words) + "."
    return f"It is false that {anchor}, take {take}."


def run(llm: LLMConfig, cfg: SynthConfig, monkeypatch: pytest.MonkeyPatch) -> synth.SynthResult:
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS)
    with open_client(llm) as client:
        return synth.synthesize("partial", client, cfg, llm, 42, "unused")


def fake_llm(server: FakeOpenAIServer, cache: Path, **kwargs: Any) -> LLMConfig:
    return LLMConfig(backend="openai", model="fake-model", base_url=server.base_url, api_key_env="SYNCSE_TEST_KEY",
                     cache_dir=str(cache), backoff_base_s=0.01, timeout_s=2.0, progress=False, **kwargs)


def test_self_check_regenerates_then_drops_and_every_call_is_cached_and_charged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_partial=len(ANCHORS), exemplar_block=1, self_check=True, self_check_retries=2)
    with FakeOpenAIServer(scripted, api_key=KEY) as server:
        result = run(fake_llm(server, tmp_path / "on"), cfg, monkeypatch)
        paid = sum(server.log.attempts.values())
        again = run(fake_llm(server, tmp_path / "on"), cfg, monkeypatch)
        assert sum(server.log.attempts.values()) == paid  # a rerun pays nothing: judge calls are cached too
        off = run(fake_llm(server, tmp_path / "off"), replace(cfg, self_check=False), monkeypatch)
    m = result.metrics
    assert m["kept"] + sum(result.drops.values()) == m["requested"] == len(ANCHORS)
    kept = Counter(t.anchor.split()[1] for t in result.triplets)
    assert kept == {"dog": 2, "cat": 2, "duck": 2}
    assert result.drops == {"self_check_negative": 2, "self_check_unparsed": 2}
    assert m["dropped_self_check_negative"] == 2 and m["dropped_self_check_unparsed"] == 2
    cats = [t for t in result.triplets if " cat " in t.anchor]
    assert all(t.positive.endswith("take 1.") and t.meta["positive"]["self_check"] == 5.0 for t in cats)  # regenerated
    assert all(t.meta["negative"]["self_check"] == 1.0 for t in result.triplets)
    # resamples: cat positive once, duck negative once, horse negative twice, goat: junk on both sides each try
    assert m["resampled_positive_self_check"] == 2 and m["resampled_negative_self_check"] == 4
    assert m["resampled_positive_self_check_unparsed"] == 4 and m["resampled_negative_self_check_unparsed"] == 4 + 2
    assert m["requests"] == 2 * len(ANCHORS) + 16 + m["self_check_requests"]  # 16 regenerated sides
    assert m["self_check_requests"] == 2 * (2 + 3 + 4 + 6 + 3)  # judged sides: dog, cat, horse, goat, duck
    assert m["self_check_positive_score_5"] == 2 and m["self_check_negative_score_5"] == 6
    assert 0 < m["self_check_positive_pass_rate"] < 1 and m["self_check_completion_tokens"] > 0
    ledger = [json.loads(line) for line in (tmp_path / "on" / "ledger.jsonl").read_text().splitlines()]
    assert len(ledger) == paid == m["requests"]  # every judge call charged once
    assert again.metrics["self_check_cache_hits"] == again.metrics["self_check_requests"] == m["self_check_requests"]
    assert off.metrics["kept"] == len(ANCHORS) and not any(k.startswith("self_check_") for k in off.metrics)
    assert KEY not in json.dumps(m)


def test_each_side_is_resampled_at_most_reject_retries_times_though_the_tries_run_longer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`llm.reject_retries` bounds the requests of each side, not the pipeline's tries: a negative that copies a
    positive resampled at try 2 is rejected only then, and starts its own resamples a try late (README, partial)."""
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    dog, cat = "A dog is sleeping near the river.", "A cat is sleeping near the barn."
    sent: Counter[tuple[str, str]] = Counter()

    def copying(body: dict[str, Any]) -> str:
        anchor = body["messages"][-1]["content"]
        side = "positive" if any(body["messages"][0]["content"].endswith(i.text) for i in POOLS.positive) else "negative"
        sent[anchor, side] += 1
        if side == "positive" and (anchor == dog or attempt_of(body) == 0):
            return json.dumps({"sentence": anchor})  # a copy of the anchor: rejected
        return json.dumps({"sentence": "A cat is resting by the barn." if anchor == cat else "No dog is near the river."})

    tries: list[str] = []
    complete = ChatClient.complete

    def labelled(client: ChatClient, requests: Any, desc: str = "llm") -> Any:
        tries.append(desc)
        return complete(client, requests, desc)

    monkeypatch.setattr(ChatClient, "complete", labelled)
    cfg = SynthConfig(n_partial=2, exemplar_block=1)
    with FakeOpenAIServer(copying, api_key=KEY) as server, open_client(fake_llm(server, tmp_path)) as client:
        states, resampled = pipelines.annotate([dog, cat], client, cfg, POOLS, 42, True, 2, "partial")
    assert sent == {(dog, "positive"): 3, (dog, "negative"): 1, (cat, "positive"): 2, (cat, "negative"): 3}
    assert tries == [f"partial annotate (try {k})" for k in (1, 2, 3, 4)]  # cat's negative: tries 1, 3 and 4
    assert states[0]["positive"].reason == "copies_anchor" and states[1]["negative"].reason == "equals_positive"
    assert resampled == {"positive_copies_anchor": 3, "negative_equals_positive": 2}


def test_the_self_check_stops_at_the_budget_and_fails_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_partial=len(ANCHORS), exemplar_block=1, self_check=True)
    with FakeOpenAIServer(scripted, api_key=KEY) as server:
        annotation_only = run(fake_llm(server, tmp_path / "probe"), replace(cfg, self_check=False), monkeypatch)
        cap = annotation_only.metrics["total_tokens"] + 20  # the annotations fit, the judge calls do not
        with pytest.raises(BudgetExceeded, match="requested rows are missing"):
            run(fake_llm(server, tmp_path / "capped", max_budget_tokens=cap, max_in_flight=1), cfg, monkeypatch)


def test_a_judge_of_its_own_is_a_second_client_on_the_same_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`synth.self_check_llm` overlays `llm`: here another model name on the same server."""
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    models: Counter[str] = Counter()

    def counting(body: dict[str, Any]) -> str:
        models[body["model"], body["messages"][0]["content"] == JUDGE_SYSTEM] += 1
        return scripted(body)

    cfg = SynthConfig(n_partial=4, exemplar_block=1, self_check=True, self_check_llm={"model": "judge-model"})
    with FakeOpenAIServer(counting, api_key=KEY) as server:
        result = run(fake_llm(server, tmp_path), cfg, monkeypatch)
    assert set(models) == {("fake-model", False), ("judge-model", True)}
    assert models["judge-model", True] == result.metrics["self_check_requests"] > 0
    ledger = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == sum(models.values())


def test_targeted_negatives_go_through_the_filters_and_are_counted_by_instruction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_partial=len(ANCHORS), exemplar_block=1, targeted_negatives=1.0)
    with FakeOpenAIServer(scripted, api_key=KEY) as server:
        targeted = run(fake_llm(server, tmp_path / "t"), cfg, monkeypatch)
        paper = run(fake_llm(server, tmp_path / "p"), replace(cfg, targeted_negatives=0.0), monkeypatch)
    m = targeted.metrics
    drawn = Counter(t.meta["negative"]["instruction"] for t in targeted.triplets)
    assert set(drawn) <= set(EDITS) and m["kept"] == len(ANCHORS)  # a role swap is kept, not a copy
    assert {i: m[f"kept_negative_{i}"] for i in EDITS} == {i: drawn[i] for i in EDITS}
    assert all(m[f"kept_negative_neg{k}"] == 0 for k in range(1, 5))
    swaps = [t for t in targeted.triplets if t.meta["negative"]["instruction"] == "tneg_roles"]
    assert swaps and all(t.negative.split()[1] == t.anchor.rstrip(".").split()[-1] for t in swaps)
    assert sum(paper.metrics[f"kept_negative_neg{k}"] for k in range(1, 5)) == paper.metrics["kept"]
    assert all(paper.metrics[f"kept_negative_{i}"] == 0 for i in EDITS)


# --------------------------------------------------------------------------- embedded backend (real model)


def test_embedded_model_judges_its_own_triplets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real llama.cpp runtime (SmolLM2-135M, as the other embedded tests) under the score schema:
    every judge answer is `{"score": k}` with k a whole number 0-5, so every side judged is scored."""
    pytest.importorskip("xllamacpp")
    answers: list[tuple[ChatRequest, str | None, str | None]] = []  # (judge request, content, finish_reason)
    complete = ChatClient.complete

    def watched(client: ChatClient, requests: Any, desc: str = "llm") -> Any:
        results = complete(client, requests, desc)
        for request, result in zip(requests, results):
            if request.messages[0]["content"] == JUDGE_SYSTEM:
                raw = client.cache.get(client.key(request)) or {"choices": [{}]}
                answers.append((request, result.content, raw["choices"][0].get("finish_reason")))
        return results

    monkeypatch.setattr(ChatClient, "complete", watched)
    llm = LLMConfig(model="smollm2-135m", cache_dir=str(tmp_path / "cache"), model_dir=str(tmp_path), progress=False,
                    reject_retries=0)
    cfg = SynthConfig(n_partial=3, exemplar_block=3, n_exemplars=2, targeted_negatives=1.0, self_check=True,
                      self_check_retries=1)
    result = run(llm, cfg, monkeypatch)
    m = result.metrics
    assert m["kept"] + sum(result.drops.values()) == 3
    judged = m["self_check_positive_checked"] + m["self_check_negative_checked"]
    assert judged == m["self_check_requests"] == len(answers) > 0
    for request, content, finish in answers:
        assert request.params["response_format"] == SCORE_SCHEMA and finish == "stop", (content, finish)
        answer = json.loads(content)  # the schema, strictly: one key, a whole number in 0-5
        assert set(answer) == {"score"} and type(answer["score"]) is int and 0 <= answer["score"] <= 5, content
    assert m["self_check_positive_unparsed"] == m["self_check_negative_unparsed"] == 0
    assert m["dropped_self_check_unparsed"] == 0 and "self_check_unparsed" not in result.drops
    histogram = Counter(json.loads(content)["score"] for _, content, _ in answers)
    counted = {k: sum(m[f"self_check_{side}_score_{k}"] for side in synth.SIDES) for k in range(6)}
    assert counted == {k: histogram[k] for k in range(6)}  # every answer counted under its own score
    assert all(t.meta["negative"]["instruction"] in EDITS for t in result.triplets)
