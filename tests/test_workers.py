"""Bounded streaming and several workers on one cache: every request sent exactly once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from syncse.llm import ChatClient, ChatRequest, RequestClaims, ResponseCache, SpendLedger
from syncse.testing import FakeOpenAIServer, load_script

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-worker-SECRET-77"


def fresh_sentence(body: dict) -> str:
    """A distinct, anchor-free answer per request, so that the filters keep the triplets."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return f"Observers reported item {digest} moving slowly toward the distant harbour."


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"seed": i}) for i in range(n)]


def test_stream_takes_at_most_max_pending_ahead_of_its_results(tmp_path: Path) -> None:
    pulled = 0

    def source() -> Iterator[ChatRequest]:
        nonlocal pulled
        for request in requests(60):
            pulled += 1
            yield request

    with FakeOpenAIServer() as server:
        chat = ChatClient(server.base_url, "fake-model", "k", tmp_path, "fake", max_in_flight=3, max_pending=5,
                          progress=False)
        contents = []
        for result in chat.stream(source()):
            assert pulled - len(contents) <= 5  # the one being yielded plus at most 4 more in the window
            contents.append(result.content)
    assert contents == [f"Put differently: sentence number {i}" for i in range(60)]
    assert sum(server.log.attempts.values()) == 60


WORKER = """
import json, sys, time
from pathlib import Path
from syncse.llm import ChatClient, ChatRequest
base_url, cache, name, barrier = sys.argv[1:5]
Path(barrier, name).touch()
while len(list(Path(barrier).iterdir())) < 2:  # start together
    time.sleep(0.01)
reqs = [ChatRequest(({"role": "user", "content": f"sentence number {i}"},), {"seed": i}) for i in range(120)]
chat = ChatClient(base_url, "fake-model", "k", cache, "fake", max_in_flight=4, claim_poll_s=0.02, progress=False)
contents = [r.content for r in chat.complete(reqs)]
print(json.dumps({"contents": contents, "sent": chat.stats.sent, "hits": chat.stats.cache_hits}))
"""


def test_two_workers_send_every_request_exactly_once(tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    with FakeOpenAIServer(latency_s=0.03) as server:
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, server.base_url, str(tmp_path / "cache"), name,
                                     str(barrier)], stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
        outputs = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    expected = [f"Put differently: sentence number {i}" for i in range(120)]
    assert all(output["contents"] == expected for output in outputs)
    assert len(server.log.attempts) == 120 and set(server.log.attempts.values()) == {1}  # each sent once, in all
    assert all(output["sent"] > 0 for output in outputs)  # both did share the work
    assert sum(output["sent"] for output in outputs) == 120
    assert not list((tmp_path / "cache").glob("*/*.lock"))  # every claim released


def test_claims_of_dead_or_silent_workers_are_taken_over(tmp_path: Path) -> None:
    claims = RequestClaims(tmp_path, stale_s=600.0)
    other = RequestClaims(tmp_path, stale_s=600.0)  # another worker in this (live) process
    assert other.acquire("ab" * 32) and not claims.acquire("ab" * 32) and claims.held("ab" * 32)
    lock = tmp_path / "ab" / ("ab" * 32 + ".lock")
    os.utime(lock, (time.time() - 601, time.time() - 601))  # not refreshed for longer than stale_s: a dead machine
    assert not claims.held("ab" * 32) and claims.acquire("ab" * 32)
    other.release("ab" * 32)  # the old owner cannot remove the new owner's claim
    assert lock.exists() and json.loads(lock.read_text())["owner"] == claims.owner
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "cd").mkdir()
    (tmp_path / "cd" / ("cd" * 32 + ".lock")).write_text(json.dumps(
        {"owner": "x", "host": claims.host, "pid": dead.pid, "time": time.time()}))  # killed on this host: fresh but dead
    assert claims.acquire("cd" * 32)
    assert not list(tmp_path.glob("*/*.stale"))


