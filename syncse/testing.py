"""A fake OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

It answers `POST /v1/chat/completions` from a `responder(body) -> str` and injects faults from
a deterministic plan: the n-th attempt at a given request body gets `faults(body_hash, n)`,
one of `FAULTS`. Every request is recorded (the body hash, the fault served, whether the
bearer token matched), so tests can check what the client sent.

It also serves the Batch API's endpoints (`POST /v1/files`, `GET /v1/files/<id>/content`,
`POST /v1/batches`, `GET /v1/batches/<id>`, `GET /v1/batches`): a batch moves
validating -> in_progress -> its outcome after `batch_polls` retrievals (never while
`hold_batches` is set), the outcome of the n-th batch created being `batch_outcome(n)`, one of
`BATCH_OUTCOMES`: `completed` answers every line as a chat call would (the fault plan applies:
an HTTP fault becomes a line of the error file), `expired` answers the first half and marks the
rest `batch_expired`, `failed` answers nothing. Every custom_id of every created batch is
counted (`log.submitted`).

Every JSON response it serves is first checked against the `openai` package's own response models
in pydantic's strict mode, with no key those models do not define (`check_sdk_model`):
`ChatCompletion`, the `ErrorObject` of an error body, `FileObject`, `Batch` and the batch list page.
The SDK has no model of a batch output line, so its envelope is checked against OpenAI's documented
shape (`BatchOutputLine`) and its parts against the SDK (`ChatCompletion`, `ErrorObject`,
`BatchError`). A response that fails is served as HTTP 500, kept in `schema_errors`, and raised as
`FakeSchemaError` when the `with` block ends, so every test that uses the fake also checks it.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import importlib.util
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
from openai.pagination import SyncCursorPage
from openai.types import Batch, BatchError, ErrorObject, FileObject
from openai.types.chat import ChatCompletion

FAULTS = ("ok", "401", "403", "404", "429", "500", "503", "timeout", "disconnect", "malformed_json", "malformed_shape",
          "refusal", "api_refusal")
DISCONNECT = 0  # the status `answer` returns for `disconnect`: close the connection without a response
ERRORS = {  # status -> (type, code, message) of the error body, as OpenAI sends them
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}"),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "injected 429"),
    500: ("server_error", None, "injected 500"),
    503: ("server_error", None, "injected 503"),
}
BATCH_OUTCOMES = ("completed", "expired", "failed")
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."

Responder = Callable[[dict[str, Any]], str]
FaultPlan = Callable[[str, int], str]


def echo_responder(body: dict[str, Any]) -> str:
    """Default answer: a recognisable rewrite of the last user message."""
    return "Put differently: " + body["messages"][-1]["content"]


def no_faults(key: str, attempt: int) -> str:
    """The plan that always answers normally."""
    return "ok"


def all_completed(n: int) -> str:
    """Every batch completes."""
    return "completed"


@dataclass
class FakeLog:
    """What the server saw: attempts per body hash, faults served, auth mismatches."""

    attempts: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    bad_auth: int = 0
    submitted: Counter[str] = field(default_factory=Counter)  # custom_id -> batches created holding it
    uploads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOpenAIServer:
    """Context manager serving a fake `/v1/chat/completions` on 127.0.0.1 in a thread.

    Args:
        responder: text of a successful answer for a request body.
        faults: the fault plan, `(body_hash, attempt) -> fault` (attempt counts from 0).
        latency_s: sleep before answering (simulates a remote API).
        timeout_sleep_s: how long a `timeout` fault stalls before answering.
        api_key: the bearer token expected (mismatches are counted, not refused).
        retry_after: the `Retry-After` header sent with a `429` fault.
        usage: include the `usage` token counts (some compatible servers omit them).
        batch_outcome: the n-th created batch's outcome (n from 0), one of `BATCH_OUTCOMES`.
        batch_polls: retrievals a batch takes to end (it stays `in_progress` while `hold_batches` is set).

    Example:
        >>> with FakeOpenAIServer() as server:
        ...     ChatClient(server.base_url, "fake", "k", tmp, "fake").complete(requests)
    """

    def __init__(
        self,
        responder: Responder = echo_responder,
        faults: FaultPlan = no_faults,
        latency_s: float = 0.0,
        timeout_sleep_s: float = 2.0,
        api_key: str = "sk-test",
        retry_after: str = "0.01",
        usage: bool = True,
        batch_outcome: Callable[[int], str] = all_completed,
        batch_polls: int = 1,
    ) -> None:
        self.responder = responder
        self.faults = faults
        self.latency_s = latency_s
        self.timeout_sleep_s = timeout_sleep_s
        self.api_key = api_key
        self.retry_after = retry_after
        self.usage = usage
        self.batch_outcome = batch_outcome
        self.batch_polls = batch_polls
        self.hold_batches = threading.Event()
        self.log = FakeLog()
        self.schema_errors: list[str] = []  # responses the SDK's models rejected (raised on exit)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}  # in creation order
        self._batch_lock = threading.Lock()  # files and batches (the log has its own lock)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The `/v1` root to give the client."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.schema_errors:
            report = (f"the fake server served {len(self.schema_errors)} responses as HTTP 500 because the openai "
                      f"SDK's models reject them; the first: {self.schema_errors[0]}")
            if exc is None:
                raise FakeSchemaError(report)
            exc.add_note(report)  # the test failed first, probably on those 500s: say why

    def answer(self, body: dict[str, Any], auth: str) -> tuple[int, dict[str, str], bytes, float]:
        """Status, headers, payload and stall for one request (the handler only transmits)."""
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self.log.lock:
            attempt = self.log.attempts[key]
            self.log.attempts[key] += 1
            fault = self.faults(key, attempt)
            if fault not in FAULTS:
                raise ValueError(f"fault plan returned {fault!r}; expected one of {FAULTS}")
            self.log.served[fault] += 1
            self.log.bad_auth += auth != f"Bearer {self.api_key}"
        if fault == "disconnect":
            return DISCONNECT, {}, b"", 0.0
        if fault.isdigit():
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            error = _error(int(fault), key=auth.removeprefix("Bearer "), model=body.get("model", ""))
            check_body(int(fault), error, f"HTTP {fault} body")
            return int(fault), headers, json.dumps(error).encode(), 0.0
        if fault == "malformed_json":
            return 200, {}, b'{"choices": [ {"message": ', 0.0
        if fault == "malformed_shape":
            return 200, {}, json.dumps({"object": "chat.completion", "choices": []}).encode(), 0.0
        stall = self.timeout_sleep_s if fault == "timeout" else 0.0
        message: dict[str, Any] = {"role": "assistant", "content": self.responder(body)}
        if fault == "refusal":
            message["content"] = REFUSAL_TEXT
        if fault == "api_refusal":
            message = {"role": "assistant", "content": None, "refusal": REFUSAL_TEXT}
        completion = _completion(body, message)
        if not self.usage:
            del completion["usage"]
        check_body(200, completion, "chat completion")
        return 200, {}, json.dumps(completion).encode(), stall

    # ----------------------------------------------------------------------- batch API

    def upload(self, content_type: str, data: bytes) -> dict[str, Any]:
        """`POST /v1/files`: store the multipart `file` part, return the file object."""
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + data)
        parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
        content = parts["file"].get_payload(decode=True)
        with self._batch_lock, self.log.lock:
            self.log.uploads += 1
            file_id = f"file-{len(self.files):06d}"
            self.files[file_id] = content
        uploaded = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                    "filename": parts["file"].get_filename() or "input.jsonl", "purpose": "batch", "status": "processed"}
        check_sdk_model(FileObject, uploaded, "file object")
        return uploaded

    def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/batches`: a new batch on an uploaded file (every custom_id counted as submitted)."""
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines() if line.strip()]
        with self._batch_lock, self.log.lock:
            n = len(self.batches)
            batch = {"id": f"batch_{n:06d}", "object": "batch", "endpoint": body["endpoint"], "errors": None,
                     "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                     "status": "validating", "output_file_id": None, "error_file_id": None,
                     "created_at": time.time(), "metadata": body.get("metadata"),
                     "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "_n": n, "_polls": 0}
            self.batches[batch["id"]] = batch
            self.log.submitted.update(line["custom_id"] for line in lines)
        return _public(batch)

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        """`GET /v1/batches/<id>`: one poll; the batch advances unless held."""
        with self._batch_lock:
            batch = self.batches[batch_id]
            if batch["status"] in ("validating", "in_progress") and not self.hold_batches.is_set():
                batch["_polls"] += 1
                batch["status"] = "in_progress"
                if batch["_polls"] >= self.batch_polls:
                    outcome = self.batch_outcome(batch["_n"])
                    if outcome not in BATCH_OUTCOMES:
                        raise ValueError(f"batch_outcome returned {outcome!r}; expected one of {BATCH_OUTCOMES}")
                    self._finish(batch, outcome)
            return _public(batch)

    def list_batches(self, limit: int, after: str | None) -> dict[str, Any]:
        """`GET /v1/batches`: newest first, paginated by `after`."""
        with self._batch_lock:
            ids = list(reversed(self.batches))
            start = ids.index(after) + 1 if after in ids else 0
            page = ids[start:start + limit]
            listing = {"object": "list", "data": [_public(self.batches[i]) for i in page],
                       "has_more": start + limit < len(ids), "first_id": page[0] if page else None,
                       "last_id": page[-1] if page else None}
        check_batch_page(listing)
        return listing

    def _finish(self, batch: dict[str, Any], outcome: str) -> None:
        """Answer a batch's lines as its outcome says and store its output and error files."""
        batch["status"] = outcome
        if outcome == "failed":
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "injected failure"}]}
            return
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines() if line.strip()]
        answered = lines if outcome == "completed" else lines[: len(lines) // 2]
        output, errors = [], []
        for line in answered:
            status, _, payload, _ = self.answer(line["body"], f"Bearer {self.api_key}")
            try:
                body = json.loads(payload)
            except ValueError:  # a malformed answer or a dropped connection inside the batch
                status, body = 500, _error(500)
            entry = {"id": f"batch_req_{line['custom_id'][:8]}", "custom_id": line["custom_id"],
                     "response": {"status_code": status, "request_id": "req_fake", "body": body}, "error": None}
            (output if status == 200 else errors).append(entry)
        for line in lines[len(answered):]:
            errors.append({"id": f"batch_req_{line['custom_id'][:8]}", "custom_id": line["custom_id"], "response": None,
                           "error": {"code": "batch_expired",
                                     "message": "This request could not be executed before the completion window expired."}})
        for name, entries in (("output_file_id", output), ("error_file_id", errors)):
            for entry in entries:
                check_output_line(entry)
            if entries:
                file_id = f"file-{len(self.files):06d}"
                self.files[file_id] = "".join(json.dumps(e) + "\n" for e in entries).encode()
                batch[name] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}

    def route(self, method: str, path: str, headers: Any, data: bytes) -> tuple[int, dict[str, str], bytes, float]:
        """Status, headers, payload and stall for any request (chat calls go to `answer`)."""
        auth = headers.get("Authorization", "")
        url = urllib.parse.urlsplit(path)
        parts = url.path.rstrip("/").split("/")[2:]  # after /v1
        if method == "POST" and parts == ["chat", "completions"]:
            return self.answer(json.loads(data or b"{}"), auth)
        with self.log.lock:
            self.log.bad_auth += auth != f"Bearer {self.api_key}"
        if method == "POST" and parts == ["files"]:
            return 200, {}, json.dumps(self.upload(headers.get("Content-Type", ""), data)).encode(), 0.0
        if method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and parts[1] in self.files:
            return 200, {"Content-Type": "application/octet-stream"}, self.files[parts[1]], 0.0
        if method == "POST" and parts == ["batches"]:
            return 200, {}, json.dumps(_checked_batch(self.create_batch(json.loads(data)))).encode(), 0.0
        if method == "GET" and len(parts) == 2 and parts[0] == "batches" and parts[1] in self.batches:
            return 200, {}, json.dumps(_checked_batch(self.retrieve_batch(parts[1]))).encode(), 0.0
        if method == "GET" and parts == ["batches"]:
            query = urllib.parse.parse_qs(url.query)
            listing = self.list_batches(int(query.get("limit", ["20"])[0]), query.get("after", [None])[0])
            return 200, {}, json.dumps(listing).encode(), 0.0
        return 404, {}, json.dumps(_error(404, message=f"no route for {method} {url.path}")).encode(), 0.0

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self._serve("POST")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", 0))
                data = self.rfile.read(length)
                time.sleep(server.latency_s)
                try:
                    status, headers, payload, stall = server.route(method, self.path, self.headers, data)
                except FakeSchemaError as err:
                    server.schema_errors.append(str(err))
                    status, headers, payload, stall = 500, {}, json.dumps(_error(500, message=str(err))).encode(), 0.0
                if status == DISCONNECT:  # hang up without a status line
                    self.close_connection = True
                    return
                time.sleep(stall)
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up: that was the point

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
                return

        return Handler


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch object as the API shows it (no private fields; integer timestamps)."""
    return {**{k: v for k, v in batch.items() if not k.startswith("_")}, "created_at": int(batch["created_at"])}


def _checked_batch(batch: dict[str, Any]) -> dict[str, Any]:
    check_sdk_model(Batch, batch, f"batch {batch['id']}")
    return batch


def _error(status: int, message: str | None = None, **fill: str) -> dict[str, Any]:
    """An error body as OpenAI sends it: `{"error": {message, type, param, code}}`."""
    kind, code, text = ERRORS.get(status, ("server_error", None, f"injected {status}"))
    return {"error": {"message": message or text.format(**fill), "type": kind, "param": None, "code": code}}


def _completion(body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion = len(str(message.get("content") or "").split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


# --------------------------------------------------------------------------- response checks


class FakeSchemaError(AssertionError):
    """A response of the fake that the `openai` package's own models would not accept as is."""


