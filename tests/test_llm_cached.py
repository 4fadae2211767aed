"""Dry looks into the response cache: `ChatClient.cached` and `cache_namespace` (used by
benchmarks/bench_targeted.py to read banked responses without sending a request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncse.config import LLMConfig
from syncse.llm import EMBEDDED_MODELS, ChatClient, ChatRequest, ResponseCache, cache_namespace, gguf_namespace, open_client
from syncse.testing import FakeOpenAIServer

KEY = "sk-test-cached-0123456789"


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"seed": i}) for i in range(n)]


def test_cached_reads_hits_and_never_sends_a_miss(tmp_path: Path) -> None:
    with FakeOpenAIServer(api_key=KEY) as server:
        chat = ChatClient(server.base_url, "fake-model", KEY, tmp_path, "fake", progress=False)
        assert [chat.cached(r) for r in requests(3)] == [None, None, None]
        assert sum(server.log.attempts.values()) == 0  # a miss is not sent
        sent = chat.complete(requests(2))
        looked = [chat.cached(r) for r in requests(3)]
        assert sum(server.log.attempts.values()) == 2  # the hits were read, not sent again
    assert [r.content for r in looked[:2]] == [r.content for r in sent] and all(r.cached for r in looked[:2])
    assert looked[2] is None
    assert not list(tmp_path.glob("*/*.lock"))  # nothing claimed


def test_cache_namespace_finds_what_open_client_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    with FakeOpenAIServer(api_key=KEY) as server:
        cfg = LLMConfig(backend="openai", model="fake-model", base_url=server.base_url, api_key_env="SYNCSE_TEST_KEY",
                        cache_dir=str(tmp_path / "cache"), progress=False)
        with open_client(cfg) as chat:
            sent = chat.complete(requests(2))
    reader = ChatClient("http://127.0.0.1:9/v1", cfg.model, "unused", cfg.cache_dir, cache_namespace(cfg))
    assert [reader.cached(r).content for r in requests(2)] == [r.content for r in sent]  # type: ignore[union-attr]
    other = ChatClient("http://127.0.0.1:9/v1", cfg.model, "unused", cfg.cache_dir, "another-server")
    assert other.cached(requests(1)[0]) is None  # the namespace is part of the key


def test_cache_namespace_is_the_embedded_clients(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    cfg = LLMConfig(backend="embedded", model="smollm2-135m", model_dir=str(tmp_path), cache_dir=str(tmp_path / "c"),
                    progress=False)
    with open_client(cfg) as chat:
        assert chat.namespace == cache_namespace(cfg)
    with pytest.raises(ValueError, match="openai-batch"):
        cache_namespace(LLMConfig(backend="vllm"))


def test_replay_only_opens_no_server_and_no_model_file(tmp_path: Path) -> None:
    """An embedded study replays its bank without the model: the namespace is the shipped model's declared
    digest (the one `resolve_gguf` checks the assembled file against), nothing is assembled, a miss is not sent."""
    cfg = LLMConfig(backend="embedded", model="qwen2.5-coder-1.5b", model_dir=str(tmp_path / "models"),
                    cache_dir=str(tmp_path / "cache"), replay_only=True, progress=False)
    namespace = gguf_namespace(EMBEDDED_MODELS["qwen2.5-coder-1.5b"].sha256)
    assert cache_namespace(cfg) == namespace
    banked = requests(2)[0]
    writer = ChatClient("http://127.0.0.1:9/v1", cfg.model, "unused", cfg.cache_dir, namespace)
    writer.cache.put(writer.key(banked), {"choices": [{"message": {"content": "banked"}}], "usage": {}})
    with open_client(cfg) as chat:
        assert chat.namespace == namespace
        first, second = chat.complete(requests(2))
    assert first.content == "banked" and first.cached
    assert second.error == "budget" and chat.stats.skipped_budget == 1  # the miss, never sent
    assert not (tmp_path / "models").exists()  # no 1.1 GB model assembled to read its responses


def test_the_cache_counts_its_responses_and_llama_cpp_hours_per_generator(tmp_path: Path) -> None:
    """`scripts/bank_status.py`: a bank's generation hours are summed from the responses themselves."""
    with FakeOpenAIServer(api_key=KEY) as server:
        sent = ChatClient(server.base_url, "fake-model", KEY, tmp_path, "fake", progress=False).complete(requests(3))
    day = 1_764_979_200  # 2025-12-06 00:00 UTC
    for i, ms in enumerate((1_800_000.0, 5_400_000.0)):  # as llama.cpp's server writes them: half an hour, 1.5 h
        ResponseCache(tmp_path).put(f"{i:064x}", {"model": "/models/qwen-1.5b.gguf", "created": day + i * 86_400,
                                                  "usage": {"completion_tokens": 10 + i},
                                                  "timings": {"prompt_ms": ms / 3, "predicted_ms": ms * 2 / 3}})
    fake, llama = ResponseCache(tmp_path).generators()  # by name
    assert llama == {"generator": "qwen-1.5b.gguf", "responses": 2, "completion tokens": 21, "llama.cpp hours": 2.0,
                     "first": "2025-12-06", "last": "2025-12-07"}
    assert fake["generator"] == "fake-model" and fake["responses"] == 3 and fake["llama.cpp hours"] == 0.0
    assert fake["completion tokens"] == sum(r.completion_tokens for r in sent) > 0
