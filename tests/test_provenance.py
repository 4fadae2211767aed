"""The code fingerprint in the training key: a finished run is reused, and a checkpoint resumed,
only under the code that made it (a stale model is never handed back after a code change)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env
from sentence_transformers import SentenceTransformer

import syncse
from syncse.provenance import _imports, code_fingerprint, imported_modules, module_file

PACKAGE = Path(syncse.__file__).resolve().parent
REPO = PACKAGE.parent


def copy_package(where: Path) -> Path:
    """A copy of the `syncse` package under `where` (which a subprocess started there imports)."""
    shutil.copytree(PACKAGE, where / "syncse", ignore=shutil.ignore_patterns("__pycache__"))
    return where / "syncse"


def test_training_depends_on_the_modules_it_imports_and_no_others() -> None:
    modules = imported_modules("syncse.train")
    assert {"syncse.train", "syncse.losses", "syncse.encoders", "syncse.data", "syncse.config"} <= set(modules)
    assert "syncse.evaluate" in modules  # imported inside a function (DevEvaluator): still a dependency
    packages = {".".join(name.split(".")[:2]) for name in modules}  # syncse.llm.client -> syncse.llm
    assert not {"syncse.llm", "syncse.synth", "syncse.report"} & packages


def test_relative_imports_and_packages_are_followed(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("from . import c\n")
    (package / "sub" / "b.py").write_text("from ..d import x\n")
    (package / "sub" / "c.py").write_text("")
    (package / "d.py").write_text("import os\nx = 1\n")
    (package / "unused.py").write_text("")
    assert imported_modules("pkg.a", package) == ["pkg.a", "pkg.d", "pkg.sub", "pkg.sub.b", "pkg.sub.c"]
    with pytest.raises(ValueError, match="pkg.missing: no source file"):
        imported_modules("pkg.missing", package)


def test_any_edit_of_a_training_module_changes_the_fingerprint(tmp_path: Path) -> None:
    copy = copy_package(tmp_path)
    before = code_fingerprint("syncse.train", copy)
    assert before == code_fingerprint("syncse.train", PACKAGE)  # the same sources: the same key
    assert before["torch"] == importlib.metadata.version("torch")
    assert before["sentence-transformers"] == importlib.metadata.version("sentence-transformers")
    (copy / "report" / "markdown.py").write_text((copy / "report" / "markdown.py").read_text() + "\n# not imported by training\n")
    assert code_fingerprint("syncse.train", copy) == before
    (copy / "losses.py").write_text((copy / "losses.py").read_text() + "\n# a comment\n")
    assert code_fingerprint("syncse.train", copy)["sources_sha256"] != before["sources_sha256"]


TRAIN_SCRIPT = """
import json, logging, sys
import syncse
logging.basicConfig(level=logging.INFO)
from syncse.config import TrainConfig
from syncse.train import select_rows, train, variant_rows
base, data, dev, out = sys.argv[1:5]
cfg = TrainConfig(base=base, pooler="cls", batch_size=8, lr=5e-4, max_steps=4, eval_steps=2, precision="fp32")
rows = select_rows(variant_rows("sup", data), 32, 0)
result = train(cfg, rows, out + "/model", data_root=dev, checkpoint_dir=out + "/ckpt", seed=7, device="cpu")
print("PACKAGE", syncse.__file__)
"""


def test_a_changed_loss_retrains_and_unchanged_code_reuses(tiny_bert: str, tiny_dev: Path, data_root: Path, tmp_path: Path) -> None:
    """The issue's case: the MNRL scale set to ~0 in syncse/losses.py must not hand back the old model."""
    copy = copy_package(tmp_path / "code")
    out = tmp_path / "run"

    def run() -> str:
        done = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, tiny_bert, str(data_root), str(tiny_dev), str(out)],
                              cwd=copy.parent, env=cli_env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"PACKAGE {copy / '__init__.py'}" in done.stdout  # the copy ran, not the installed package
        return done.stderr

    def model() -> dict:
        return {k: v.clone() for k, v in SentenceTransformer(str(out / "model"), device="cpu").state_dict().items()}

    run()
    first = model()
    assert "finished training already" in run()  # unchanged code: reused, not retrained
    assert all((first[k] == v).all() for k, v in model().items())
    losses = copy / "losses.py"
    assert "scale=1.0 / temperature" in losses.read_text()
    losses.write_text(losses.read_text().replace("scale=1.0 / temperature", "scale=1e-6"))
    log = run()
    assert "finished training already" not in log
    assert "come from another code: starting over" in log
    assert any(not (first[k] == v).all() for k, v in model().items())  # the new code's model, not the old one
    stored = json.loads((out / "ckpt" / "syncse_train_config.json").read_text())
    assert stored["code"] == code_fingerprint("syncse.train", copy)


def _script_modules(script: Path) -> set[str]:
    """The `syncse` modules a script (a notebook's source) imports, directly or through another."""
    named = _imports(ast.parse(script.read_text(encoding="utf-8")), script.stem, is_package=False)
    return {found for name in named if name.split(".")[0] == "syncse" and module_file(name) is not None
            for found in imported_modules(name)}


def test_every_stage_declares_the_library_code_it_runs() -> None:
    """DVC re-runs a stage only when a declared dep changes: a module its notebook (or `python -m`)
    imports but the stage does not list would hand back a stale result after an edit. Every stage of
    every pipeline (the main job, studies/*) is checked, through DVC's own reading of the files."""
    from dvc.repo import Repo

    package_init = PACKAGE / "__init__.py"
    assert not package_init.read_text().strip(), "syncse/__init__.py has code: declare it in the stages"
    checked, missing = 0, {}
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            commands = " ".join(stage.cmd) if isinstance(stage.cmd, list) else stage.cmd or ""
            modules = set()
            for script in re.findall(r"notebooks/\w+\.py", commands):
                modules |= _script_modules(REPO / script)
            for module in re.findall(r"python -m (syncse[\w.]*)", commands):
                modules |= set(imported_modules(module))
            if not modules:
                continue
            checked += 1
            deps = [Path(dep.fs_path) for dep in stage.deps]
            undeclared = sorted(str(path.relative_to(REPO)) for path in map(module_file, modules)
                                if path != package_init and not any(path == dep or dep in path.parents for dep in deps))
            if undeclared:
                missing[f"{Path(stage.path).relative_to(REPO)}:{stage.addressing}"] = undeclared
    assert checked >= 20  # the main job's stages and both studies'
    assert not missing
