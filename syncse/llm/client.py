"""The chat client: `ChatClient` speaks the OpenAI chat-completions API through the `openai` package,
to OpenAI itself, to any compatible server (vLLM, llama.cpp, Ollama) or to the embedded runtime
(`syncse.llm.embedded`); `syncse.llm.batch.BatchClient` is the same client over OpenAI's Batch API.

Robustness contract of `ChatClient.complete` (and `stream`, which it uses):
- at most `max_in_flight` requests at once (a thread pool, so it also runs inside a notebook's
  event loop), and at most `max_pending` taken from the input ahead of the results yielded, so
  memory stays flat however many requests a stage streams;
- several workers (processes, or machines sharing the cache folder) never send one request twice:
  a request is claimed by its content hash (`RequestClaims`, an O_EXCL lock file) before it is
  sent, and one held by another worker is read from the cache once stored (or taken over if that
  worker died);
- 408/409/429, every 5xx but 501/505, timeouts, connection errors and malformed bodies are
  retried with exponential backoff and equal jitter, honouring `Retry-After` / `retry-after-ms`;
- every valid response is stored in a content-addressed cache (one file per request, written to
  a temporary file, fsynced and renamed), so a killed run loses at most the requests in flight
  and a rerun pays nothing for what it already has;
- every paid response is recorded in a durable ledger beside the cache (`SpendLedger`), shared by
  every stage, resumed run and concurrent worker using that cache, so an optional cap (tokens or
  USD) bounds the total: once it is reached the remaining requests come back with
  `error="budget"` and `BudgetTracker.exhausted` is set (the synthesis stage then fails loudly);
- the API key is read from the environment by name, kept only inside the `openai` client, and
  never enters a cache key, a log line, a repr or an artifact; server error text is scrubbed of it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from syncse.llm.cache import ResponseCache
from syncse.llm.claims import RequestClaims
from syncse.llm.errors import LLMError, MalformedResponse
from syncse.llm.ledger import BudgetTracker
from syncse.llm.requests import ChatRequest, ChatResult, sha256_json, token_counts, validate_completion
from syncse.progress import progress_bar

logger = logging.getLogger(__name__)

FATAL_STATUS = frozenset({401, 403, 404})  # every later request would fail the same way
PERMANENT_5XX = frozenset({501, 505})  # not implemented / HTTP version: retrying cannot help
SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+\S+)")


def is_retryable(status: int) -> bool:
    """408 (timeout), 409 (conflict), 429 (rate limit) and transient 5xx are worth another try."""
    return status in (408, 409, 429) or (500 <= status < 600 and status not in PERMANENT_5XX)


@dataclass
class ClientStats:
    """Counters for the metrics file (all requests of one client's lifetime)."""

    requests: int = 0
    cache_hits: int = 0
    sent: int = 0  # HTTP attempts, retries included
    retries: int = 0
    failed: int = 0
    skipped_budget: int = 0
    prompt_tokens: int = 0  # over all results, cached ones included
    completion_tokens: int = 0
    retries_by_cause: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: attempt k waits U(0.5, 1) * min(cap, base * 2**k).

    A `Retry-After` header (seconds or HTTP date; or `retry-after-ms`) overrides the computed
    delay, capped at `max_delay_s * 10`.
    """

    max_retries: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to sleep before retry number `attempt` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s * 10)
        return rng.uniform(0.5, 1.0) * min(self.max_delay_s, self.base_delay_s * 2**attempt)


class ChatClient:
    """Concurrent, retrying, caching, budgeted chat-completions client.

    Args:
        base_url: the server's API root, e.g. `https://api.openai.com/v1`.
        model: model name sent in every body.
        api_key: the secret; kept only inside the `openai` client.
        cache_dir: folder of the content-addressed response cache.
        namespace: what identifies the server side in cache keys (a URL or a model-file hash;
            never the key).
        max_in_flight: concurrent requests at most.
        retry: the backoff policy.
        budget: the spending cap (None: unlimited).
        timeout_s: per-attempt HTTP timeout.
        progress: show a tqdm bar with rate and ETA.
        max_pending: requests taken from the input but not yet yielded, at most (at least
            `max_in_flight`): memory stays flat however many requests a stage streams.
        claim_stale_s: a worker's claim on a request not refreshed for this long is taken over.
        claim_poll_s: how often to look for a request another worker is sending.

    Example:
        >>> client = ChatClient("http://127.0.0.1:8000/v1", "m", "k", ".cache/llm", "local")
        >>> client.complete([ChatRequest(({"role": "user", "content": "Hi"},))])[0].content
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        cache_dir: str | Path,
        namespace: str,
        max_in_flight: int = 4,
        retry: RetryPolicy | None = None,
        budget: BudgetTracker | None = None,
        timeout_s: float = 120.0,
        progress: bool = True,
        max_pending: int = 256,
        claim_stale_s: float = 600.0,
        claim_poll_s: float = 1.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.model = model
        self.namespace = namespace
        self.max_in_flight = max_in_flight
        self.retry = retry or RetryPolicy()
        self.budget = budget or BudgetTracker()
        self.progress = progress
        self.cache = ResponseCache(cache_dir)
        self.claims = RequestClaims(cache_dir, claim_stale_s)
        self.max_pending = max(max_pending, max_in_flight)
        self.claim_poll_s = claim_poll_s
        self.stats = ClientStats()
        self._lock = threading.Lock()
        self._fatal: LLMError | None = None
        self._openai = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s)

    def __repr__(self) -> str:
        return f"ChatClient(model={self.model!r}, namespace={self.namespace!r}, max_in_flight={self.max_in_flight})"

    def key(self, request: ChatRequest) -> str:
        """The cache key: sha256 of namespace and body (never the API key)."""
        return sha256_json({"namespace": self.namespace, "body": request.body(self.model)})

    def cached(self, request: ChatRequest) -> ChatResult | None:
        """The cached result of `request`, or None on a miss; never sends, claims or charges
        (a dry look at what a run would reuse, e.g. to cost the rest of a partly banked run)."""
        body = self.cache.get(self.key(request))
        return None if body is None else self._result(body, request, cached=True)

    def complete(self, requests: Sequence[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Run `requests` concurrently; results come back in the same order.

        Raises:
            LLMError: the server answered 401/403/404 (every other request would fail too).
        """
        return list(self.stream(requests, desc, total=len(requests)))

    def stream(self, requests: Iterable[ChatRequest], desc: str = "llm", total: int | None = None) -> Iterator[ChatResult]:
        """Results of `requests` in their order, taking from the input only `max_pending` ahead of
        what was yielded: a generator of a million requests runs in constant memory.

        A request another worker has claimed is not sent: its result is read from the cache once
        that worker has stored it (or sent here, if that worker died or gave up).

        Raises:
            LLMError: the server answered 401/403/404 (every other request would fail too).
        """
        source = iter(requests)
        window: deque[tuple[ChatRequest, Future[ChatResult | None]]] = deque()
        pool = ThreadPoolExecutor(max_workers=self.max_in_flight)
        try:
            with progress_bar(total=total, desc=desc, unit="req", disable=not self.progress) as bar:
                while True:
                    while len(window) < self.max_pending and (request := next(source, None)) is not None:
                        window.append((request, pool.submit(self._one, request)))
                        with self._lock:
                            self.stats.requests += 1
                    if not window:
                        break
                    request, future = window.popleft()
                    result = future.result()
                    yield result if result is not None else self._await_other_worker(request)
                    bar.update(1)
        finally:  # on Ctrl-C, an error or an abandoned generator, queued requests are dropped
            pool.shutdown(wait=True, cancel_futures=True)
        if self._fatal is not None:
            raise self._fatal

    def _await_other_worker(self, request: ChatRequest) -> ChatResult:
        """The result of a request claimed by another worker: from the cache once it is there, or
        sent here once the claim is gone without a response (that worker gave up or died)."""
        key = self.key(request)
        while True:
            cached = self.cache.get(key)
            if cached is not None:
                with self._lock:
                    self.stats.cache_hits += 1
                return self._result(cached, request, cached=True)
            if not self.claims.held(key):
                result = self._one(request)
                if result is not None:
                    return result
            time.sleep(self.claim_poll_s)

    def _one(self, request: ChatRequest) -> ChatResult | None:
        """One request's result: cached, sent (under our claim), or None if another worker holds it."""
        key = self.key(request)
        cached = self.cache.get(key)
        if cached is not None:
            with self._lock:
                self.stats.cache_hits += 1
            return self._result(cached, request, cached=True)
        if self._fatal is not None:
            return ChatResult(error="failed: fatal")
        if not self.budget.allow():
            with self._lock:
                self.stats.skipped_budget += 1
            return ChatResult(error="budget")
        if not self.claims.acquire(key):
            return None
        try:
            cached = self.cache.get(key)  # its last owner may have stored it between our look and our claim
            if cached is not None:
                with self._lock:
                    self.stats.cache_hits += 1
                return self._result(cached, request, cached=True)
            response = self._send_with_retries(request, key)
            if isinstance(response, ChatResult):
                return response
            result = self._result(response, request, cached=False)
            self.budget.charge(result.prompt_tokens, result.completion_tokens, key, result.estimated)
            self.cache.put(key, response)
            return result
        finally:
            self.claims.release(key)

    def _send_with_retries(self, request: ChatRequest, key: str) -> dict[str, Any] | ChatResult:
        rng = random.Random()
        for attempt in range(self.retry.max_retries + 1):
            self.claims.touch(key)
            with self._lock:
                self.stats.sent += 1
            try:
                return self._send(request)
            except openai.APIStatusError as err:
                if err.status_code in FATAL_STATUS:
                    message = scrub(shorten(err.message), self._openai.api_key)
                    self._fatal = LLMError(f"server refused with HTTP {err.status_code}: {message}")
                    return ChatResult(error=f"failed: HTTP {err.status_code}")
                if not is_retryable(err.status_code):
                    return self._give_up(f"HTTP {err.status_code}")
                cause, retry_after = f"HTTP {err.status_code}", parse_retry_after(err.response.headers)
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                cause, retry_after = type(err).__name__, None
            except MalformedResponse as err:
                cause, retry_after = f"malformed: {err}", None
            if attempt == self.retry.max_retries:
                return self._give_up(cause)
            wait = self.retry.delay(attempt, retry_after, rng)
            with self._lock:
                self.stats.retries += 1
                label = cause.split(":")[0]
                self.stats.retries_by_cause[label] = self.stats.retries_by_cause.get(label, 0) + 1
            logger.debug("retry %d after %s in %.2fs", attempt + 1, cause, wait)
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def _send(self, request: ChatRequest) -> dict[str, Any]:
        raw = self._openai.chat.completions.with_raw_response.create(**request.body(self.model))
        try:
            body = raw.http_response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MalformedResponse("body is not JSON") from None
        validate_completion(body)
        return body

    def _give_up(self, cause: str) -> ChatResult:
        with self._lock:
            self.stats.failed += 1
        logger.warning("request failed after retries: %s", cause)
        return ChatResult(error=f"failed: {cause}")

    def _result(self, body: dict[str, Any], request: ChatRequest, cached: bool) -> ChatResult:
        message = body["choices"][0]["message"]
        prompt_tokens, completion_tokens, estimated = token_counts(body, request)
        result = ChatResult(message.get("content"), message.get("refusal"), None, prompt_tokens, completion_tokens,
                            cached, estimated)
        with self._lock:
            self.stats.prompt_tokens += result.prompt_tokens
            self.stats.completion_tokens += result.completion_tokens
        return result


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), else None."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def shorten(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters, marked with "..." when cut (server error text in a message)."""
    return text if len(text) <= limit else text[:limit] + "..."


def scrub(text: str, secret: str | None) -> str:
    """`text` without the API key or anything shaped like one (servers echo bad keys in 401s)."""
    if secret:
        text = text.replace(secret, "***")
    return SECRET_PATTERN.sub("***", text)


def read_api_key(env_var: str) -> str:
    """The API key from environment variable `env_var` (the key itself is never configured)."""
    key = os.environ.get(env_var, "")
    if not key:
        raise LLMError(f"environment variable {env_var!r} is empty or unset: export the API key there")
    return key
