"""The pipelines end to end against a fake API and the tiny embedded model: nothing is lost, every
drop is counted, reruns are free, the budget holds, and the paper's cleaning keeps every NLI row."""

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
from syncse.data import NliTriplet, read_triplets, write_triplets
from syncse.llm import BudgetExceeded, open_client
from syncse.synth import pipelines
from syncse.testing import FakeOpenAIServer

ANCHORS = [f"A {animal} is {verb} near the {place}." for animal in ("dog", "cat", "horse", "goat")
           for verb in ("sleeping", "running") for place in ("river", "barn", "road")]
KEY = "sk-synth-SECRET-42"
POOLS = synth.load_pools()
PAPER_FILTERS = ["failed", "max_words"]


def test_bad_config_names_key_and_range() -> None:
    synth.check_config(SynthConfig(shot_sentences=10, n_exemplars=18), POOLS)  # the paper's sizes fit the pools
    synth.check_config(SynthConfig(shot_sentences=30, shot_pool=0), POOLS)
    with pytest.raises(ValueError, match=r"synth.exemplar_block: 0 outside"):
        synth.check_config(SynthConfig(exemplar_block=0), POOLS)
    with pytest.raises(ValueError, match=r"synth.shot_sentences: 11 outside the allowed range \[1, 10\]"):
        synth.check_config(SynthConfig(shot_sentences=11), POOLS)  # the first ten of each genre
    with pytest.raises(ValueError, match=r"synth.shot_pool: 31 outside the allowed range \[0, 30\]"):
        synth.check_config(SynthConfig(shot_pool=31), POOLS)
    with pytest.raises(ValueError, match=r"synth.filters: unknown filter 'dedup'"):
        synth.check_config(SynthConfig(filters=["dedup"]), POOLS)
    with pytest.raises(ValueError, match="expected one of"):
        synth.synthesize("wiki", None, SynthConfig(), LLMConfig(), 42, "data")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- pipelines (fake server)


def side_of(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    return "positive" if any(i.text in system for i in POOLS.positive) else "negative"


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


def accounted(result: synth.SynthResult, distinct: bool = True) -> None:
    """Every requested anchor is kept once or dropped once; nothing is duplicated (unless the
    anchors themselves repeat, as NLI premises do without the duplicate filter)."""
    anchors = [t.anchor for t in result.triplets]
    assert len(anchors) == len(set(anchors)) or not distinct
    assert result.metrics["kept"] + sum(result.drops.values()) == result.metrics["requested"]
    assert set(result.metrics) >= {f"dropped_{r}" for r in synth.DROP_REASONS}
    assert all(isinstance(v, (int, float)) for v in result.metrics.values())


def test_partial_through_faults_loses_nothing_and_reruns_from_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS + ANCHORS[:3] + ["word " * 40])
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


@pytest.mark.parametrize("name", ["partial", "scratch"])
def test_a_larger_size_extends_the_bank_and_resends_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scale study's bank is sized by a first measurement and grown later: a run asking for more
    anchors keeps every earlier row, first and unchanged, and sends no request the smaller run sent."""
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    small, large = (SynthConfig(n_partial=n, n_scratch=n, sentences_per_call=5) for n in (6, 12))
    with FakeOpenAIServer(responder, api_key=KEY) as server:
        llm = fake_llm(server, tmp_path / "cache")
        first = run(name, llm, small)
        sent = Counter(server.log.attempts)
        second = run(name, llm, large)
    assert len(second.triplets) > len(first.triplets) > 0
    assert [asdict_row(t) for t in second.triplets[:len(first.triplets)]] == [asdict_row(t) for t in first.triplets]
    assert second.metrics["cache_hits"] >= len(sent)  # every request of the smaller run, answered from the cache
    assert all(server.log.attempts[key] == count for key, count in sent.items()) and len(server.log.attempts) > len(sent)


def asdict_row(t: Any) -> tuple[str, str, str | None]:
    return (t.anchor, t.positive, t.negative)


def test_one_budget_across_stages_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap bounds what both stages and every resumed run pay together (the ledger beside the
    cache); reaching it fails the stage with what was spent, what is missing and how to go on."""
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS)
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