def worker_params(tmp_path: Path, base_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A params file for workers against the fake server: 24 partial anchors into `cache`, and a
    profile `bank` whose stages only replay (`llm.replay_only`, as the scale profile's) 8 from `bank` instead."""
    raw = {"seed": 7, "data": {"root": str(REPO / "data")},
           "llm": {"backend": "openai", "model": "fake-model", "base_url": base_url,
                   "api_key_env": "SYNCSE_TEST_KEY", "cache_dir": str(tmp_path / "cache"), "max_in_flight": 3,
                   "claim_poll_s": 0.02, "progress": False},
           "synth": {"n_partial": 24},
           "profiles": {"bank": {"llm": {"cache_dir": str(tmp_path / "bank"), "replay_only": True},
                                "synth": {"n_partial": 8}}}}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    return params_file


def test_worker_command_runs_the_real_pipeline_and_the_stage_then_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `python -m syncse.worker partial` processes share the work; the stage afterwards
    (the same `synthesize` the notebook calls) is served wholly from the cache."""
    from syncse.config import load_params
    from syncse.llm import open_client
    from syncse.synth import synthesize

    with FakeOpenAIServer(fresh_sentence, latency_s=0.02, api_key=KEY) as server:
        params_file = worker_params(tmp_path, server.base_url, monkeypatch)
        workers = [subprocess.Popen([sys.executable, "-m", "syncse.worker", "partial", "--params", str(params_file)],
                                    cwd=REPO) for _ in range(2)]
        assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
        sent = sum(server.log.attempts.values())
        assert sent == len(server.log.attempts) > 0  # no body sent twice by the two workers
        params = load_params(params_file)
        with open_client(params.llm) as client:
            result = synthesize("partial", client, params.synth, params.llm, params.seed, params.data.root)
        assert sum(server.log.attempts.values()) == sent  # the stage sent nothing
    assert client.stats.cache_hits == client.stats.requests == sent
    assert len(result.triplets) > 0 and result.metrics["requested"] == 24


def test_banking_the_study_cache_while_a_worker_runs_skips_its_in_flight_files() -> None:
    """Banking the study cache beside a running worker: its claims and half-written entries are ignored,
    so a pulled bank never holds a claim that makes the next machine wait; its entries are kept."""
    key = hashlib.sha256(b"a request").hexdigest()
    folder = Path("study-cache/llm")
    claim = RequestClaims(folder)._path(key)
    entry, half_written = folder / key[:2] / f"{key}.json", folder / key[:2] / ".q1w2e3r4.tmp"

    def ignored(path: Path) -> bool:
        done = subprocess.run([sys.executable, "-m", "dvc", "check-ignore", str(path)], cwd=REPO,
                              capture_output=True, text=True)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode == 0

    assert ignored(claim) and ignored(half_written)
    assert not ignored(entry) and not ignored(Path("studies/scale/dvc.lock")) and not ignored(Path("dvc.lock"))


def test_the_bank_is_one_dvc_output_per_entry_and_survives_a_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scripts/bank_push.py` on a bank first added as one output: every hash folder and ledger segment
    becomes an output of its own (no half-written entry), the push and a pull on an empty cache give back
    every response and charge, a later round adds the new segment and renews the changed folder, and a
    folder recorded but not stored is found (the script commits again)."""
    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True)

    def bank(*more: str) -> dict:
        subprocess.run([sys.executable, str(REPO / "scripts/bank_push.py"), *more], cwd=tmp_path, check=True)
        return yaml.safe_load((tmp_path / "study-cache.dvc").read_text())

    cache_dir = tmp_path / "study-cache/llm"
    with FakeOpenAIServer(api_key=KEY) as server:
        ChatClient(server.base_url, "fake-model", KEY, cache_dir, "fake", progress=False).complete(requests(6))
    ledger = SpendLedger(cache_dir / "ledger.jsonl", segment_bytes=100)  # a segment a charge
    for i in range(4):
        ledger.record(f"k{i}", 10, 5, 0.0, False)
    (next(cache_dir.glob("??")) / ".q1w2e3r4.tmp").write_text("{half")
    shutil.copy(REPO / ".dvcignore", tmp_path)  # the bank's: claims and half-written entries left out
    dvc("init", "--no-scm", "-q")
    dvc("remote", "add", "-d", "bank", str(tmp_path / "remote"))
    dvc("add", "-q", "study-cache")  # the bank as it was: one output, one manifest
    outs = bank()["outs"]
    entries = sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith("."))
    assert [out["path"] for out in outs] == [f"study-cache/llm/{name}" for name in entries]
    assert len(entries) == len(list(cache_dir.glob("??"))) + len(ledger.segments()) and len(ledger.segments()) >= 2
    assert all("md5" in out for out in outs) and sum(out.get("nfiles", 1) for out in outs) == 6 + len(ledger.segments())
    before = {p.relative_to(tmp_path): p.read_bytes() for p in cache_dir.rglob("*") if p.is_file() and ".tmp" not in p.name}
    shutil.rmtree(tmp_path / "study-cache")
    shutil.rmtree(tmp_path / ".dvc/cache")
    dvc("pull", "-q", "study-cache.dvc")
    assert {p.relative_to(tmp_path): p.read_bytes() for p in cache_dir.rglob("*") if p.is_file()} == before
    segments = set(ledger.segments().values())
    ledger.record("k4", 10, 5, 0.0, False)  # a new segment
    ResponseCache(cache_dir).put(outs[0]["path"][-2:] + "f" * 62, {"choices": [], "usage": {}})
    renewed = {out["path"]: out for out in bank("--no-push")["outs"]}
    (segment,) = set(ledger.segments().values()) - segments
    assert len(renewed) == len(outs) + 1 and "md5" in renewed[segment.relative_to(tmp_path).as_posix()]
    assert renewed[outs[0]["path"]]["md5"] != outs[0]["md5"] and renewed[outs[1]["path"]] == outs[1]
    assert "Data and pipelines are up to date" in dvc("status", "study-cache.dvc").stdout
    bank_push = load_script(REPO / "scripts" / "bank_push.py")
    folder = renewed[outs[0]["path"]]["md5"]
    monkeypatch.chdir(tmp_path)
    assert bank_push.not_in_cache(Path("study-cache.dvc")) == []
    (tmp_path / ".dvc/cache/files/md5" / folder[:2] / folder[2:]).unlink()  # what a commit racing a worker once left
    assert bank_push.not_in_cache(Path("study-cache.dvc")) == [outs[0]["path"]]


