"""Progress and stage summaries that read well both in a terminal and in a log.

In a terminal (stderr is a tty) a tqdm bar redraws in place as usual. In a log (papermill,
`dvc repro` output, CI) every redraw becomes a line, so there a bar redraws at most once per
`LOG_INTERVAL_S` and third-party bars (transformers' weight loading, datasets) are switched off;
each stage ends with one summary line saying what it produced and how long it took, and
`python -m syncse.progress LOG` turns those lines of a `dvc repro` log into one table of stage times.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import psutil
from tqdm import tqdm

logger = logging.getLogger(__name__)

LOG_INTERVAL_S = 30.0  # a bar writes at most one line per this many seconds into a log
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def is_interactive(stream: IO[str] | None = None) -> bool:
    """True when `stream` (default: stderr) is a terminal, where a bar may redraw freely."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(iterable: Iterable[Any] | None = None, *, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """`tqdm(iterable, **kwargs)`, live on a terminal and at most one line per `LOG_INTERVAL_S` in a log."""
    file = sys.stderr if file is None else file
    if not is_interactive(file):  # maxinterval too: tqdm's monitor thread would otherwise force a redraw every 10 s
        kwargs = {"mininterval": LOG_INTERVAL_S, "maxinterval": LOG_INTERVAL_S, "ascii": True, "ncols": 100, **kwargs}
    return tqdm(iterable, file=file, **kwargs)


def setup_logging(level: int = logging.INFO) -> None:
    """A stage's logging: timestamped lines, mteb's per-task chatter at WARNING (syncse logs each
    step itself), and no third-party bars when the output is a log."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("mteb").setLevel(logging.WARNING)
    if not is_interactive():
        import datasets  # imported here: only stages that log need them
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def stage_seconds() -> float:
    """Seconds since this process started: for a notebook stage, kernel start-up and imports included."""
    return time.time() - psutil.Process().create_time()


def format_seconds(seconds: float) -> str:
    """`83.4` -> `1 min 23 s`; under a minute, `41.2 s`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def log_summary(stage: str, produced: Sequence[str], seconds: float | None = None) -> str:
    """Log (and return) the one line that closes a stage: what it produced and how long it took."""
    took = format_seconds(stage_seconds() if seconds is None else seconds)
    line = f"{stage} done in {took}: " + "; ".join(produced)
    logger.info(line)
    return line


_CLOSING = re.compile(r"syncse\.progress INFO (?P<stage>.+?) done in (?:(?P<min>\d+) min (?P<sec>\d+) s|(?P<secs>[\d.]+) s):")


def stage_times(log: Iterable[str]) -> dict[str, float]:
    """Seconds per stage, read from the stages' closing lines (`log_summary`) in a `dvc repro` log;
    a per-seed line inside a stage (`train sup seed 42`) is not a stage. A stage that ran twice keeps its last time."""
    times = {}
    for line in log:
        found = _CLOSING.search(line)
        if found and not re.search(r" seed \d+$", found["stage"]):
            minutes, seconds = found["min"], found["sec"]
            times[found["stage"]] = 60 * int(minutes) + int(seconds) if minutes else float(found["secs"])
    return times


def stage_table(times: dict[str, float], wall: float | None = None) -> str:
    """A markdown table of `times` in run order, their sum, and with `wall` (the whole run's
    seconds) the rest: DVC's own work, notebook conversion and kernel start-up between stages."""
    rows = [f"| {stage} | {format_seconds(seconds)} |" for stage, seconds in times.items()]
    rows.append(f"| **stages, summed** | **{format_seconds(sum(times.values()))}** |")
    if wall is not None:
        rows.append(f"| DVC and start-up between stages | {format_seconds(max(wall - sum(times.values()), 0.0))} |")
        rows.append(f"| **`dvc repro`, wall** | **{format_seconds(wall)}** |")
    return "\n".join(["| stage | time |", "|---|---|", *rows])


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m syncse.progress LOG [--wall SECONDS]`: the stage-time table of a `dvc repro` log."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("log", type=Path, help="the captured output of `dvc repro` (make repro writes artifacts/repro.log)")
    parser.add_argument("--wall", type=float, help="seconds the whole `dvc repro` took")
    args = parser.parse_args(argv)
    times = stage_times(args.log.read_text(errors="replace").splitlines())
    if not times:
        print(f"{args.log}: no stage ran (every stage up to date, or no closing line in the log)")
        return
    print(stage_table(times, args.wall))


if __name__ == "__main__":
    main()
