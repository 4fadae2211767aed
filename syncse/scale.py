"""The scale study's points: a variant trained at one size N, and a size past the variant's pool.

A point trains on exactly N rows, drawn anew by each seed (nested: a seed's rows at a smaller N lie inside
its rows at a larger one, `syncse.train.select_rows`), with that size's recipe (`point_config`,
from `scale.sizes`), under the name `<variant>-<N>` (`point_name`). A size past a variant's pool is not
trained on fewer rows: the point is recorded as absent (`absence`, `record_absent`), and every output
of its stages says so (`read_absent`). The curve drawn from the points is `syncse.scale_report`'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from syncse.config import ScaleConfig, TrainConfig
from syncse.data import write_json

logger = logging.getLogger(__name__)

ABSENT_FILE = "absent.json"  # in an absent point's model and checkpoint folders: why nothing was trained


def point_name(variant: str, size: int) -> str:
    """`partial-500`: the name of a point's models, checkpoints and metric files."""
    return f"{variant}-{size}"


def sizes(scale: ScaleConfig) -> list[int]:
    """The study's sizes N, ascending."""
    return sorted(int(n) for n in scale.sizes)


def point_config(train: TrainConfig, scale: ScaleConfig, size: int) -> TrainConfig:
    """`train` (a variant's resolved settings) with size `size`'s recipe: N rows, its lr, epochs and eval_steps."""
    recipe = scale.sizes.get(str(size))
    if recipe is None:
        raise ValueError(f"size {size}: no recipe in scale.sizes; declared sizes: {sizes(scale)}")
    if train.equal_rows:
        raise ValueError("train.equal_rows is true: a scale point trains its variant on exactly N rows of its own; "
                         "set it false in profiles.scale")
    return dataclasses.replace(train, num_examples=size, lr=recipe.lr, epochs=recipe.epochs, eval_steps=recipe.eval_steps)


def absence(variant: str, size: int, available: int) -> dict[str, Any] | None:
    """The record of a point past its pool (`available < size` rows), None where the pool reaches it."""
    if available >= size:
        return None
    return {"absent": True, "variant": variant, "size": size, "available": available,
            "reason": f"{variant}'s pool holds {available:,} rows, fewer than {size:,}: not trained (never on fewer rows)"}


def record_absent(record: Mapping[str, Any], folders: Sequence[str | Path]) -> None:
    """Write `record` as `ABSENT_FILE` into each folder (an absent point's model and checkpoint outputs)."""
    for folder in folders:
        write_json(Path(folder) / ABSENT_FILE, dict(record))
    logger.warning("%s", record["reason"])


def read_absent(folder: str | Path) -> dict[str, Any] | None:
    """The absence record in `folder` (`record_absent`), None for a trained point."""
    path = Path(folder) / ABSENT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
