"""The scale study's recipe grid, from its DVC experiments: per size, each run's recipe and the mean over
variants of its points' selected dev avg (STS-B dev + SICK-R trial), the kept recipe in bold (test scores
are never read).

    python scripts/scale_grid.py --num 20 --out results/scale/grid.json

Reads `dvc exp show --json` (the experiments of the last `--num` commits) and keeps those that wrote a
point's training metrics (`studies/scale/metrics/train/<variant>-<N>.json`: `syncse.scale_report.grid_runs`,
which refuses while any experiment is queued or running); the choice is `syncse.scale_report.recipe_grid`'s.
Write each size's kept recipe into `profiles.scale.scale.sizes` by hand: the recipe in params.yaml is the
one place it lives.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from syncse.config import load_params
from syncse.scale import sizes
from syncse.scale_report import grid_markdown, grid_runs, recipe_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10, help="experiments of the last N commits")
    parser.add_argument("--out", default=None, help="write the grid as JSON here")
    args = parser.parse_args()
    study_sizes = sizes(load_params("params.yaml", "scale").scale)
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "--num", str(args.num)],
                           check=True, capture_output=True, text=True).stdout
    try:
        runs = grid_runs(json.loads(shown), study_sizes)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if not runs:
        raise SystemExit(f"no finished experiment of studies/scale in the last {args.num} commits")
    grid = recipe_grid(runs, study_sizes)
    print(grid_markdown(grid))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(grid.to_dict(orient="records"), indent=1) + "\n")


if __name__ == "__main__":
    main()