def test_a_worker_with_a_profile_fills_that_profiles_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--profile bank` works on the profile's stage (its anchors, its cache), as a study's bank is
    generated (`python -m syncse.worker partial --profile scale`): the worker generates although the
    profile's stages only replay, and the stage then replays it all."""
    from syncse.config import load_params
    from syncse.llm import open_client
    from syncse.synth import synthesize

    with FakeOpenAIServer(fresh_sentence, latency_s=0.0, api_key=KEY) as server:
        params_file = worker_params(tmp_path, server.base_url, monkeypatch)
        done = subprocess.run([sys.executable, "-m", "syncse.worker", "partial", "--params", str(params_file),
                               "--profile", "bank"], cwd=REPO, timeout=300)
        assert done.returncode == 0
        sent = sum(server.log.attempts.values())
        params = load_params(params_file, "bank")
        assert params.llm.replay_only
        with open_client(params.llm) as client:
            result = synthesize("partial", client, params.synth, params.llm, params.seed, params.data.root)
        assert sum(server.log.attempts.values()) == sent > 0  # the profile's stage: all from the bank
    assert client.stats.cache_hits == client.stats.requests == sent
    assert result.metrics["requested"] == 8
    assert (tmp_path / "bank").is_dir() and not (tmp_path / "cache").exists()
