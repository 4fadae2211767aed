"""The fake OpenAI server judged by the `openai` package's own response models (strict, no extra keys),
so that the Batch API client is not tested only against our own reading of the API."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types import Batch, FileObject
from openai.types.chat import ChatCompletion

from syncse.testing import FakeOpenAIServer, FakeSchemaError, check_body, check_output_line, check_sdk_model

KEY = "sk-fake-schema-0123456789"


def batch_line(i: int) -> bytes:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": f"sentence number {i}"}], "seed": i}
    return (json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n").encode()


def run_batch(sdk: openai.OpenAI, n: int) -> tuple[Batch, list[dict[str, Any]]]:
    """Upload, submit and poll one batch through the SDK; its final state and every output/error line."""
    uploaded = sdk.files.create(file=("in.jsonl", b"".join(batch_line(i) for i in range(n))), purpose="batch")
    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                               metadata={"syncse_file": "in.jsonl"})
    while batch.status not in ("completed", "failed", "expired"):
        batch = sdk.batches.retrieve(batch.id)
    lines = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            lines += [json.loads(line) for line in sdk.files.content(file_id).text.splitlines()]
    return batch, lines


def test_every_batch_endpoint_serves_what_the_sdk_models_accept() -> None:
    """Each outcome (completed with a per-request 500, expired, failed) and the list page pass the
    fake's strict checks: a response they reject would be a 500 here and a FakeSchemaError on exit."""
    outcomes = ("completed", "expired", "failed")
    faults = lambda key, attempt: "500" if attempt == 0 and int(key[:2], 16) % 2 else "ok"  # noqa: E731
    with FakeOpenAIServer(faults=faults, api_key=KEY, batch_outcome=lambda n: outcomes[n], batch_polls=2) as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        ran = [run_batch(sdk, 6) for _ in outcomes]
        listed = list(sdk.batches.list(limit=2))
    assert server.schema_errors == []
    assert [batch.status for batch, _ in ran] == list(outcomes)
    completed, expired, failed = (lines for _, lines in ran)
    assert {line["response"]["status_code"] for line in completed} == {200, 500}  # both kinds of line served
    assert {line["error"]["code"] for line in expired if line["error"]} == {"batch_expired"}
    assert failed == [] and ran[2][0].errors.data[0].code == "invalid_request"
    assert [b.id for b in listed] == ["batch_000002", "batch_000001", "batch_000000"]  # two pages, newest first


def test_a_response_the_sdk_rejects_fails_the_test_that_served_it() -> None:
    with pytest.raises(FakeSchemaError, match=r"choices\.0\.message\.content"):  # noqa: PT012 - the exit raises
        with FakeOpenAIServer(responder=lambda body: 42, api_key=KEY) as server:  # type: ignore[arg-type,return-value]
            sdk = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
            with pytest.raises(openai.InternalServerError):
                sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert len(server.schema_errors) == 1


def test_the_check_is_strict_and_refuses_undefined_keys() -> None:
    completion = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                  "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}]}
    check_body(200, completion, "ok")
    with pytest.raises(FakeSchemaError, match="created"):
        check_sdk_model(ChatCompletion, {k: v for k, v in completion.items() if k != "created"}, "no created")
    with pytest.raises(FakeSchemaError, match="created"):  # strict: a float is not an int, even 1.0
        check_sdk_model(ChatCompletion, {**completion, "created": 1.0}, "float created")
    extra = json.loads(json.dumps(completion))
    extra["choices"][0]["message"]["mood"] = "fine"
    with pytest.raises(FakeSchemaError, match=r"choices\[0\]\.message\.mood"):
        check_sdk_model(ChatCompletion, extra, "nested extra")
    with pytest.raises(FakeSchemaError, match="type"):  # OpenAI's error object always has a type
        check_body(500, {"error": {"message": "boom"}}, "bare error")
    uploaded = {"id": "file-1", "object": "file", "bytes": 3, "created_at": 1, "filename": "a", "purpose": "batch",
                "status": "processed"}
    check_sdk_model(FileObject, uploaded, "file")
    with pytest.raises(FakeSchemaError, match="purpose"):
        check_sdk_model(FileObject, {**uploaded, "purpose": "batches"}, "file")
    line = {"id": "r", "custom_id": "k", "response": {"status_code": 200, "request_id": "q", "body": completion},
            "error": None}
    check_output_line(line)
    with pytest.raises(FakeSchemaError, match="extra"):
        check_output_line({**line, "status": "ok"})
    with pytest.raises(FakeSchemaError, match="status_code"):
        check_output_line({**line, "response": {**line["response"], "status_code": "200"}})
