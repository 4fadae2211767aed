"""A fake OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

It answers `POST /v1/chat/completions` from a `responder(body) -> str` and injects faults from
a deterministic plan: the n-th attempt at a given request body gets `faults(body_hash, n)`,
one of `FAULTS`. Every request is recorded (the body hash, the fault served, whether the
bearer token matched), so tests can check what the client sent.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("ok", "401", "429", "500", "503", "timeout", "malformed_json", "malformed_shape", "refusal", "api_refusal")
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."

Responder = Callable[[dict[str, Any]], str]
FaultPlan = Callable[[str, int], str]


def echo_responder(body: dict[str, Any]) -> str:
    """Default answer: a recognisable rewrite of the last user message."""
    return "Put differently: " + body["messages"][-1]["content"]


def no_faults(key: str, attempt: int) -> str:
    """The plan that always answers normally."""
    return "ok"


@dataclass
class FakeLog:
    """What the server saw: attempts per body hash, faults served, auth mismatches."""

    attempts: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    bad_auth: int = 0
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
    ) -> None:
        self.responder = responder
        self.faults = faults
        self.latency_s = latency_s
        self.timeout_sleep_s = timeout_sleep_s
        self.api_key = api_key
        self.retry_after = retry_after
        self.usage = usage
        self.log = FakeLog()
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

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

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
        if fault in ("401", "429", "500", "503"):
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            message = f"Incorrect API key provided: {auth.removeprefix('Bearer ')}" if fault == "401" else f"injected {fault}"
            return int(fault), headers, json.dumps({"error": {"message": message}}).encode(), 0.0
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
        return 200, {}, json.dumps(completion).encode(), stall

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                time.sleep(server.latency_s)
                status, headers, payload, stall = server.answer(body, self.headers.get("Authorization", ""))
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


def _completion(body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion = len(str(message.get("content") or "").split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }
