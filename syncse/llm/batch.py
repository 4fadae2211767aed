"""OpenAI's Batch API as a `ChatClient` (`llm.backend: openai-batch`): half the price, results within 24 h.

`BatchClient.complete` (and `stream`) writes the requests missing from the response cache as JSONL
batch files (at most `max_requests` requests and 200 MB each: OpenAI's caps), uploads them
(`files.create`, purpose `batch`), submits each as a batch on `/v1/chat/completions` with a 24 h
window, polls (`batches.retrieve`), and stores every answer (`files.content` of the output file)
in the same content-addressed cache, under the key a chat call would use. Callers get the same
`ChatResult`s as from `ChatClient`: filters, drop report and resume are unchanged, and a batch run
and a chat run share their responses.

Durability: every step is one fsynced line appended to a journal beside the cache
(`batches.jsonl`, as the spend ledger): `uploaded` (file id, local copy, time), `submitted` (batch
id), `collected` (final status). A run killed at any point resumes from it:
- a file uploaded but not recorded as submitted is first looked up among the account's batches by
  its input file id, and only created if absent (a kill between create and the journal line
  cannot submit it twice);
- a submitted batch is polled and collected, never resubmitted;
- only the requests still missing once their batches ended (a failed or expired batch, a
  per-request error) go into a new batch, up to `max_rounds` submissions in all.
Every answer is charged to the ledger at the batch price (the tracker `open_client` gives this
client carries `llm.batch_price_factor` times the configured prices). One process drives the
batches of a cache folder at a time (an flock on `batches.lock`; a second one waits), so two
stages or workers never submit the same request.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai

from syncse.llm.client import ChatClient, is_retryable, parse_retry_after, scrub, shorten
from syncse.llm.errors import LLMError, MalformedResponse
from syncse.llm.ledger import append_json_line
from syncse.llm.requests import ChatRequest, ChatResult, token_counts, validate_completion

logger = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_JOURNAL = "batches.jsonl"  # beside the response cache: every file uploaded, batch submitted, batch collected
BATCH_DIR = "batches"  # local copies of the input files, beside the cache (their custom_ids are the cache keys)
DRIVER_LOCK = "batches.lock"
ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"  # the only window OpenAI offers
MAX_FILE_REQUESTS = 50_000  # OpenAI's caps per input file
MAX_FILE_BYTES = 200 * 1024 * 1024
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
ADOPT_SKEW_S = 3600.0  # batches created this long before an upload are too old to be its own


@dataclass(frozen=True)
class BatchSettings:
    """Batch backend knobs (`llm.batch_*`)."""

    poll_s: float = 60.0  # seconds between status checks
    max_requests: int = MAX_FILE_REQUESTS  # requests per input file (<= 50,000)
    max_rounds: int = 3  # submissions of a request (failed/expired batches) before it counts as failed
    max_bytes: int = MAX_FILE_BYTES  # bytes per input file (<= 200 MB)

    def __post_init__(self) -> None:
        if not 1 <= self.max_requests <= MAX_FILE_REQUESTS:
            raise ValueError(f"llm.batch_max_requests: {self.max_requests} outside the allowed range [1, {MAX_FILE_REQUESTS}]")
        if not 1 <= self.max_bytes <= MAX_FILE_BYTES:
            raise ValueError(f"batch max_bytes: {self.max_bytes} outside the allowed range [1, {MAX_FILE_BYTES}]")


@dataclass
class BatchFile:
    """One uploaded input file and what became of it, as the journal tells."""

    file_id: str
    path: Path  # the local copy
    uploaded_at: float
    batch_id: str | None = None
    status: str | None = None  # the batch's final status, once collected


class BatchJournal:
    """The append-only record of batch work beside the cache (one JSON line per step)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, event: str, **fields: Any) -> None:
        """Append one step durably."""
        append_json_line(self.path, {"event": event, **fields, "time": round(time.time(), 3)})

    def files(self) -> dict[str, BatchFile]:
        """Every uploaded file by id, with its batch and final status so far (torn lines skipped)."""
        files: dict[str, BatchFile] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return files
        for line in lines:
            try:
                entry = json.loads(line)
                event, file_id = entry["event"], entry["file"]
                if event == "uploaded":
                    files[file_id] = BatchFile(file_id, self.path.parent / entry["path"], float(entry["time"]))
                elif event == "submitted":
                    files[file_id].batch_id = entry["batch"]
                elif event == "collected":
                    files[file_id].status = entry["status"]
            except (ValueError, KeyError, TypeError):
                logger.warning("%s: unreadable journal line skipped: %.80r", self.path, line)
        return files


