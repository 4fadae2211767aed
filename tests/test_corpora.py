"""`data.require_full`: a paid run never trains on the shipped samples without saying so; with the
key (the `paper` profile) it stops before any request is sent and before any step is trained."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import cli_env

from syncse.data import FULL_NLI, FULL_WIKI, DataError, check_corpora
from syncse.testing import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]


def test_samples_standing_in_are_reported(data_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="syncse.data"):
        assert check_corpora(data_root) == {"nli": "sample", "wiki": "sample"}
    assert f"{FULL_NLI}, {FULL_WIKI} not in {data_root}/: the shipped samples stand in" in caplog.text


def test_full_corpora_are_named_full(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FULL_NLI).write_text("sent0,sent1,hard_neg\na,b,c\n")
    (tmp_path / FULL_WIKI).write_text("a sentence\n")
    with caplog.at_level(logging.WARNING, logger="syncse.data"):
        assert check_corpora(tmp_path, require_full=True) == {"nli": "full", "wiki": "full"}
    assert not caplog.text


def test_require_full_names_each_missing_file_and_the_step(tmp_path: Path) -> None:
    (tmp_path / FULL_NLI).write_text("sent0,sent1,hard_neg\na,b,c\n")
    with pytest.raises(DataError, match=rf"data.require_full: {FULL_WIKI} missing from .*step 2") as raised:
        check_corpora(tmp_path, require_full=True)
    assert FULL_NLI not in str(raised.value)


def run_stage(notebook: str, project: Path, *args: str) -> subprocess.CompletedProcess:
    """A stage's command (jupytext | papermill) in `project`, as dvc.yaml runs it."""
    command = (f"jupytext --to ipynb --set-kernel python3 -o - {REPO}/notebooks/{notebook}.py | "
               f"papermill --cwd . - out.ipynb {' '.join(args)}")
    return subprocess.run(command, shell=True, cwd=project, env={**cli_env(), "OPENAI_API_KEY": "sk-test"},
                          capture_output=True, text=True)


@pytest.mark.parametrize(("notebook", "args"), [("synthesize", ("-p", "name", "partial")), ("train", ("-p", "variant", "sup"))])
def test_the_paper_profile_stops_before_any_request_or_step_on_samples(data_root: Path, tmp_path: Path,
                                                                       notebook: str, args: tuple[str, ...]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(profile="paper", data={"root": str(data_root)})
    with FakeOpenAIServer() as server:
        params["profiles"]["paper"]["llm"]["base_url"] = server.base_url
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        done = run_stage(notebook, tmp_path, *args)
    assert done.returncode != 0
    assert f"data.require_full: {FULL_NLI}, {FULL_WIKI} missing from {data_root}/" in done.stdout + done.stderr
    assert sum(server.log.attempts.values()) == 0 and server.log.uploads == 0  # nothing sent, nothing paid
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "metrics").exists()  # nothing written either
