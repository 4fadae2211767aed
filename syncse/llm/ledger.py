"""What was paid and the spending cap: `SpendLedger`, the durable record beside the cache shared by
every stage, resumed run and worker using it, and `BudgetTracker`, which prices responses and says
when a cap on tokens or USD is reached.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.jsonl"  # beside the response cache: what every run using it has paid (its first segment)
SEGMENT_BYTES = 1 << 20  # a segment this full is closed: the next charge starts `ledger.<n+1>.jsonl`, so no file of
#                          the ledger outgrows what a git-tracked DVC remote should hold (README "The bank")


class SpendLedger:
    """What was paid, durably: one JSON line per paid response, appended to `path` and, once a segment
    holds `segment_bytes`, to the next one beside it (`ledger.1.jsonl`, `ledger.2.jsonl`, ...).

    Each line is one `write` on a file opened with O_APPEND, then fsynced, so lines from concurrent
    processes never interleave and a kill -9 loses nothing charged; the totals are always re-read
    from every segment, so every stage, resumed run and worker sharing it sees one running sum.
    Concurrent writers that close a segment at once both go on in the same next one.
    """

    def __init__(self, path: str | Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self.tokens = 0
        self.usd = 0.0
        self._offsets: dict[Path, int] = {}
        self._numbered = re.compile(rf"{re.escape(self.path.stem)}\.([1-9]\d*){re.escape(self.path.suffix)}")
        self._lock = threading.Lock()
        self.refresh()

    def segments(self) -> dict[int, Path]:
        """The ledger's files by the order they were filled: 0 `path`, then n `<stem>.<n><suffix>`."""
        pattern = f"{self.path.stem}.*{self.path.suffix}"
        numbered = {int(m.group(1)): candidate for candidate in self.path.parent.glob(pattern)
                    if (m := self._numbered.fullmatch(candidate.name))}
        return {0: self.path, **dict(sorted(numbered.items()))}

    def refresh(self) -> None:
        """Add the lines appended since the last read (by this or any other process)."""
        with self._lock:
            for segment in self.segments().values():
                self._read(segment)

    def _read(self, segment: Path) -> None:
        offset = self._offsets.get(segment, 0)
        try:
            with segment.open("rb") as ledger:
                ledger.seek(offset)
                fresh = ledger.read()
        except FileNotFoundError:
            return
        complete = fresh[: fresh.rfind(b"\n") + 1]  # a line still being written is read next time
        self._offsets[segment] = offset + len(complete)
        for line in complete.splitlines():
            try:
                entry = json.loads(line)
                self.tokens += int(entry["prompt_tokens"]) + int(entry["completion_tokens"])
                self.usd += float(entry["usd"])
            except (ValueError, KeyError, TypeError):
                logger.warning("%s: unreadable ledger line skipped: %.80r", segment, line)

    def record(self, key: str, prompt_tokens: int, completion_tokens: int, usd: float, estimated: bool) -> None:
        """Append one paid response (before its cache entry is written: a kill never hides a charge)."""
        append_json_line(self._open_segment(), {"key": key, "prompt_tokens": prompt_tokens,
                                                "completion_tokens": completion_tokens, "usd": usd,
                                                "estimated": estimated, "time": round(time.time(), 3)})
        self.refresh()

    def _open_segment(self) -> Path:
        """The last segment, or the next one when the last holds `segment_bytes` already."""
        count, last = max(self.segments().items())
        if not last.is_file() or last.stat().st_size < self.segment_bytes:
            return last
        return self.path.with_name(f"{self.path.stem}.{count + 1}{self.path.suffix}")


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
    responses per worker. `replay_only` is a cap of nothing at all: no request is ever sent.
    """

    def __init__(
        self,
        max_tokens: int | None = None,
        max_usd: float | None = None,
        usd_per_1m_input: float = 0.0,
        usd_per_1m_output: float = 0.0,
        ledger: SpendLedger | None = None,
        replay_only: bool = False,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_usd = max_usd
        self.usd_per_1m_input = usd_per_1m_input
        self.usd_per_1m_output = usd_per_1m_output
        self.ledger = ledger
        self.replay_only = replay_only
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
        if self.replay_only:
            with self._lock:
                if not self.exhausted:
                    self.exhausted = True
                    logger.warning("llm.replay_only: a response is not in the cache; nothing will be sent")
            return False
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
        if self.replay_only:
            return (f"{what}: llm.replay_only is true and {missing:,} of {requested:,} requested rows need "
                    "responses that are not in llm.cache_dir; nothing was sent. Fill the cache first (a study's "
                    "bank: `python -m syncse.worker <pipeline> --profile <profile>`, README \"The bank\"; or "
                    "`dvc pull` its cache) or set llm.replay_only: false to generate them in this stage.")
        tokens, usd = self.totals()
        where = f" (ledger: {self.ledger.path})" if self.ledger is not None else ""
        return (f"{what}: budget cap reached after paying {tokens:,} tokens, ${usd:.2f} in all{where}; "
                f"caps: llm.max_budget_tokens={self.max_tokens}, llm.max_budget_usd={self.max_usd}. "
                f"{missing:,} of {requested:,} requested rows are missing. Responses already paid for are "
                "cached and reused: raise the cap (e.g. `dvc exp run -S llm.max_budget_usd=<more>`) and "
                "run again to go on.")