class BatchClient(ChatClient):
    """A `ChatClient` whose requests go through OpenAI's Batch API (same cache, keys, results).

    Args:
        batch: the batch settings; every other argument is `ChatClient`'s.

    Example:
        >>> client = BatchClient("https://api.openai.com/v1", "gpt-4o-mini", key, ".cache/llm",
        ...                      "https://api.openai.com/v1", batch=BatchSettings(poll_s=60))
        >>> client.complete(requests)  # returns once every batch ended (within 24 h)
    """

    def __init__(self, *args: Any, batch: BatchSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = batch or BatchSettings()
        self.journal = BatchJournal(self.cache.directory / BATCH_JOURNAL)
        self._requests: dict[str, ChatRequest] = {}
        self._fresh: set[str] = set()  # keys answered by a batch during this call
        self._reasons: dict[str, str] = {}  # why a key has no answer yet

    def stream(self, requests: Iterable[ChatRequest], desc: str = "llm", total: int | None = None) -> Iterator[ChatResult]:
        """Results of `requests` in order, once every batch they need has ended.

        A batch answers all its requests at once, so the requests of one call are held in memory
        (the results are read back from the cache one at a time).
        """
        requests = list(requests)
        keys = [self.key(r) for r in requests]
        self._requests = dict(zip(keys, requests))
        self._fresh, self._reasons = set(), {}
        hits = sum(1 for key in keys if self.cache.has(key))
        with self._lock:
            self.stats.requests += len(keys)
            self.stats.cache_hits += hits
        needed = [key for key in self._requests if not self.cache.has(key)]
        if needed:
            logger.info("%s: %d of %d requests not cached: batch backend", desc, len(needed), len(keys))
            with self._driver_lock():
                skipped = self._fill(needed)
        else:
            skipped = set()
        for request, key in zip(requests, keys):
            yield self._answer(request, key, skipped)

    def _answer(self, request: ChatRequest, key: str, skipped: set[str]) -> ChatResult:
        """The result for one request, from the cache or the reason it has none."""
        body = self.cache.get(key)
        if body is not None:
            return self._result(body, request, cached=key not in self._fresh)
        if key in skipped:
            with self._lock:
                self.stats.skipped_budget += 1
            return ChatResult(error="budget")
        with self._lock:
            self.stats.failed += 1
        return ChatResult(error=f"failed: {self._reasons.get(key, 'batch')}")

    @contextlib.contextmanager
    def _driver_lock(self) -> Iterator[None]:
        """Hold the cache folder's batch driver lock (released by the kernel if we die)."""
        with (self.cache.directory / DRIVER_LOCK).open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("another process drives the batches of %s: waiting for it", self.cache.directory)
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _fill(self, needed: list[str]) -> set[str]:
        """Get answers for `needed` into the cache: finish journaled batches, then submit what is
        missing, round after round. Returns the keys left unsent because of the budget cap."""
        skipped: set[str] = set()
        rounds = 0
        while True:
            self._finish_journaled(set(needed))
            missing = [key for key in needed if not self.cache.has(key)]
            if not missing or rounds == self.settings.max_rounds:
                return skipped
            rounds += 1
            if rounds > 1:
                logger.warning("resubmitting %d requests (round %d of %d)", len(missing), rounds, self.settings.max_rounds)
            skipped = self._submit(missing)
            if skipped and len(skipped) == len(missing):
                return skipped

    def _finish_journaled(self, needed: set[str]) -> None:
        """Submit, poll and collect every journaled batch that holds a needed request (a resumed
        run's first step: nothing it already submitted is submitted again)."""
        active = [f for f in self.journal.files().values() if f.status is None and not needed.isdisjoint(_keys_of(f))]
        for batch_file in active:
            if batch_file.batch_id is None:
                batch_file.batch_id = self._find_batch(batch_file) or self._create_batch(batch_file)
                self.journal.record("submitted", file=batch_file.file_id, batch=batch_file.batch_id)
        while active:
            for batch_file in list(active):
                batch = self._api(lambda: self._openai.batches.retrieve(batch_file.batch_id))
                if batch.status in TERMINAL:
                    self._collect(batch_file, batch)
                    active.remove(batch_file)
            if active:
                time.sleep(self.settings.poll_s)

    def _submit(self, missing: list[str]) -> set[str]:
        """Write, upload and submit `missing` in files within OpenAI's caps; returns the keys not
        sent because the budget cap was reached first (checked before each file)."""
        done = 0
        for chunk in _chunks(((key, self._line(key)) for key in missing), self.settings.max_requests,
                             self.settings.max_bytes):
            if not self.budget.allow():
                return set(missing[done:])
            batch_file = self._upload(chunk)
            batch_file.batch_id = self._create_batch(batch_file)
            self.journal.record("submitted", file=batch_file.file_id, batch=batch_file.batch_id)
            with self._lock:
                self.stats.sent += len(chunk)
            done += len(chunk)
        return set()

    def _line(self, key: str) -> bytes:
        """One request of an input file: its cache key is the custom_id."""
        body = self._requests[key].body(self.model)
        entry = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
        return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    def _upload(self, chunk: list[tuple[str, bytes]]) -> BatchFile:
        """Keep a local copy of the input file beside the cache, upload it, journal its id."""
        folder = self.cache.directory / BATCH_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.time_ns()}-{random.randrange(16**6):06x}.jsonl"
        with path.open("wb") as out:
            out.writelines(line for _, line in chunk)
        uploaded = self._api(lambda: self._openai.files.create(file=(path.name, path.read_bytes()), purpose="batch"))
        self.journal.record("uploaded", file=uploaded.id, path=f"{BATCH_DIR}/{path.name}", requests=len(chunk))
        logger.info("uploaded %s: %d requests, %.1f MB", uploaded.id, len(chunk), path.stat().st_size / 1e6)
        return BatchFile(uploaded.id, path, time.time())

    def _create_batch(self, batch_file: BatchFile) -> str:
        batch = self._api(lambda: self._openai.batches.create(
            input_file_id=batch_file.file_id, endpoint=ENDPOINT, completion_window=COMPLETION_WINDOW,
            metadata={"syncse_file": batch_file.path.name}))
        logger.info("submitted batch %s (file %s)", batch.id, batch_file.file_id)
        return batch.id

    def _find_batch(self, batch_file: BatchFile) -> str | None:
        """The batch already created for an uploaded file (a kill after create, before the journal
        line), found among the account's batches, newest first; None if there is none."""
        for batch in self._api(lambda: self._openai.batches.list(limit=100)):
            if batch.input_file_id == batch_file.file_id:
                logger.info("adopted batch %s of file %s (created before a kill)", batch.id, batch_file.file_id)
                return batch.id
            if batch.created_at < batch_file.uploaded_at - ADOPT_SKEW_S:
                break
        return None

    def _collect(self, batch_file: BatchFile, batch: Any) -> None:
        """Store a finished batch's answers in the cache and note why the others are missing."""
        counts = batch.request_counts
        logger.info("batch %s %s (%s)", batch.id, batch.status, counts)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                self._api(lambda file_id=file_id: self._ingest(file_id))
        failure = ""
        if batch.status == "failed" and batch.errors and batch.errors.data:
            failure = f": {batch.errors.data[0].code}"
        for key in _keys_of(batch_file):
            if not self.cache.has(key):
                self._reasons.setdefault(key, f"batch {batch.status}{failure}")
        self.journal.record("collected", file=batch_file.file_id, batch=batch.id, status=batch.status)

    def _ingest(self, file_id: str) -> None:
        """Read an output or error file line by line (streamed: memory stays flat)."""
        with self._openai.files.with_streaming_response.content(file_id) as response:
            for line in response.iter_lines():
                if line.strip():
                    self._ingest_line(json.loads(line))

    def _ingest_line(self, entry: dict[str, Any]) -> None:
        key, response = entry.get("custom_id", ""), entry.get("response") or {}
        body = response.get("body")
        if response.get("status_code") != 200:
            error = entry.get("error") or (body or {}).get("error") or {}
            self._reasons[key] = error.get("code") or f"HTTP {response.get('status_code')}"
            return
        try:
            validate_completion(body)
        except MalformedResponse as err:
            self._reasons[key] = f"malformed: {err}"
            return
        if self.cache.has(key):  # collected before a kill, or answered twice: charged once
            return
        request = self._requests.get(key, ChatRequest(()))  # another call's request: its usage is counted as sent
        prompt_tokens, completion_tokens, estimated = token_counts(body, request)
        self.budget.charge(prompt_tokens, completion_tokens, key, estimated)
        self.cache.put(key, body)
        self._fresh.add(key)
        self._reasons.pop(key, None)

    def _api(self, call: Callable[[], T]) -> T:
        """`call()` with the client's backoff on transient failures; LLMError on anything else."""
        rng = random.Random()
        for attempt in range(self.retry.max_retries + 1):
            try:
                return call()
            except openai.APIStatusError as err:
                message = scrub(shorten(err.message), self._openai.api_key)
                if not is_retryable(err.status_code) or attempt == self.retry.max_retries:
                    raise LLMError(f"batch API refused with HTTP {err.status_code}: {message}") from None
                cause, retry_after = f"HTTP {err.status_code}", parse_retry_after(err.response.headers)
            except (openai.APITimeoutError, openai.APIConnectionError, httpx.TransportError) as err:
                if attempt == self.retry.max_retries:
                    raise LLMError(f"batch API unreachable after {attempt + 1} tries: {type(err).__name__}") from None
                cause, retry_after = type(err).__name__, None
            with self._lock:
                self.stats.retries += 1
                self.stats.retries_by_cause[cause] = self.stats.retries_by_cause.get(cause, 0) + 1
            time.sleep(self.retry.delay(attempt, retry_after, rng))
        raise AssertionError("unreachable: the loop returns or raises on its last attempt")


def _keys_of(batch_file: BatchFile) -> set[str]:
    """The cache keys (custom_ids) in a journaled file's local copy; empty if the copy is gone."""
    try:
        with batch_file.path.open("rb") as lines:
            return {json.loads(line)["custom_id"] for line in lines if line.strip()}
    except FileNotFoundError:
        logger.warning("local copy %s of batch file %s is gone: its batch is not followed", batch_file.path,
                       batch_file.file_id)
        return set()


def _chunks(lines: Iterable[tuple[str, bytes]], max_requests: int, max_bytes: int) -> Iterator[list[tuple[str, bytes]]]:
    """Consecutive groups of (key, line) with at most `max_requests` lines and `max_bytes` bytes each."""
    chunk: list[tuple[str, bytes]] = []
    size = 0
    for key, line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"one batch request is {len(line):,} bytes, over the {max_bytes:,}-byte file cap")
        if chunk and (len(chunk) == max_requests or size + len(line) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, line))
        size += len(line)
    if chunk:
        yield chunk
