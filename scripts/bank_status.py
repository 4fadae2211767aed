"""What a response cache holds, per generator: responses, tokens and llama.cpp's own generation hours.

The scale study's bank grows over many runs (README "The scale study"); its hours are counted from the
`timings` llama.cpp writes into every embedded response (prompt plus generation milliseconds: the
server's busy time, one request at a time with `llm.n_parallel: 1`), so they hold however many runs,
workers or machines filled the cache. Responses without timings (a remote API's) count as requests only.

    python scripts/bank_status.py [study-cache/llm]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from syncse.llm import ResponseCache
from syncse.report import md_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache_dir", nargs="?", default="study-cache/llm")
    args = parser.parse_args()
    if not Path(args.cache_dir).is_dir():
        parser.error(f"{args.cache_dir}: no such response cache (dvc pull study-cache.dvc?)")
    status = ResponseCache(args.cache_dir).generators()
    print(md_table(list(status[0]), [list(row.values()) for row in status]) if status else f"{args.cache_dir}: empty")


if __name__ == "__main__":
    main()
