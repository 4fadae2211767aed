"""The notebooks survive JupyterLab: opened and saved through jupytext's contents manager (the code
path JupyterLab's jupytext extension uses), each `notebooks/*.py` stays byte-identical, so DVC sees
no change; and the JupyterLab setting that `make setup` installs opens them as notebooks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.py"))


@pytest.fixture()
def contents(tmp_path: Path):
    """A jupytext contents manager over a copy of the repository's notebooks and jupytext config."""
    from jupytext import TextFileContentsManager

    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "jupytext.toml", tmp_path / "jupytext.toml")
    return TextFileContentsManager(root_dir=str(tmp_path))


def test_every_stage_notebook_is_checked() -> None:
    assert {"evaluate.py", "report.py", "synthesize.py", "train.py"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_open_and_save_leaves_the_file_byte_identical(contents, name: str) -> None:
    path = Path(contents.root_dir) / "notebooks" / name
    before = path.read_bytes()
    model = contents.get(f"notebooks/{name}", content=True, type="notebook")
    notebook = model["content"]
    assert notebook.metadata["kernelspec"]["name"] == "python3"  # JupyterLab starts the right kernel
    assert len(notebook.cells) > 2
    # What JupyterLab writes into the model once the kernel is up (ipykernel's display name, language info)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"}
    for cell in notebook.cells:
        cell.metadata["trusted"] = True
    contents.save({"type": "notebook", "format": "json", "content": notebook}, f"notebooks/{name}")
    assert path.read_bytes() == before


def test_an_edit_is_saved(contents) -> None:
    """The round trip above is not a no-op save: a real edit reaches the file."""
    name = NOTEBOOKS[0]
    notebook = contents.get(f"notebooks/{name}", content=True, type="notebook")["content"]
    notebook.cells[-1].source += "\n# edited"
    contents.save({"type": "notebook", "format": "json", "content": notebook}, f"notebooks/{name}")
    assert (Path(contents.root_dir) / "notebooks" / name).read_text().rstrip().endswith("# edited")


def test_jupyterlab_setting_opens_python_files_as_notebooks() -> None:
    settings = json.loads((REPO / "jupyter" / "overrides.json").read_text())
    viewers = settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["python"] == "Jupytext Notebook"
