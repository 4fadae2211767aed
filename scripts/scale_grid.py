"""The scale study's recipe grid, from its DVC experiments: per size, each run's recipe and the mean over
variants of its points' selected dev avg (STS-B dev + SICK-R trial), the kept recipe in bold (test scores
are never read).

    python scripts/scale_grid.py --num 20 --out results/scale/grid.json

Reads `dvc exp show` through `dvc.api.exp_show` (the experiments of the last `--num` commits) and keeps
those that wrote a point's training metrics (`studies/scale/metrics/train/<variant>-<N>.json`); the
choice is `syncse.scale_report.recipe_grid`'s. Write each size's kept recipe into
`profiles.scale.scale.sizes` by hand: the recipe in params.yaml is the one place it lives.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import dvc.api

from syncse.config import load_params
from syncse.scale import sizes
from syncse.scale_report import grid_markdown, recipe_grid

RECIPE = "profiles.scale.scale.sizes.{size}.{key}"
DEV = re.compile(r"^studies/scale/metrics/train/(.+-\d+)\.json:best\.avg$")


def in_state(shown: list[dict], *states: str) -> list[str]:
    """The names (or revisions) of the experiments of `dvc exp show` in one of `states` (Queued, Running, Failed)."""
    return [str(run.get("Experiment") or run.get("rev")) for run in shown if run.get("State") in states]


def grid_runs(num: int, study_sizes: list[int]) -> list[dict]:
    """One entry per finished experiment: its name, its recipe at each size, each point's selected dev avg.
    Refuses while any experiment is queued or running (`dvc queue start` returns at once): a recipe still
    training would silently be left out of the choice."""
    shown = dvc.api.exp_show(num=num)
    if waiting := in_state(shown, "Queued", "Running"):
        raise SystemExit(f"{len(waiting)} experiment(s) still queued or running ({', '.join(waiting)}): "
                         "wait for them (`dvc queue status`), then run this again")
    if failed := in_state(shown, "Failed"):
        print(f"left out, failed (`dvc queue logs <name>`): {', '.join(failed)}")
    runs = []
    for run in shown:
        dev = {m.group(1): value for key, value in run.items() if (m := DEV.match(key)) and isinstance(value, float)}
        if run.get("Experiment") and dev:
            recipes = {str(n): {k: run.get(RECIPE.format(size=n, key=k)) for k in ("lr", "epochs", "eval_steps")} for n in study_sizes}
            runs.append({"name": run["Experiment"], "sizes": recipes, "dev": dev})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10, help="experiments of the last N commits")
    parser.add_argument("--out", default=None, help="write the grid as JSON here")
    args = parser.parse_args()
    study_sizes = sizes(load_params("params.yaml", "scale").scale)
    runs = grid_runs(args.num, study_sizes)
    if not runs:
        raise SystemExit(f"no finished experiment of studies/scale in the last {args.num} commits")
    grid = recipe_grid(runs, study_sizes)
    print(grid_markdown(grid))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(grid.to_dict(orient="records"), indent=1) + "\n")


if __name__ == "__main__":
    main()
