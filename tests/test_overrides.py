"""`dvc exp run -S key=value` writes values that the typed config reads, or rejects by key path.

DVC rewrites params.yaml from the `-S` overrides before it runs a stage, writing `5e-5` as
`5e-05`: a string to YAML 1.1, hence to a plain `yaml.safe_load`. A temporary git+DVC project holds
the repository's params.yaml and one stage that loads it with `syncse.config.load_params`, as every
notebook does, and writes what it resolved; each test drives a real `dvc exp run -S`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]

RESOLVE = """\
import json
from syncse.config import load_params

params = load_params("params.yaml")
resolved = {
    "train.lr": params.train.lr,
    "unsup.lr": params.train.for_variant("unsup").lr,
    "llm.backoff_base_s": params.llm.backoff_base_s,
    "synth.n_partial": params.synth.n_partial,
}
with open("resolved.json", "w") as out:
    json.dump(resolved, out)
"""

STAGE = """\
stages:
  resolve:
    cmd: python resolve.py
    deps: [resolve.py]
    params: [train, llm, synth]
    outs:
      - resolved.json:
          cache: false
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("overrides")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "resolve.py").write_text(RESOLVE)
    (root / "dvc.yaml").write_text(STAGE)
    run_cli(["git", "init", "-q", "-b", "main"], root)
    run_cli(["git", "config", "user.name", "syncse"], root)
    run_cli(["git", "config", "user.email", "syncse@localhost"], root)
    run_cli(["dvc", "init", "-q"], root)
    run_cli(["git", "add", "-A"], root)
    run_cli(["git", "commit", "-qm", "a stage that loads params.yaml"], root)
    return root


def _exp_run(root: Path, *overrides: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`dvc exp run -S ...` in `root`: the finished process and the params.yaml DVC wrote
    (restored afterwards for the next test)."""
    args = ["dvc", "exp", "run", *(arg for o in overrides for arg in ("-S", o))]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True), (root / "params.yaml").read_text()
    finally:
        shutil.copy(REPO / "params.yaml", root / "params.yaml")


def test_exp_run_floats_in_exponent_notation_are_read_as_numbers(project: Path) -> None:
    done, written = _exp_run(project, "train.lr=5e-5", "+train.variants.unsup.lr=1e-5", "llm.backoff_base_s=3E-4",
                             "synth.n_partial=3e5")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "lr: 5e-05" in written and "lr: 1e-05" in written  # what YAML 1.1 reads as strings
    resolved = json.loads((project / "resolved.json").read_text())
    assert resolved == {"train.lr": 5e-5, "unsup.lr": 1e-5, "llm.backoff_base_s": 3e-4, "synth.n_partial": 300_000}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+train.variants.unsup.lr=fast", "train.variants.unsup.lr: expected float, got str 'fast'"),
        ("train.lr=5e-5x", "train.lr: expected float, got str '5e-5x'"),
        ("train.batch_size=32.5", "train.batch_size: expected int, got float 32.5"),
        ("llm.backend=vllm", "llm.backend: unknown value 'vllm'; allowed: ['embedded', 'openai', 'openai-batch']"),
    ],
)
def test_exp_run_rejects_a_bad_override_by_its_key_path(project: Path, override: str, message: str) -> None:
    done, _ = _exp_run(project, override)
    assert done.returncode != 0 and message in done.stdout + done.stderr


def test_add_or_override_can_be_run_again_where_add_is_refused(project: Path) -> None:
    """After a `dvc exp run -S +key=...` (interrupted or not) params.yaml holds the key: the same command is
    then refused, while `++` (add or override, the README's advice) runs again."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def exp_run(override: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["dvc", "exp", "run", "-S", override], cwd=project, env=env, capture_output=True, text=True)

    try:
        for _ in range(2):
            done = exp_run("++train.variants.unsup.lr=1e-5")
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        refused = exp_run("+train.variants.unsup.lr=1e-5")
        assert refused.returncode != 0 and "already" in refused.stdout + refused.stderr
    finally:
        shutil.copy(REPO / "params.yaml", project / "params.yaml")


def test_exp_run_sets_a_scale_size_recipe_under_its_quoted_key(project: Path, tmp_path: Path) -> None:
    """The scale study's grid command (README "The scale study"): `-S profiles.scale.scale.sizes.500.lr=...`
    changes the quoted size's recipe in place; no integer key 500 appears beside it; the grid's one seed is a list."""
    from syncse.config import load_params

    done, written = _exp_run(project, "profiles.scale.scale.sizes.500.lr=3e-5", "profiles.scale.scale.sizes.500.epochs=1.0",
                             "profiles.scale.train.seeds=[42]")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (tmp_path / "params.yaml").write_text(written)
    scale = load_params(tmp_path / "params.yaml", "scale").scale
    assert list(scale.sizes) == list(load_params(REPO / "params.yaml", "scale").scale.sizes)
    assert (scale.sizes["500"].lr, scale.sizes["500"].epochs) == (3e-5, 1.0)
    assert load_params(tmp_path / "params.yaml", "scale").train.seeds == [42]
