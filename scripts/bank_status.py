"""What a response cache holds, per generator: responses, tokens and llama.cpp's own generation hours.

The scale study's bank grows over many runs (README "The scale study"); its hours are counted from the
`timings` llama.cpp writes into every embedded response (prompt plus generation milliseconds: the
server's busy time, one request at a time with `llm.n_parallel: 1`), so they hold however many runs,
workers or machines filled the cache. Responses without timings (a remote API's) count as requests only.

    python scripts/bank_status.py [study-cache/llm]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from syncse.report import md_table


def bank_status(cache_dir: Path) -> list[dict[str, object]]:
    """One row per generator (the response's `model`, its file name for a GGUF) in `cache_dir`."""
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path in cache_dir.glob("*/*.json"):
        body = json.loads(path.read_text(encoding="utf-8"))
        row = rows[Path(str(body.get("model", "?"))).name]
        timings = body.get("timings", {})
        row["responses"] += 1
        row["completion_tokens"] += body.get("usage", {}).get("completion_tokens", 0)
        row["busy_ms"] += timings.get("prompt_ms", 0.0) + timings.get("predicted_ms", 0.0)
        created = float(body.get("created", 0))
        row["first"] = min(row.get("first", created), created)
        row["last"] = max(row["last"], created)
    day = lambda stamp: datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d")  # noqa: E731
    return [{"generator": model, "responses": int(row["responses"]), "completion tokens": int(row["completion_tokens"]),
             "llama.cpp hours": round(row["busy_ms"] / 3.6e6, 2), "first": day(row["first"]), "last": day(row["last"])}
            for model, row in sorted(rows.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache_dir", nargs="?", default="study-cache/llm")
    args = parser.parse_args()
    status = bank_status(Path(args.cache_dir))
    print(md_table(list(status[0]), [list(row.values()) for row in status]) if status else f"{args.cache_dir}: empty")


if __name__ == "__main__":
    main()
