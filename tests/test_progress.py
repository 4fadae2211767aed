"""Progress bars redraw live on a terminal and sparingly in a log; stages close with one summary line."""

from __future__ import annotations

import io
import logging
import time

import pytest

from syncse.progress import LOG_FORMAT, LOG_INTERVAL_S, format_seconds, is_interactive, log_summary, main, progress_bar, stage_times


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _run_bar(stream: io.StringIO, steps: int = 20, pause_s: float = 0.05) -> list[str]:
    """Advance a bar `steps` times, `pause_s` apart; return every redraw it wrote."""
    with progress_bar(total=steps, desc="encoding", file=stream, miniters=1) as bar:
        for _ in range(steps):
            time.sleep(pause_s)
            bar.update(1)
    return [frame for frame in stream.getvalue().replace("\n", "\r").split("\r") if frame.strip()]


def test_terminal_bar_redraws_as_it_goes() -> None:
    frames = _run_bar(Terminal())
    assert is_interactive(Terminal())
    # 1 s of work at tqdm's terminal default of 0.1 s between redraws: many frames
    assert len(frames) >= 5
    assert "20/20" in frames[-1]


def test_logged_bar_writes_only_its_first_and_last_line() -> None:
    assert LOG_INTERVAL_S >= 10  # a few lines a minute at most
    stream = io.StringIO()  # not a terminal, like papermill's or DVC's captured output
    frames = _run_bar(stream)
    assert not is_interactive(stream)
    assert len(frames) == 2, frames
    assert "0/20" in frames[0] and "20/20" in frames[1]


def test_summary_line_names_outputs_and_duration(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="syncse.progress"):
        line = log_summary("evaluate sup", ["metrics/sts/sup.json (avg 54.32)", "26,981 sentences"], seconds=83.4)
    assert line == "evaluate sup done in 1 min 23 s: metrics/sts/sup.json (avg 54.32); 26,981 sentences"
    assert caplog.messages == [line]
    assert format_seconds(41.24) == "41.2 s"


def test_stage_table_from_closing_lines(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The closing lines as a stage logs them, among other output: per-seed lines are not stages, the
    rest of the wall time is DVC's and start-up's."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    summary = logging.getLogger("syncse.progress")
    summary.addHandler(handler)
    summary.setLevel(logging.INFO)
    try:
        log_summary("synthesize partial", ["artifacts/synth/partial.jsonl"], seconds=111.4)
        log_summary("train sup seed 42", ["artifacts/models/sup/seed-42"], seconds=50.0)
        log_summary("train sup", ["metrics/train/sup.json"], seconds=75.2)
        log_summary("report", ["artifacts/report/"], seconds=40.0)
    finally:
        summary.removeHandler(handler)
    log = tmp_path / "repro.log"
    log.write_text("Running stage 'synthesize@partial':\n" + stream.getvalue() + "Stage 'evaluate_base' didn't change, skipping\n")
    assert stage_times(log.read_text().splitlines()) == {"synthesize partial": 111, "train sup": 75, "report": 40.0}
    main([str(log), "--wall", "300"])
    table = capsys.readouterr().out.splitlines()
    assert table[2:] == ["| synthesize partial | 1 min 51 s |", "| train sup | 1 min 15 s |", "| report | 40.0 s |",
                         "| **stages, summed** | **3 min 46 s** |", "| DVC and start-up between stages | 1 min 14 s |",
                         "| **`dvc repro`, wall** | **5 min 00 s** |"]
    (tmp_path / "quiet.log").write_text("Stage 'report' didn't change, skipping\n")
    main([str(tmp_path / "quiet.log")])
    assert "no stage ran" in capsys.readouterr().out

