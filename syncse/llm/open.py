"""A ready client from the `llm` config: the one place that knows every backend, above the modules
that implement them (`client`, `batch`, `embedded`), none of which imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from syncse.config import BACKENDS, LLMConfig
from syncse.llm.batch import BatchClient, BatchSettings
from syncse.llm.client import ChatClient, RetryPolicy, read_api_key
from syncse.llm.embedded import EmbeddedServer, ServerSettings, gguf_digest, gguf_namespace, resolve_gguf
from syncse.llm.ledger import LEDGER_FILE, BudgetTracker, SpendLedger

REPLAY_URL = "http://127.0.0.1:9/v1"  # llm.replay_only: never contacted (the discard port), the budget sends nothing


@contextlib.contextmanager
def open_client(cfg: LLMConfig) -> Iterator[ChatClient]:
    """A ready `ChatClient` for `cfg.backend`; starts and stops the embedded server if needed.
    With `cfg.replay_only` it only reads the cache: no server, no model file, no API key."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"llm.backend: unknown backend {cfg.backend!r}; expected one of {BACKENDS}")
    factor = cfg.batch_price_factor if cfg.backend == "openai-batch" else 1.0  # the ledger charges what is billed
    common = {
        "model": cfg.model,
        "cache_dir": cfg.cache_dir,
        "max_in_flight": cfg.max_in_flight,
        "retry": RetryPolicy(cfg.max_retries, cfg.backoff_base_s, cfg.backoff_max_s),
        "budget": BudgetTracker(cfg.max_budget_tokens, cfg.max_budget_usd, cfg.usd_per_1m_input * factor,
                                cfg.usd_per_1m_output * factor, SpendLedger(Path(cfg.cache_dir) / LEDGER_FILE),
                                cfg.replay_only),
        "timeout_s": cfg.timeout_s,
        "progress": cfg.progress,
        "max_pending": cfg.max_pending,
        "claim_stale_s": cfg.claim_stale_s,
        "claim_poll_s": cfg.claim_poll_s,
    }
    if cfg.replay_only:  # every backend's keys, read from the cache: the budget lets nothing through
        yield ChatClient(REPLAY_URL, api_key="replay-only", namespace=cache_namespace(cfg), **common)
        return
    if cfg.backend == "openai":
        yield ChatClient(cfg.base_url, api_key=read_api_key(cfg.api_key_env), namespace=cfg.base_url, **common)
        return
    if cfg.backend == "openai-batch":  # same cache keys as `openai`: a batch run and a chat run share responses
        settings = BatchSettings(cfg.batch_poll_s, cfg.batch_max_requests, cfg.batch_max_rounds)
        yield BatchClient(cfg.base_url, api_key=read_api_key(cfg.api_key_env), namespace=cfg.base_url,
                          batch=settings, **common)
        return
    gguf, digest = resolve_gguf(cfg.model, cfg.model_dir)
    settings = ServerSettings(cfg.n_threads, cfg.n_parallel, cfg.ctx_per_slot, cfg.cache_prompt)
    with EmbeddedServer(gguf, settings) as base_url:
        yield ChatClient(base_url, api_key="embedded", namespace=gguf_namespace(digest), **common)


def cache_namespace(cfg: LLMConfig) -> str:
    """The namespace `open_client(cfg)` keys its cache with, without starting anything: the base
    URL for the OpenAI backends, the model file's sha256 for the embedded one (a shipped model's
    from its declaration, so that reading its responses needs no model file)."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"llm.backend: unknown backend {cfg.backend!r}; expected one of {BACKENDS}")
    if cfg.backend == "embedded":
        return gguf_namespace(gguf_digest(cfg.model))
    return cfg.base_url
