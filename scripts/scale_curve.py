"""The scale study's curve, point by point, over as many sessions (and machines) as it takes.

    python scripts/scale_curve.py                      # every point not yet done, then the report
    python scripts/scale_curve.py --stop-after 120     # start no point after 120 minutes; commit, go on next time

The points (`evaluate@<variant>-<N>` and `evaluate_pair@partial-<N>`, smaller N first, after `evaluate_base`) are
brought up to date one at a time with `dvc repro`, then the report with `dvc repro --allow-missing`. A point done
in an earlier session on another machine has its lock entry and metrics in git but not its models (too large for
the git-tracked remote): `dvc repro --dry --allow-missing` finds it up to date and it is skipped. A point that
still has to run is reproduced without `--allow-missing`, so a model lost with its machine before its evaluation
is trained again, never assumed. Commit `studies/scale/dvc.lock` and the study's metrics after each session.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from syncse.config import load_params
from syncse.scale import point_name, sizes
from syncse.scale_report import STUDY_PIPELINE

DVC = [sys.executable, "-m", "dvc"]


def curve_targets(variants: Sequence[str], study_sizes: Sequence[int], study: str = STUDY_PIPELINE) -> list[str]:
    """The study's evaluation stages in the order they are run: the base, then each size's points, smaller N first."""
    points = [name for n in sorted(study_sizes)
              for name in [*(f"evaluate@{point_name(v, n)}" for v in variants), f"evaluate_pair@{point_name('partial', n)}"]]
    return [f"{study}:{name}" for name in ["evaluate_base", *points]]


def up_to_date(target: str) -> bool:
    """Whether `dvc repro` has nothing to run for `target` once missing outputs recorded in the lock are allowed
    (a point of an earlier machine: its models are not here)."""
    done = subprocess.run([*DVC, "repro", "--dry", "--allow-missing", target], capture_output=True, text=True)
    return done.returncode == 0 and "Running stage" not in done.stdout


def bring_up_to_date(targets: Sequence[str], stop_after_s: float, clock: Callable[[], float] = time.monotonic) -> list[str]:
    """Reproduce each of `targets` that is not up to date, in order, starting none once `stop_after_s` seconds
    have passed. Returns the targets left to run."""
    started, left = clock(), []
    for target in targets:
        if up_to_date(target):
            print(f"done already: {target}", flush=True)
        elif clock() - started >= stop_after_s:
            left.append(target)
        else:
            print(f"running: {target}", flush=True)
            subprocess.run([*DVC, "repro", target], check=True)
    return left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-after", type=float, default=float("inf"), metavar="MINUTES",
                        help="start no point after this many minutes (the point running then finishes)")
    args = parser.parse_args()
    params = load_params("params.yaml", "scale")
    left = bring_up_to_date(curve_targets(list(params.train.variants), sizes(params.scale)), args.stop_after * 60)
    if left:
        print(f"{len(left)} point(s) left for the next run, from {left[0]}: commit studies/scale/dvc.lock and the metrics")
        return
    subprocess.run([*DVC, "repro", "--allow-missing", f"{STUDY_PIPELINE}:report"], check=True)


if __name__ == "__main__":
    main()
