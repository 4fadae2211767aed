"""The errors of the LLM layer, shared by every module of `syncse.llm`."""

from __future__ import annotations


class LLMError(RuntimeError):
    """A failure that makes the whole run pointless (bad key, unknown model, bad model file)."""


class MalformedResponse(ValueError):
    """A 2xx response whose body is not a chat completion with a message (retried)."""


class BudgetExceeded(LLMError):
    """The spending cap was reached before every request was sent (paid responses stay cached)."""
