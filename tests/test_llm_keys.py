"""The response cache's keys, pinned as literals: a banked cache (paid responses) is reused only while
every request hashes to the same key, so no refactoring of `syncse.llm` may change one.

The literals were computed by the code that banked the caches (commit 27dceab6, before `syncse.llm`
became a package). A failure here means every banked response would be paid for again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncse.config import LLMConfig
from syncse.llm import BatchClient, ChatClient, ChatRequest, cache_namespace, gguf_namespace

OPENAI = "https://api.openai.com/v1"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
HI = ChatRequest(({"role": "user", "content": "Hi"},))
RICH = ChatRequest(
    ({"role": "system", "content": "Write one sentence."},
     {"role": "user", "content": "Ein Mädchen läuft — “quickly”."}),  # non-ASCII: the JSON is not escaped
    {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 12,
     "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}},
)
PINNED = [  # (namespace, model, request, key)
    (OPENAI, "gpt-4o-mini", HI, "033a8bd2ef9ce5326055cd2ace44226c97a87cb3e89330e271d5d0c8e3daedea"),
    (OPENAI, "gpt-4o-mini", RICH, "20fd357d336e8deb6586036308bd4d4d83775c633d29ed426f803bf6c068ebdf"),
    (f"gguf-sha256:{SMOLLM2_SHA256}", "smollm2-135m", RICH,
     "3d90f1081c7101cbff896714ffd350deeae8d10c9b160165b1bcd9362fedb1af"),
]


@pytest.mark.parametrize(("namespace", "model", "request_", "key"), PINNED)
@pytest.mark.parametrize("client_class", [ChatClient, BatchClient])
def test_cache_keys_are_the_banked_ones(tmp_path: Path, client_class: type[ChatClient], namespace: str, model: str,
                                        request_: ChatRequest, key: str) -> None:
    client = client_class("http://127.0.0.1:9/v1", model, "sk-not-in-the-key", tmp_path, namespace, progress=False)
    assert client.key(request_) == key
    client.cache.put(key, {"choices": [{"message": {"content": "x"}}]})
    assert (tmp_path / key[:2] / f"{key}.json").is_file()  # the banked cache's file layout


def test_namespaces_and_prompt_hashes_are_the_banked_ones() -> None:
    assert cache_namespace(LLMConfig(backend="openai", base_url=OPENAI)) == OPENAI
    assert cache_namespace(LLMConfig(backend="openai-batch", base_url=OPENAI)) == OPENAI  # batch and chat share
    assert gguf_namespace(SMOLLM2_SHA256) == PINNED[2][0]
    assert (HI.prompt_hash(), RICH.prompt_hash()) == ("557f6d9586f57ae7", "c9041fa05608dcb3")
