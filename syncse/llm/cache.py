"""The content-addressed response cache: one file per request, written atomically."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class ResponseCache:
    """Content-addressed store of raw responses: `<dir>/<key[:2]>/<key>.json`, one per request.

    Each entry is written to a temporary file in the same folder, fsynced, then renamed, so a
    kill -9 leaves either the whole entry or none of it.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for `key`, or None (an unreadable entry counts as a miss)."""
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("cache entry %s unreadable (%s): treating as a miss", path.name, err)
            return None

    def put(self, key: str, response: dict[str, Any]) -> None:
        """Store `response` under `key` atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(response, out, ensure_ascii=False)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def has(self, key: str) -> bool:
        """Whether an entry for `key` exists (without reading it)."""
        return self._path(key).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json"))

    def responses(self) -> Iterator[dict[str, Any]]:
        """Every stored response body, in no particular order."""
        for path in self.directory.glob("*/*.json"):
            yield json.loads(path.read_text(encoding="utf-8"))

    def generators(self) -> list[dict[str, Any]]:
        """Per generator (a response's `model`, a GGUF by its file name), sorted by name: responses,
        completion tokens, llama.cpp's busy hours (prompt plus generation ms from the `timings` the
        embedded server writes; 0 for an API's responses) and the first and last day (UTC). The hours
        of a bank grown over many runs, workers or machines, counted from the responses themselves."""
        rows: dict[str, dict[str, float]] = {}
        for body in self.responses():
            timings, created = body.get("timings", {}), float(body.get("created", 0))
            row = rows.setdefault(Path(str(body.get("model", "?"))).name,
                                  {"responses": 0, "tokens": 0, "ms": 0.0, "first": created, "last": created})
            row["responses"] += 1
            row["tokens"] += body.get("usage", {}).get("completion_tokens", 0)
            row["ms"] += timings.get("prompt_ms", 0.0) + timings.get("predicted_ms", 0.0)
            row["first"], row["last"] = min(row["first"], created), max(row["last"], created)

        def day(stamp: float) -> str:
            return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d")

        return [{"generator": model, "responses": int(row["responses"]), "completion tokens": int(row["tokens"]),
                 "llama.cpp hours": round(row["ms"] / 3.6e6, 2), "first": day(row["first"]), "last": day(row["last"])}
                for model, row in sorted(rows.items())]
