"""The `paper` profile trains every row of the paper's Table 2 as its source trained it.

Each expected setting cites where it comes from:
- SimCSE (princeton-nlp/SimCSE @ 49fa580): `run_unsup_example.sh`, `run_sup_example.sh`, and the
  README's hyperparameter table for RoBERTa-base (unsup: batch 512, lr 1e-5; sup: batch 512, lr 5e-5);
- SynCSE (hkust-nlp/SynCSE @ f8e0a9b): `scripts/sup_train_mp.sh`, the script behind SynCSE-partial
  and -scratch (RoBERTa-base);
- the SynCSE paper (arXiv 2305.15077), for the base model of Table 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncse.config import load_params

REPO = Path(__file__).resolve().parents[1]

UNSUP = "SimCSE run_unsup_example.sh"
SUP = "SimCSE run_sup_example.sh"
SIMCSE_README = "SimCSE README.md, 'Hyperparameters' table (RoBERTa-base)"
SYNCSE = "SynCSE scripts/sup_train_mp.sh"
PAPER = "SynCSE paper, Table 2 (RoBERTa-base)"

COMMON = {  # every row
    "base": ("roberta-base", f"{PAPER}; {SYNCSE}:19"),
    "pooler": ("cls", f"{UNSUP}:19; {SUP}:30; {SYNCSE}:33"),
    "max_seq_length": (32, f"{UNSUP}:14; {SUP}:25; {SYNCSE}:28"),
    "temperature": (0.05, f"{UNSUP}:22; {SUP}:32; {SYNCSE}:35"),
    "hard_negative_weight": (0.0, f"{SYNCSE}:41; SimCSE train.py default 0"),
    "precision": ("fp16", f"{UNSUP}:25; {SUP}:35; {SYNCSE}:38"),
    "batch_sampler": ("random", "transformers Trainer's RandomSampler (SimCSE trainers.py subclasses it)"),
    "drop_last": (False, "TrainingArguments.dataloader_drop_last default, not set by any script"),
    "mlm_probability": (0.15, "SimCSE train.py mlm_probability default"),
    "warmup_ratio": (0.0, "TrainingArguments default, not set by any script"),
    "weight_decay": (0.0, "TrainingArguments default, not set by any script"),
    "eval_last_step": (False, "transformers Trainer (SimCSE's fork): eval_strategy steps evaluates at multiples of eval_steps only"),
    "hidden_dropout": (None, "RoBERTa keeps its own hidden_dropout_prob 0.1; nothing added"),
    "num_examples": (0, "every row of the corpus"),
    "equal_rows": (False, "every row of the corpus"),
}
RECIPES = {
    "unsup": {
        "epochs": (1.0, f"{UNSUP}:11"),
        "batch_size": (512, SIMCSE_README),
        "lr": (1e-5, SIMCSE_README),
        "select_on": ("stsb", f"{UNSUP}:16 (metric_for_best_model stsb_spearman)"),
        "eval_steps": (125, f"{UNSUP}:18"),
        "mlp_only_train": (True, f"{UNSUP}:20"),
        "mlm_weight": (0.0, f"{UNSUP}: no --do_mlm"),
    },
    "sup": {
        "epochs": (3.0, f"{SUP}:22"),
        "batch_size": (512, f"{SIMCSE_README}; {SUP}:23 (128 x 4 GPUs)"),
        "lr": (5e-5, f"{SUP}:24; {SIMCSE_README}"),
        "select_on": ("stsb", f"{SUP}:27 (metric_for_best_model stsb_spearman)"),
        "eval_steps": (125, f"{SUP}:29"),
        "mlp_only_train": (False, f"{SUP}: no --mlp_only_train"),
        "mlm_weight": (0.0, f"{SUP}: no --do_mlm"),
    },
    **{
        variant: {
            "epochs": (3.0, f"{SYNCSE}:25"),
            "batch_size": (512, f"{SYNCSE}:26"),
            "lr": (5e-5, f"{SYNCSE}:27"),
            "select_on": ("stsb+sickr", f"{SYNCSE}:30 (metric_for_best_model avg_sts)"),
            "eval_steps": (25, f"{SYNCSE}:32"),
            "mlp_only_train": (False, f"{SYNCSE}: no --mlp_only_train"),
            "mlm_weight": (0.1, f"{SYNCSE}:40 (--do_mlm; mlm_weight default 0.1 in SimCSE train.py)"),
        }
        for variant in ("partial", "scratch", "mixed")
    },
}


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    path = tmp_path_factory.mktemp("paper") / "params.yaml"
    path.write_text(yaml.safe_dump({**raw, "profile": "paper"}))
    return load_params(path)


VARIANTS = list(yaml.safe_load((REPO / "params.yaml").read_text())["train"]["variants"])  # the one declaration


def test_every_variant_has_a_recipe() -> None:
    assert set(VARIANTS) <= set(RECIPES) == {*VARIANTS, "mixed"}  # mixed: added by a study (-S +train.variants.mixed...)


@pytest.mark.parametrize("variant", sorted(RECIPES))
def test_paper_profile_trains_each_row_as_its_source(paper, variant: str) -> None:
    cfg = paper.train.for_variant(variant)
    wrong = {key: (getattr(cfg, key), expected, source)
             for key, (expected, source) in {**COMMON, **RECIPES[variant]}.items() if getattr(cfg, key) != expected}
    assert not wrong, f"{variant}: (resolved, expected, source) {wrong}"


def test_paper_profile_seed_and_evaluation(paper) -> None:
    assert paper.seed == 42  # SynCSE scripts/sup_train_mp.sh:39
    assert paper.data.require_full  # the paper's corpora (nli_for_simcse.csv, wiki1m_for_simcse.txt), never the samples
    assert paper.synth.overgenerate == 1.0  # "the same number of generated sentences" (PAPER.md): no paid surplus
    assert paper.synth.filters == ["failed", "max_words"]  # the cleaned release's filters (README: Paper vs this repository)
    assert paper.evaluate.precision == "fp32"  # evaluation.py runs the model in fp32
    assert paper.evaluate.max_seq_length >= 128  # SimCSE's SentEval batcher pads and never truncates (test_train checks 128 cuts nothing)


def test_recipes_print_per_variant(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m syncse.config --profile paper` shows each variant's resolved recipe before a paid run."""
    from syncse.config import main

    main([str(REPO / "params.yaml"), "--profile", "paper"])
    shown = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    assert shown["select_on"] == "| select_on | stsb | stsb | stsb+sickr | stsb+sickr |"
    assert shown["eval_steps"] == "| eval_steps | 125 | 125 | 25 | 25 |"
