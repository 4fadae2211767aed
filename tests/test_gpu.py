"""The GPU check (`benchmarks/gpu_train.py`, `benchmarks/gpu_check.sh`) and training on CUDA.

The CPU tests run the check's whole code path on a tiny random model. Tests marked `cuda` are
skipped where no CUDA device exists; `benchmarks/gpu_check.sh` runs them with `-m cuda`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from syncse.config import TrainConfig, load_params
from syncse.train import select_rows, train, variant_rows

from conftest import REPO

no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_train = _benchmark("gpu_train")
dvc_checkout = _benchmark("dvc_checkout")


@pytest.fixture(scope="module")
def word_architecture(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """An `--architecture` folder needing no model package: a small Llama config and a word-level
    tokenizer over the words of the sup rows."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    words = {w for row in variant_rows("sup", data_root) for s in (row.anchor, row.positive, row.negative)
             for w in re.findall(r"\w+|[^\w\s]", s)}
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", *sorted(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path_factory.mktemp("architecture")
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                            model_max_length=64).save_pretrained(path)
    LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                pad_token_id=0).save_pretrained(path)
    return path


def _llama_non_embedding_params(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, head_dim: int) -> int:
    """Matmul weights of a Llama decoder, counted by hand: q, k, v, o, gate/up/down, two norms a
    layer, and the final norm."""
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    return layers * (attention + 3 * hidden * intermediate + 2 * hidden) + hidden


def _padded_length(rows: list, batch_size: int, max_length: int) -> float:
    """T as the check defines it (the mean padded length of a column over the same 20 batches drawn
    with Random(0)), counting tokens here: the word-level tokenizer splits on `\\w+|[^\\w\\s]+`
    and adds no special token; a sentence is cut at `max_length`."""
    rng, lengths = random.Random(0), []
    for _ in range(20):
        batch = rng.sample(rows, batch_size)
        for column in ("anchor", "positive", "negative"):
            lengths.append(max(min(len(re.findall(r"\w+|[^\w\s]+", getattr(r, column))), max_length) for r in batch))
    return sum(lengths) / len(lengths)


def _stsb_test_x100(model_dir: Path, data_root: Path) -> float:
    """STS-B test Spearman x100 of a saved model, reloaded plainly and scored here."""
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    rows = [line.split("\t") for line in (data_root / "STSBenchmark/sts-test.csv").read_text().splitlines()]
    model = SentenceTransformer(str(model_dir), device="cpu")
    a, b = (model.encode([r[column].strip() for r in rows], convert_to_tensor=True) for column in (5, 6))  # (n, dim) each
    cosine = torch.nn.functional.cosine_similarity(a, b)  # (n,)
    return 100 * spearmanr(cosine.numpy(), [float(r[4]) for r in rows]).statistic


