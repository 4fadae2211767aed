"""One chat-completion call and its outcome, and what a valid response body looks like.

`ChatRequest` is all a cache key is computed from (with the model and the server's namespace, never
the API key); `validate_completion` and `token_counts` read a response body the same way whether a
chat call or a batch returned it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from syncse.llm.errors import MalformedResponse

BYTES_PER_TOKEN = 3  # local token estimate for responses without `usage` (English BPE: ~4, so it over-counts)


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


def validate_completion(body: Any) -> None:
    """Raise `MalformedResponse` unless `body` has `choices[0].message` with text or a refusal."""
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise MalformedResponse("no choices[0].message") from None
    content, refusal = message.get("content"), message.get("refusal")
    if not isinstance(content, str) and not isinstance(refusal, str):
        raise MalformedResponse("message has neither content nor refusal")


def token_counts(body: dict[str, Any], request: ChatRequest) -> tuple[int, int, bool]:
    """(prompt, completion, estimated) tokens of a response: its `usage`, or a local count when a
    compatible server sent none (so the budget still sees it)."""
    usage = body.get("usage") or {}
    if usage.get("prompt_tokens") is not None and usage.get("completion_tokens") is not None:
        return int(usage["prompt_tokens"]), int(usage["completion_tokens"]), False
    message = body["choices"][0]["message"]
    prompt_tokens = sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in request.messages)
    return prompt_tokens, estimate_tokens(message.get("content") or message.get("refusal") or ""), True


def estimate_tokens(text: str) -> int:
    """A local, deliberately high token count (UTF-8 bytes / 3) for responses without `usage`."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)
