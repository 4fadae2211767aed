"""The Batch API backend end to end against the fake server: files, polling, expiry, partial
failure, the half price in the one ledger, and kill -9 between submit and collect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncse.config import LLMConfig
from syncse.llm import LEDGER_FILE, BudgetTracker, ChatClient, ChatRequest, RetryPolicy, SpendLedger, open_client
from syncse.llm.batch import BATCH_JOURNAL, ENDPOINT, BatchClient, BatchSettings
from syncse.testing import FakeOpenAIServer

KEY = "sk-batch-SECRET-31415"
FAST = BatchSettings(poll_s=0.01, max_requests=10)


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"seed": i}) for i in range(n)]


def expected(n: int) -> list[str]:
    return [f"Put differently: sentence number {i}" for i in range(n)]


def batch_client(server: FakeOpenAIServer, cache: Path, settings: BatchSettings = FAST) -> BatchClient:
    return BatchClient(server.base_url, "fake-model", KEY, cache, "fake", progress=False, batch=settings,
                       retry=RetryPolicy(3, 0.01, 0.05))


def test_batches_fill_the_shared_cache_at_the_batch_price(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with FakeOpenAIServer(api_key=KEY, batch_polls=3) as server:
        cfg = LLMConfig(backend="openai-batch", model="fake-model", base_url=server.base_url,
                        api_key_env="SYNCSE_TEST_KEY", cache_dir=str(tmp_path), usd_per_1m_input=2.0,
                        usd_per_1m_output=4.0, batch_price_factor=0.5, batch_poll_s=0.01, batch_max_requests=10,
                        progress=False)
        with open_client(cfg) as client:
            results = client.complete(requests(25))
        assert [r.content for r in results] == expected(25) and not any(r.cached for r in results)
        batches = list(server.batches.values())
        assert [b["request_counts"]["total"] for b in batches] == [10, 10, 5]  # the file cap respected
        assert {(b["endpoint"], b["completion_window"]) for b in batches} == {(ENDPOINT, "24h")}
        assert set(server.log.submitted.values()) == {1} and len(server.log.submitted) == 25
        assert server.log.bad_auth == 0
        chat = ChatClient(server.base_url, "fake-model", KEY, tmp_path, server.base_url, progress=False)
        again = chat.complete(requests(25))  # the chat backend finds the batch's answers under its own keys
        assert [r.content for r in again] == expected(25) and chat.stats.cache_hits == 25
        assert sum(server.log.attempts.values()) == 25  # each answered once, inside its batch
    ledger = SpendLedger(tmp_path / LEDGER_FILE)
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    assert ledger.usd == pytest.approx((prompt * 1.0 + completion * 2.0) / 1e6)  # half of 2.0 and 4.0
    assert KEY not in (tmp_path / BATCH_JOURNAL).read_text()


def test_expired_and_failed_batches_resubmit_only_their_missing_requests(tmp_path: Path) -> None:
    outcomes = {0: "expired", 1: "failed"}  # then every batch completes
    with FakeOpenAIServer(api_key=KEY, batch_outcome=lambda n: outcomes.get(n, "completed")) as server:
        results = batch_client(server, tmp_path).complete(requests(20))
        first, second = (json.loads(server.files[server.batches[b]["input_file_id"]].splitlines()[0])["custom_id"]
                         for b in ("batch_000000", "batch_000001"))
    assert [r.content for r in results] == expected(20)
    counts = server.log.submitted
    assert sorted(counts.values()) == [1] * 5 + [2] * 15  # expired: its answered half not again; failed: all again
    assert counts[first] == 1 and counts[second] == 2


def test_per_request_errors_are_resubmitted_and_a_lasting_failure_is_reported(tmp_path: Path) -> None:
    first_try_500 = lambda key, attempt: "500" if attempt == 0 and int(key[:2], 16) % 2 else "ok"  # noqa: E731
    with FakeOpenAIServer(faults=first_try_500, api_key=KEY) as server:
        results = batch_client(server, tmp_path / "a").complete(requests(20))
        failed_once = server.log.served["500"]
    assert [r.content for r in results] == expected(20) and 0 < failed_once < 20
    assert sorted(server.log.submitted.values()) == [1] * (20 - failed_once) + [2] * failed_once
    with FakeOpenAIServer(api_key=KEY, batch_outcome=lambda n: "failed") as server:
        client = batch_client(server, tmp_path / "b", BatchSettings(poll_s=0.01, max_rounds=2))
        results = client.complete(requests(3))
    assert [r.error for r in results] == ["failed: batch failed: invalid_request"] * 3
    assert set(server.log.submitted.values()) == {2} and client.stats.failed == 3


def test_a_reached_cap_submits_nothing(tmp_path: Path) -> None:
    with FakeOpenAIServer(api_key=KEY) as server:
        for cap, n in ((None, 4), (1, 6)):  # 4 answers paid into the ledger, then a cap already reached
            budget = BudgetTracker(max_tokens=cap, ledger=SpendLedger(tmp_path / LEDGER_FILE))
            capped = BatchClient(server.base_url, "fake-model", KEY, tmp_path, "fake", progress=False, batch=FAST,
                                 budget=budget)
            results = capped.complete(requests(n))
    assert [r.error for r in results] == [None] * 4 + ["budget"] * 2
    assert len(server.log.submitted) == 4 and budget.exhausted


DRIVER = """
import sys
from syncse.llm import ChatRequest
from syncse.llm.batch import BatchClient, BatchSettings
reqs = [ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"seed": i}) for i in range(25)]
BatchClient(sys.argv[1], "fake-model", sys.argv[3], sys.argv[2], "fake", progress=False,
            batch=BatchSettings(poll_s=0.02, max_requests=10)).complete(reqs)
"""


@pytest.mark.parametrize("journal_lost", [False, True], ids=["after-journal", "before-journal"])
def test_kill_9_between_submit_and_collect_submits_nothing_twice(tmp_path: Path, journal_lost: bool) -> None:
    """Killed while its 3 batches run; restarted, it collects them. `before-journal` also drops
    the `submitted` lines, as a kill right after `batches.create` would: the batches are found by
    their input file and adopted, not created again."""
    journal = tmp_path / BATCH_JOURNAL
    with FakeOpenAIServer(api_key=KEY) as server:
        server.hold_batches.set()  # the batches stay in progress until released
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, server.base_url, str(tmp_path), KEY])
        deadline = time.time() + 60
        while (journal.exists() and journal.read_text().count('"submitted"') < 3) or not journal.exists():
            assert time.time() < deadline and driver.poll() is None
            time.sleep(0.02)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        if journal_lost:
            kept = [line for line in journal.read_text().splitlines() if '"submitted"' not in line]
            journal.write_text("".join(line + "\n" for line in kept))
        server.hold_batches.clear()
        resumed = batch_client(server, tmp_path)
        results = resumed.complete(requests(25))
    assert [r.content for r in results] == expected(25)
    assert len(server.batches) == 3 and server.log.uploads == 3
    assert len(server.log.submitted) == 25 and set(server.log.submitted.values()) == {1}
    assert sum(server.log.attempts.values()) == 25
    assert resumed.stats.sent == 0  # the resumed run submitted nothing of its own