def test_gpu_check_runs_end_to_end_on_cpu(word_architecture: Path, tiny_dev: Path, data_root: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The check's whole path on a CPU: both trainers, the STS harness, the JSON and the training log.
    Its figures are checked against what the test computes itself: the model's STS-B score, the
    FLOPs from hand-counted parameters and counted tokens, and the speed ratio from the step times."""
    independent: dict[str, float] = {}
    harness = gpu_train.sts_scores

    def scored_twice(model_dir: Path, *args):  # noqa: ANN002, ANN202 - passes the check's own arguments on
        independent["stsb"] = _stsb_test_x100(model_dir, data_root)  # before the check's temporary folder goes
        return harness(model_dir, *args)

    timers: list[list[float]] = []  # each trainer's step timestamps, as taken

    class KeptTimer(gpu_train.StepTimer):
        def __init__(self) -> None:
            super().__init__()
            timers.append(self.times)

    monkeypatch.setattr(gpu_train, "sts_scores", scored_twice)
    monkeypatch.setattr(gpu_train, "StepTimer", KeptTimer)
    out = tmp_path / "out"
    report = gpu_train.main(["--device", "cpu", "--tiny", "--architecture", str(word_architecture), "--precisions", "bf16",
                             "--steps", "3", "--eval-steps", "3", "--warmup", "0", "--batch-size", "8",
                             "--params", str(REPO / "params.yaml"), "--data-root", str(data_root),
                             "--dev-root", str(tiny_dev), "--sts-tasks", "stsb", "--out", str(out)])
    assert json.loads((out / "gpu_train.json").read_text()) == report
    assert [(r["trainer"], r["precision"]) for r in report["runs"]] == [("syncse", "bf16"), ("plain_st_mnrl", "bf16")]
    for run in report["runs"]:
        assert run["steps"] == 3 and run["examples_per_s"] > 0 and run["mfu"] is None  # no peak known for a CPU
    ours = report["runs"][0]
    assert set(ours["sts"]) == {"stsb", "avg"} and ours["sts"]["stsb"] == pytest.approx(independent["stsb"], abs=0.02)
    assert ours["dev_best"]["step"] == 3
    tiny = gpu_train.TINY
    N = _llama_non_embedding_params(tiny["hidden_size"], tiny["intermediate_size"], tiny["num_hidden_layers"],
                                    tiny["num_attention_heads"], tiny["num_key_value_heads"], tiny["head_dim"])
    T = _padded_length(variant_rows("sup", data_root), 8, load_params(REPO / "params.yaml").train.for_variant("sup").max_seq_length)
    flops = report["flops"]
    assert (flops["non_embedding_params_N"], flops["layers_L"], flops["hidden_H"]) == (N, tiny["num_hidden_layers"], tiny["hidden_size"])
    assert flops["padded_length_T"] == pytest.approx(T, abs=0.01)
    expected = (6 * N + 12 * tiny["num_hidden_layers"] * tiny["hidden_size"] * T) * 3 * 8 * T  # (6 N + 12 L H T) x 3 B T
    assert flops["flops_per_step"] == pytest.approx(expected, rel=1e-9)
    assert len(timers) == 2 and [len(t) for t in timers] == [3, 3]  # syncse's trainer, then the plain one
    median = [statistics.median(b - a for a, b in zip(t, t[1:])) for t in timers]  # warmup 0: every interval
    assert [run["median_step_s"] for run in report["runs"]] == pytest.approx(median, rel=1e-9)
    assert report["ratio_syncse_to_plain"]["bf16"] == pytest.approx(median[1] / median[0], abs=1e-3)
    with (out / "train_log_bf16.csv").open(newline="") as lines:
        assert [int(r["step"]) for r in csv.DictReader(lines)] == [3]
    assert "syncse / plain sentence-transformers, bf16" in capsys.readouterr().out


def test_gpu_check_rejects_tiny_without_architecture() -> None:
    with pytest.raises(SystemExit):
        gpu_train.parse_args(["--tiny"])


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("Some Future GPU", None),
])
def test_peak_is_read_from_the_device_name(name: str, peak: float | None) -> None:
    """An H100 PCIe is not taken for the SXM part (first match wins); an unknown chip has no MFU."""
    assert gpu_train.peak_tflops(name) == peak


def test_dvc_checkout_restores_the_data_folder(tmp_path: Path, data_root: Path) -> None:
    """Without dvc, the tracked local remote gives back exactly the folder `dvc pull` gives."""
    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    restored = dvc_checkout.checkout(tmp_path / "data.dvc", REPO / "dvc-remote")
    files = sorted(p.relative_to(data_root) for p in data_root.rglob("*") if p.is_file())
    assert restored == len(files)
    assert all((tmp_path / "data" / f).read_bytes() == (data_root / f).read_bytes() for f in files)


def test_dvc_checkout_refuses_a_corrupt_object(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    manifest = [{"md5": "0" * 32, "relpath": "a.txt"}]
    dir_md5 = "ab" * 16 + ".dir"
    for md5, content in ((dir_md5, json.dumps(manifest)), ("0" * 32, "not what the md5 says")):
        dvc_checkout.remote_object(remote, md5).parent.mkdir(parents=True, exist_ok=True)
        dvc_checkout.remote_object(remote, md5).write_text(content)
    (tmp_path / "data.dvc").write_text(f"outs:\n- md5: {dir_md5}\n  path: data\n")
    with pytest.raises(ValueError, match="does not match its md5"):
        dvc_checkout.checkout(tmp_path / "data.dvc", remote)


def test_gpu_check_script_refuses_an_unknown_step() -> None:
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "deploy"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "build | stage | run" in done.stderr


def test_gpu_check_run_stops_at_once_without_the_staged_part(tmp_path: Path) -> None:
    """`run` on a fresh machine (no `stage` call before it) says so instead of failing later."""
    env = {**os.environ, "SYNCSE_PARTS": str(tmp_path / "parts"), "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "run"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 3 and "gpu_check.sh stage" in done.stderr


# --------------------------------------------------------------------------- CUDA


@pytest.fixture(scope="module")
def tiny_base(word_architecture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights for `word_architecture` (2 layers, 32 wide)."""
    return gpu_train.random_init_base(word_architecture, tmp_path_factory.mktemp("base"), tiny=False)


@pytest.mark.cuda
@no_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision_training_saves_a_model_that_reloads(
    precision: str, tiny_base: Path, tiny_dev: Path, data_root: Path, tmp_path: Path
) -> None:
    """Two steps of `syncse.train.train` on CUDA: finite loss, memory on the GPU, a reloadable model."""
    from sentence_transformers import SentenceTransformer

    cfg = TrainConfig(base=str(tiny_base), batch_size=8, max_steps=2, eval_steps=2, precision=precision,
                      attention_dropout=0.1)
    rows = select_rows(variant_rows("sup", data_root), 64, seed=0)
    torch.cuda.reset_peak_memory_stats()
    result = train(cfg, rows, tmp_path / "model", data_root=tiny_dev, checkpoint_dir=tmp_path / "ckpt",
                   log_path=tmp_path / "log.csv", seed=42, resume=False, device="cuda")
    assert result.steps == 2 and torch.cuda.max_memory_allocated() > 0
    with (tmp_path / "log.csv").open(newline="") as lines:
        assert all(math.isfinite(float(r["loss"])) for r in csv.DictReader(lines))
    model = SentenceTransformer(str(tmp_path / "model"), device="cuda")
    embeddings = model.encode(["A man is playing a guitar.", "A dog runs."], convert_to_tensor=True)
    assert embeddings.shape == (2, 32) and embeddings.is_cuda and torch.isfinite(embeddings).all()


@pytest.mark.cuda
@no_cuda
def test_cuda_device_has_a_known_bf16_peak() -> None:
    """MFU needs the chip's peak: the table must know the GPU the check runs on."""
    assert gpu_train.peak_tflops(torch.cuda.get_device_name()) is not None