def test_replay_only_sends_nothing_and_fails_with_what_the_cache_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`llm.replay_only` (the scale study's stages): a cache that holds every response replays the same
    triplets with no server, no key; one short of rows fails the stage, naming the count, sending nothing."""
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_partial=12, exemplar_block=4)
    with FakeOpenAIServer(responder, api_key=KEY) as server:
        banked = run("partial", fake_llm(server, tmp_path), cfg)
        sent = sum(server.log.attempts.values())
        monkeypatch.delenv("SYNCSE_TEST_KEY")  # replaying needs no key
        replayed = run("partial", fake_llm(server, tmp_path, replay_only=True), cfg)
        assert [asdict_row(t) for t in replayed.triplets] == [asdict_row(t) for t in banked.triplets]
        assert replayed.metrics["cache_hits"] == replayed.metrics["requests"] > 0
        with pytest.raises(BudgetExceeded, match=r"llm.replay_only is true and 4 of 16 requested rows need responses"):
            run("partial", fake_llm(server, tmp_path, replay_only=True), replace(cfg, n_partial=16))
        assert sum(server.log.attempts.values()) == sent  # nothing was sent by either replay


def test_responses_without_usage_are_charged_from_a_local_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with FakeOpenAIServer(responder, api_key=KEY, usage=False) as server, pytest.raises(BudgetExceeded):
        run("partial", fake_llm(server, tmp_path, max_budget_tokens=1500, max_in_flight=1),
            SynthConfig(n_partial=len(ANCHORS), exemplar_block=4))
    ledger = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert ledger and all(e["estimated"] and e["prompt_tokens"] > 20 and e["completion_tokens"] > 0 for e in ledger)


def seeded_responder(body: dict[str, Any]) -> str:
    """Annotations that carry the request's sampling seed, so independent samples differ."""
    anchor = body["messages"][-1]["content"].rstrip(".")
    return f"Sample {body['seed']}: {anchor.lower()}, positively." if side_of(body) == "positive" else f"No {anchor.lower()}."


def test_the_papers_cleaning_annotates_every_nli_row_duplicates_included(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the duplicate filter partial reads one premise per NLI row, as the paper (275,601
    rows), so a target of every row is reachable; a repeated premise gets its own sample."""
    rows = [NliTriplet(a, "e", "c") for a in ANCHORS[:8] * 2 + ANCHORS[8:]]
    monkeypatch.setattr(pipelines, "load_nli_triplets", lambda root: rows)
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: list(dict.fromkeys(r.premise for r in rows)))
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with FakeOpenAIServer(seeded_responder, api_key=KEY) as server:
        paper = run("partial", fake_llm(server, tmp_path / "paper"),
                    SynthConfig(n_partial=len(rows), filters=PAPER_FILTERS, exemplar_block=1))
        default = run("partial", fake_llm(server, tmp_path / "default"), SynthConfig(n_partial=len(rows)))
    accounted(paper, distinct=False)
    assert paper.metrics["kept"] == paper.metrics["pool_sentences"] == len(rows) and paper.metrics["cache_hits"] == 0
    assert Counter(t.anchor for t in paper.triplets) == Counter(r.premise for r in rows)
    twice = [t.positive for t in paper.triplets if t.anchor == ANCHORS[0]]
    assert len(twice) == 2 and twice[0] != twice[1]
    accounted(default)  # with the duplicate filter: each premise once, the rest of the target a shortfall
    assert default.metrics["kept"] == default.metrics["pool_sentences"] == len(ANCHORS)
    assert default.drops["shortfall"] == default.metrics["dropped_shortfall"] == 8


LONG = [f"A young {who} in a red shirt is {verb} on a wooden bench in the {place}." for who in ("man", "woman", "boy")
        for verb in ("sleeping", "reading") for place in ("park", "square")]


def concise_or_negated(body: dict[str, Any]) -> str:
    """Positives that only drop the word `wooden`; negatives that only add `not`."""
    anchor = body["messages"][-1]["content"]
    return anchor.replace(" wooden", "") if side_of(body) == "positive" else anchor.replace(" is ", " is not ", 1)


def test_the_copy_filter_keeps_concise_positives_under_instruction_4_and_negations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: LONG)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with FakeOpenAIServer(concise_or_negated, api_key=KEY) as server:
        result = run("partial", fake_llm(server, tmp_path), SynthConfig(n_partial=len(LONG), exemplar_block=1))
    accounted(result)
    assert result.triplets and all(t.meta["positive"]["instruction"] == "pos4" for t in result.triplets)
    assert all(" is not " in t.negative and "wooden" not in t.positive for t in result.triplets)
    assert result.drops == {"positive_copies_anchor": len(LONG) - len(result.triplets)} and result.rejected
    assert all(r["side"] == "positive" for r in result.rejected)


def test_scratch_generates_parses_and_annotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_scratch=12, sentences_per_call=5, overgenerate=1.5)
    with FakeOpenAIServer(responder, hostile_faults, timeout_sleep_s=1.0, api_key=KEY) as server:
        result = run("scratch", fake_llm(server, tmp_path), cfg)
    accounted(result)
    assert result.metrics["generation_calls"] == 4 and result.metrics["sentences_dropped_header"] >= 3
    assert all(t.source == "scratch" and "genre" in t.meta["scratch"] for t in result.triplets)
    assert result.drop_report() == sorted(result.drop_report(), key=lambda row: -row["count"])


def test_scratch_drops_copies_of_the_shot_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    example = POOLS.genres[0].examples[0].text
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
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS[::5])
    llm = LLMConfig(model="smollm2-135m", cache_dir=str(tmp_path / "cache"), model_dir=str(tmp_path), progress=False)
    cfg = replace(SynthConfig(n_partial=4, exemplar_block=4), n_exemplars=3)
    result = run("partial", llm, cfg)
    accounted(result)
    assert result.metrics["completion_tokens"] > 0 and result.triplets
    assert Counter(t.source for t in result.triplets) == {"partial": len(result.triplets)}


def test_notebook_runs_through_jupytext_and_papermill(tmp_path: Path) -> None:
    """The DVC command, on the tiny SmolLM2 model: triplets, metrics and config come out."""
    import os
    import shutil
    import signal
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
    with subprocess.Popen(cmd, shell=True, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as done:  # a group of its own: a timeout also stops the kernel
        try:
            stderr = done.communicate(timeout=240)[1]
        except subprocess.TimeoutExpired:
            os.killpg(done.pid, signal.SIGKILL)  # else papermill's kernel runs on, a core taken from the tests after it
            raise
    assert done.returncode == 0, stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics/synth/scratch.json").read_text())
    assert metrics["requested"] == 3 and metrics["kept"] == len(read_triplets(tmp_path / "artifacts/synth/scratch.jsonl"))
    assert "drop" in (tmp_path / "out.ipynb").read_text().lower()