class BatchResponse(pydantic.BaseModel):
    """`response` of a batch output line, as OpenAI documents it (the SDK has no model of it)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    status_code: int
    request_id: str
    body: dict[str, Any]


class BatchOutputLine(pydantic.BaseModel):
    """One line of a batch output or error file, as OpenAI documents it (the SDK has no model of it)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    id: str
    custom_id: str
    response: BatchResponse | None
    error: dict[str, Any] | None


def check_sdk_model(model: type[pydantic.BaseModel], obj: Any, what: str,
                    allowed_extra: frozenset[str] = frozenset()) -> None:
    """Raise `FakeSchemaError` unless `obj` validates against `model` in strict mode and has, at any
    depth, no key the model does not define (the SDK's models allow extras; we do not), except the
    top-level `allowed_extra`."""
    try:
        parsed = model.model_validate(obj, strict=True)
    except pydantic.ValidationError as err:
        raise FakeSchemaError(f"{what}: rejected by openai's {model.__name__}: {err}") from None
    extra = [key for key in _extra_keys(parsed, what) if key.removeprefix(f"{what}.") not in allowed_extra]
    if extra:
        raise FakeSchemaError(f"{what}: keys openai's {model.__name__} does not define: {extra}")


def _extra_keys(value: Any, path: str) -> Iterator[str]:
    """The paths of every extra (undeclared) key in a parsed model, depth first."""
    if isinstance(value, pydantic.BaseModel):
        yield from (f"{path}.{name}" for name in value.model_extra or {})
        for name in type(value).model_fields:
            yield from _extra_keys(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _extra_keys(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _extra_keys(item, f"{path}.{key}")


def check_body(status: int, body: Any, what: str) -> None:
    """A chat-completions response body: an SDK `ChatCompletion` on 200, else `{"error": ErrorObject}`."""
    if status == 200:
        check_sdk_model(ChatCompletion, body, what)
        return
    if not isinstance(body, dict) or set(body) != {"error"}:
        raise FakeSchemaError(f"{what}: an error body is {{\"error\": ...}}, got {body!r:.200}")
    check_sdk_model(ErrorObject, body["error"], f"{what}.error")


def check_output_line(entry: Any) -> None:
    """A batch output or error file line: the documented envelope, an SDK body and an SDK `BatchError`."""
    try:
        line = BatchOutputLine.model_validate(entry, strict=True)
    except pydantic.ValidationError as err:
        raise FakeSchemaError(f"batch output line: {err}") from None
    if line.response is None and line.error is None:
        raise FakeSchemaError(f"batch output line {line.custom_id}: neither a response nor an error")
    if line.response is not None:
        check_body(line.response.status_code, line.response.body, f"batch output line {line.custom_id}.response.body")
    if line.error is not None:
        check_sdk_model(BatchError, line.error, f"batch output line {line.custom_id}.error")


def check_batch_page(page: Any) -> None:
    """`GET /v1/batches`: an SDK `SyncCursorPage[Batch]` (plus the envelope keys the API reference lists)."""
    check_sdk_model(SyncCursorPage[Batch], page, "batch list", frozenset({"object", "first_id", "last_id"}))


def load_script(path: str | Path) -> ModuleType:
    """A file of `scripts/` as a module, for tests of its functions (scripts/ is not a package)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
